"""The proxy pool in the admin: bulk add, health, assignment, masking (spec kiro-ops §7)."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from credentials import services
from credentials.models import Credential, ProxyEntry, ProxyHealth
from gateway.kiro.proxies import proxy_url_problem
from tests import factories
from tests.credentials.test_lifecycle import ensure_roles
from tests.gateway.test_operations import probe_server  # noqa: F401 (fixture)

PASSWORD = "s3cr3t-proxy-pass"
POOL = "admin:credentials_proxyentry_changelist"


@pytest.fixture
def staff(transactional_db, admin_client_as):
    ensure_roles()

    def client(role: str):
        make = {
            "superuser": factories.make_superuser,
            "operator": factories.make_operator,
            "viewer": factories.make_viewer,
        }[role]
        return admin_client_as(make())

    return client


def pool_action(client, action: str, entries: list[ProxyEntry]):
    return client.post(
        reverse(POOL),
        {"action": action, ACTION_CHECKBOX_NAME: [e.pk for e in entries]},
        follow=True,
    )


# --- validation and bulk add ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://proxy.example:8080", None),
        ("socks5://user:pw@10.0.0.1:1080", None),
        ("socks5h://10.0.0.1:1080", None),
        ("socks4://10.0.0.1:1080", "socks4 is not supported"),
        ("SOCKS4A://10.0.0.1:1080", "socks4 is not supported"),
        ("https://proxy.example:443", None),
        ("ftp://proxy.example:21", "scheme"),
        ("proxy.example:8080", "scheme"),
        ("http://proxy.example", "host:port"),
        ("http://user:pw@proxy.example", "host:port"),
        ("http://:8080", "host:port"),
    ],
)
def test_proxy_urls_are_validated(url, problem):
    found = proxy_url_problem(url)
    assert (found is None) if problem is None else (problem in found)


def test_bulk_add_reports_each_line(staff):
    ProxyEntry.objects.create(url="http://old.example:3128")
    client = staff("operator")
    text = "\n".join(
        [
            "http://a.example:3128",
            "",
            "# a comment",
            f"socks5://bob:{PASSWORD}@b.example:1080",
            "http://a.example:3128",
            "http://old.example:3128",
            "http://noport.example",
            "gopher://c.example:70",
        ]
    )

    response = client.post(reverse("admin:credentials_proxyentry_bulk_add"), {"urls": text})

    html = response.content.decode()
    assert "2 of 6 line(s) added" in html
    assert html.count("already in the pool") == 2
    assert "host:port is required" in html
    assert "the scheme must be" in html
    assert PASSWORD not in html
    assert set(ProxyEntry.objects.values_list("url", flat=True)) == {
        "http://old.example:3128",
        "http://a.example:3128",
        f"socks5://bob:{PASSWORD}@b.example:1080",
    }


def test_a_viewer_cannot_add_proxies(staff):
    client = staff("viewer")

    assert client.get(reverse("admin:credentials_proxyentry_bulk_add")).status_code == 403
    assert client.get(reverse("admin:credentials_proxyentry_add")).status_code == 403
    assert client.get(reverse(POOL)).status_code == 200


def test_a_single_proxy_is_added_with_a_masked_label(staff):
    client = staff("operator")

    response = client.post(
        reverse("admin:credentials_proxyentry_add"),
        {"url": f"http://bob:{PASSWORD}@p.example:8080", "label": "", "enabled": "on"},
    )

    assert response.status_code == 302
    entry = ProxyEntry.objects.get()
    assert entry.label == "http://bob:****@p.example:8080"


def test_no_proxy_password_appears_on_any_admin_page(staff):
    client = staff("superuser")
    client.post(
        reverse("admin:credentials_proxyentry_bulk_add"),
        {"urls": f"http://bob:{PASSWORD}@p.example:8080\nhttp://q.example:8080"},
    )
    entry = ProxyEntry.objects.get(url__contains="p.example")
    credential = factories.CredentialFactory()
    client.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "assign_proxy", ACTION_CHECKBOX_NAME: [credential.pk], "apply": "1",
         "proxy": entry.pk},
    )  # fmt: skip
    assert Credential.objects.get(pk=credential.pk).proxy_url == entry.url
    pages = [
        reverse(POOL),
        reverse(POOL) + "?q=bob",
        reverse("admin:credentials_proxyentry_change", args=[entry.pk]),
        reverse("admin:credentials_proxyentry_history", args=[entry.pk]),
        reverse("admin:credentials_proxyentry_delete", args=[entry.pk]),
        reverse("admin:credentials_proxyentry_bulk_add"),
        reverse("admin:credentials_credential_change", args=[credential.pk]),
        reverse("admin:credentials_credential_history", args=[credential.pk]),
        reverse("admin:credentials_credential_changelist"),
        reverse("admin:index"),
    ]
    for url in pages:
        html = client.get(url).content.decode()
        assert PASSWORD not in html, f"a proxy password leaked on {url}"
    form = client.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "assign_proxy", ACTION_CHECKBOX_NAME: [credential.pk]},
    )
    assert PASSWORD not in form.content.decode()
    assert "bob:****@p.example:8080" in form.content.decode()


def test_saving_a_credential_keeps_its_masked_proxy_url(staff):
    url = f"http://bob:{PASSWORD}@p.example:8080"
    credential = factories.CredentialFactory(proxy_url=url, name="c")
    client = staff("superuser")
    data = {
        "name": "renamed", "auth_method": credential.auth_method, "provider": "Github",
        "priority": 0, "endpoint": "", "proxy_url": "http://bob:****@p.example:8080",
    }  # fmt: skip

    response = client.post(
        reverse("admin:credentials_credential_change", args=[credential.pk]), data
    )

    assert response.status_code == 302, response.content[:3000]
    credential.refresh_from_db()
    assert (credential.name, credential.proxy_url) == ("renamed", url)


# --- health -------------------------------------------------------------------------------------


def test_the_health_action_probes_and_records_latency(staff, probe_server):  # noqa: F811
    entry = ProxyEntry.objects.create(url=f"http://127.0.0.1:{probe_server}")

    response = pool_action(staff("operator"), "check_health", [entry])

    assert "healthy, HTTP 204" in response.content.decode()
    entry.refresh_from_db()
    assert entry.health == ProxyHealth.HEALTHY
    assert entry.latency_ms is not None


def test_a_viewer_cannot_run_a_health_check(staff, probe_server):  # noqa: F811
    entry = ProxyEntry.objects.create(url=f"http://127.0.0.1:{probe_server}")

    pool_action(staff("viewer"), "check_health", [entry])

    entry.refresh_from_db()
    assert entry.last_checked_at is None


def test_three_failures_disable_and_re_enabling_clears_the_flag(staff):
    entry = ProxyEntry.objects.create(url="http://dead.example:1")
    for _ in range(3):
        services.proxy_record_check(proxy_id=entry.pk, healthy=False, latency_ms=None)
    entry.refresh_from_db()
    assert (entry.enabled, entry.auto_disabled, entry.consecutive_failures) == (False, True, 3)

    pool_action(staff("operator"), "enable_selected", [entry])

    entry.refresh_from_db()
    assert (entry.enabled, entry.auto_disabled, entry.consecutive_failures) == (True, False, 0)


def test_re_enabling_in_the_change_form_clears_the_flag(staff):
    entry = ProxyEntry.objects.create(
        url="http://dead.example:1", label="dead", enabled=False, auto_disabled=True,
        consecutive_failures=3,
    )  # fmt: skip

    staff("operator").post(
        reverse("admin:credentials_proxyentry_change", args=[entry.pk]),
        {"label": "dead", "enabled": "on"},
    )

    entry.refresh_from_db()
    assert (entry.enabled, entry.auto_disabled, entry.consecutive_failures) == (True, False, 0)


def test_a_success_resets_the_failure_streak(staff):
    entry = ProxyEntry.objects.create(url="http://flaky.example:1")
    for healthy in (False, False, True, False, False):
        services.proxy_record_check(proxy_id=entry.pk, healthy=healthy, latency_ms=5)

    entry.refresh_from_db()
    assert (entry.enabled, entry.consecutive_failures) == (True, 2)


# --- assignment ---------------------------------------------------------------------------------


def test_round_robin_spreads_healthy_enabled_proxies_in_pool_order(staff):
    first = ProxyEntry.objects.create(url="http://one.example:1", health=ProxyHealth.HEALTHY)
    ProxyEntry.objects.create(url="http://sick.example:2", health=ProxyHealth.UNHEALTHY)
    ProxyEntry.objects.create(url="http://off.example:3", enabled=False)
    third = ProxyEntry.objects.create(url="http://new.example:4")  # unknown health counts
    credentials = [factories.CredentialFactory() for _ in range(5)]

    staff("operator").post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "assign_proxy_round_robin", ACTION_CHECKBOX_NAME: [c.pk for c in credentials]},
    )

    got = [Credential.objects.get(pk=c.pk).proxy_url for c in credentials]
    assert got == [first.url, third.url, first.url, third.url, first.url]


def test_the_pool_counts_the_credentials_using_each_proxy(staff):
    entry = ProxyEntry.objects.create(url="http://one.example:1", label="one")
    ProxyEntry.objects.create(url="http://two.example:2", label="two")
    for _ in range(3):
        factories.CredentialFactory(proxy_url=entry.url)

    html = staff("viewer").get(reverse(POOL)).content.decode()

    assert '<td class="field-credential_count">3</td>' in html
    assert '<td class="field-credential_count">0</td>' in html


def test_assigning_no_proxy_or_direct(staff):
    credential = factories.CredentialFactory(proxy_url="http://x.example:1")
    client = staff("operator")
    post = {"action": "assign_proxy", ACTION_CHECKBOX_NAME: [credential.pk], "apply": "1"}

    client.post(reverse("admin:credentials_credential_changelist"), {**post, "direct": "on"})
    assert Credential.objects.get(pk=credential.pk).proxy_url == "direct"

    client.post(reverse("admin:credentials_credential_changelist"), post)
    assert Credential.objects.get(pk=credential.pk).proxy_url == ""
