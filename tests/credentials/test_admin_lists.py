"""The credentials app's list pages fit a 1,280 px screen: few columns, compact badges, the
details on the change page, object tools in the admin's look (tests/admin_pages.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from credentials.models import CredentialGroup, DisabledReason, ProxyEntry
from tests.admin_pages import assert_standard_list, read
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db

CREDENTIAL_TOOLS = [
    "proxy pool",
    "add by login",
    "batch import accounts",
    "enable overage for all",
    "clear disabled",
    "import kiro-rs files",
    "export credentials.json",
    "export config.json",
    "add credential",
]


def a_pool_with_every_state() -> list:
    group = CredentialGroup.objects.create(name="enterprise-team")
    now = timezone.now()
    balance = {"current_usage": 250.0, "usage_limit": 1000.0, "usage_percentage": 25.0}
    healthy = CredentialFactory(
        name="main account",
        email="main@example.com",
        subscription_title="KIRO PRO+",
        expires_at=now + timedelta(minutes=40),
        balance=balance,
        balance_checked_at=now,
        overage_capability="OVERAGE_CAPABLE",
        overage_status="DISABLED",
        last_used_at=now,
    )
    healthy.groups.add(group)
    cooling = CredentialFactory(cooldown_until=now + timedelta(minutes=5))
    disabled = CredentialFactory(enabled=False, disabled_reason=DisabledReason.TOO_MANY_FAILURES)
    return [healthy, cooling, disabled]


def test_the_credential_list_fits_its_column_budget_with_every_tool_once(
    superuser, admin_client_as
):
    a_pool_with_every_state()

    html = admin_client_as(superuser).get(reverse("admin:credentials_credential_changelist"))
    page = assert_standard_list(html.content.decode())

    assert [item[0].text.lower() for item in page.tools] == CREDENTIAL_TOOLS
    assert len(page.columns) == 8  # the checkbox and seven columns (fifteen before)


def test_the_overage_button_is_drawn_as_a_tool(superuser, admin_client_as):
    CredentialFactory()
    html = admin_client_as(superuser).get(reverse("admin:credentials_credential_changelist"))
    page = assert_standard_list(html.content.decode())

    (button,) = [item[0] for item in page.tools if item[0].tag == "button"]
    assert button.text == "Enable overage for all"
    assert button.classes == ["kg-tool"]
    assert "historylink" not in html.content.decode()


def test_the_credential_list_shows_states_as_badges(superuser, admin_client_as):
    healthy, _, _ = a_pool_with_every_state()

    html = admin_client_as(superuser).get(reverse("admin:credentials_credential_changelist"))
    text = html.content.decode()

    assert '<span class="kg-badge kg-ok" title="">enabled</span>' in text
    assert '<span class="kg-badge kg-warn" title="until ' in text
    assert '<span class="kg-badge kg-bad" title="Too many failures">disabled</span>' in text
    assert f"#{healthy.pk} main account" in text
    assert "social · KIRO PRO+" in text
    assert "250 / 1,000 (25%)" in text
    assert 'href="/static/admin/kiro-admin.css"' in text


def test_the_details_left_off_the_list_are_on_the_change_page(superuser, admin_client_as):
    healthy, _, disabled = a_pool_with_every_state()
    client = admin_client_as(superuser)

    listing = client.get(reverse("admin:credentials_credential_changelist")).content.decode()
    page = client.get(reverse("admin:credentials_credential_change", args=[healthy.pk]))
    disabled_page = client.get(reverse("admin:credentials_credential_change", args=[disabled.pk]))

    assert "main@example.com" not in listing  # the label is the name when there is one
    table = listing.split('id="result_list"')[1].split("</table>")[0]
    assert "enterprise-team" not in table  # groups: a filter and the change page
    html = page.content.decode()
    for detail in ("main@example.com", "enterprise-team", "KIRO PRO+", 'name="expires_at_0"'):
        assert detail in html
    assert "Too many failures" in disabled_page.content.decode()


def test_a_viewer_sees_no_tool_that_changes_anything(viewer, admin_client_as):
    CredentialFactory()
    html = admin_client_as(viewer).get(reverse("admin:credentials_credential_changelist"))
    page = assert_standard_list(html.content.decode())

    assert [item[0].text.lower() for item in page.tools] == ["proxy pool"]


def test_the_proxy_pool_fits_its_column_budget(superuser, admin_client_as):
    entry = ProxyEntry.objects.create(
        url="socks5h://bob:hunter2@proxy.residential.example.com:1080",
        label="residential",
        health="healthy",
        latency_ms=120,
        last_checked_at=timezone.now(),
    )
    ProxyEntry.objects.create(url="http://down.example:8080", enabled=False, auto_disabled=True)
    CredentialFactory(proxy_url=entry.url)

    html = admin_client_as(superuser).get(reverse("admin:credentials_proxyentry_changelist"))
    text = html.content.decode()
    page = assert_standard_list(text)

    assert len(page.columns) == 8  # ten before
    assert [item[0].text.lower() for item in page.tools] == ["add in bulk", "add proxy"]
    assert '<span class="kg-badge kg-ok" title="">healthy</span>' in text
    assert 'title="disabled after 3 failed checks">disabled</span>' in text
    assert "hunter2" not in text


def test_the_credential_page_draws_its_buttons_as_tools(superuser, admin_client_as):
    credential = CredentialFactory(overage_capability="OVERAGE_CAPABLE")

    url = reverse("admin:credentials_credential_change", args=[credential.pk])
    html = admin_client_as(superuser).get(url).content.decode()
    page = read(html)

    tools = [item[0] for item in page.tools]
    assert [tool.text for tool in tools] == [
        "Refresh token",
        "Check balance",
        "Models",
        "Test a model",
        "Log in again",
        "Overage on",
        "History",
    ]
    assert all(len(item) == 1 for item in page.tools)
    assert all(tool.classes == ["kg-tool"] for tool in tools[:-1])
    assert tools[-1].classes == ["historylink"]  # Django's own
    assert 'href="/static/admin/kiro-admin.css"' in html
