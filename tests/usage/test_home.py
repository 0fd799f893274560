"""The operator home (the admin index): cards, balances, refresh failures, traffic, models,
jobs, who sees what, what it costs, and the header's "View site"."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from credentials import services
from credentials.admin.common import SECRET_LOOKUPS
from credentials.models import Credential, DisabledReason, JobLock
from tests.factories import PASSWORD, CredentialFactory
from tests.usage.factories import UsageRecordFactory
from usage import home
from usage.models import UsageStatus

pytestmark = pytest.mark.django_db
INDEX = reverse("admin:index")


def section(html: str, name: str) -> str:
    """Return the HTML of one module of the home, or '' when the page has none."""
    match = re.search(rf'<div class="module" id="home-{name}">(.*?)\n  </div>', html, re.S)
    return match.group(1) if match else ""


def cards(html: str) -> dict[str, tuple[int, str]]:
    """Return each state card's count and link, by card key."""
    found = re.findall(r'id="card-([\w-]+)" href="([^"]+)">[^<]*<strong>(\d+)</strong>', html)
    return {key: (int(count), url.replace("&amp;", "&")) for key, url, count in found}


def figures(html: str, window: str) -> dict[str, str]:
    row = re.search(rf'<tr id="window-{window}">(.*?)</tr>', html, re.S)
    assert row, f"no {window} row"
    return dict(re.findall(r'data-figure="(\w+)">([^<]*)<', row.group(1)))


def staff_with(*codenames: str) -> User:
    """A staff member holding only the given view permissions (app_label.codename)."""
    user = User.objects.create_user(username="sam", password=PASSWORD, is_staff=True)
    for name in codenames:
        app, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return user


def balance(used: float, limit: float) -> dict[str, Any]:
    return {"current_usage": used, "usage_limit": limit, "remaining": limit - used}


@pytest.fixture
def pool() -> dict[str, Credential]:
    """Three enabled credentials, one cooling down, and four disabled for three reasons."""
    soon = timezone.now() + timedelta(minutes=10)
    made = {f"ok{i}": CredentialFactory(name=f"ok{i}") for i in range(3)}
    made["cool"] = CredentialFactory(name="cool", cooldown_until=soon)
    made["past"] = CredentialFactory(name="past", cooldown_until=timezone.now() - timedelta(1))
    for name, reason in [
        ("manual1", DisabledReason.MANUAL),
        ("manual2", DisabledReason.MANUAL),
        ("quota", DisabledReason.QUOTA_EXCEEDED),
        ("blank", ""),
    ]:
        made[name] = CredentialFactory(name=name, enabled=False, disabled_reason=reason)
    return made


def test_the_cards_count_credentials_by_state(superuser, admin_client_as, pool) -> None:
    html = admin_client_as(superuser).get(INDEX).content.decode()

    counts = {key: count for key, (count, _) in cards(html).items()}
    assert counts == {
        "enabled": 4,  # a cooldown in the past is over
        "cooling": 1,
        "disabled-Manual": 2,
        "disabled-QuotaExceeded": 1,
        "disabled-none": 1,
    }


def test_each_card_links_to_the_credential_list_filtered_to_its_count(
    superuser, admin_client_as, pool
) -> None:
    client = admin_client_as(superuser)
    found = cards(client.get(INDEX).content.decode())

    assert len(found) == 5
    for key, (count, url) in found.items():
        response = client.get(url)
        assert response.status_code == 200, key
        assert response.context["cl"].result_count == count, key


def test_the_credential_list_ignores_a_state_it_does_not_know(
    superuser, admin_client_as, pool
) -> None:
    client = admin_client_as(superuser)
    changelist = reverse("admin:credentials_credential_changelist")

    assert client.get(changelist + "?state=nonsense").context["cl"].result_count == 9
    assert client.get(changelist + "?state=").status_code == 200
    assert client.get(changelist + "?disabled_reason__exact=Nope").status_code in (200, 302)


def test_balances_come_lowest_remaining_first_with_a_bar(superuser, admin_client_as) -> None:
    rich = CredentialFactory(name="rich", balance=balance(10, 1000))
    poor = CredentialFactory(name="poor", balance=balance(95, 100))
    middle = CredentialFactory(name="middle", balance=balance(250, 500))
    CredentialFactory(name="off", enabled=False, balance=balance(100, 100))
    CredentialFactory(name="unchecked", balance=None)

    html = section(admin_client_as(superuser).get(INDEX).content.decode(), "balances")

    order = [int(pk) for pk in re.findall(r'data-credential="(\d+)"', html)]
    assert order == [poor.pk, middle.pk, rich.pk]
    bars = re.findall(r'<div class="home-bar( high)?"[^>]*><span style="width: (\d+)%">', html)
    assert bars == [(" high", "95"), ("", "50"), ("", "1")]


def test_a_balance_with_odd_numbers_does_not_break_the_page(superuser, admin_client_as) -> None:
    CredentialFactory(balance={"current_usage": "lots", "usage_limit": 0})
    CredentialFactory(balance={"current_usage": 5, "usage_limit": 0})
    CredentialFactory(balance=["not", "a", "dict"])

    response = admin_client_as(superuser).get(INDEX)

    assert response.status_code == 200
    assert re.findall(r"width: (\d+)%", section(response.content.decode(), "balances")) == [
        "100",  # 5 used of no limit: -5 remaining, first
        "0",
    ]


def test_a_record_two_hours_old_counts_in_the_day_not_the_hour(superuser, admin_client_as) -> None:
    now = timezone.now()
    UsageRecordFactory(created_at=now - timedelta(minutes=30), credits=1.25)
    UsageRecordFactory(created_at=now - timedelta(hours=2), credits=2.0)
    UsageRecordFactory(created_at=now - timedelta(hours=2), failed=True)
    UsageRecordFactory(created_at=now - timedelta(hours=25), credits=100.0)  # in neither

    html = admin_client_as(superuser).get(INDEX).content.decode()

    assert figures(html, "1h") == {
        "requests": "1",
        "errors": "0",
        "p95": "6120 ms",
        "credits": "1.25",
    }
    day = figures(html, "24h")
    assert (day["requests"], day["errors"], day["credits"]) == ("3", "1", "3.25")


def test_the_sparklines_hold_five_minute_and_hourly_buckets(superuser) -> None:
    now = timezone.now()
    UsageRecordFactory(created_at=now - timedelta(minutes=1))
    UsageRecordFactory(created_at=now - timedelta(minutes=7), failed=True)
    UsageRecordFactory(created_at=now - timedelta(hours=5, minutes=1))

    data = home.operator_home(user=superuser, now=now).sparklines

    assert len(data["1h"]["requests"]) == 12
    assert data["1h"]["requests"][-2:] == [1, 1]
    assert data["1h"]["errors"][-2:] == [1, 0]
    assert len(data["24h"]["requests"]) == 24
    assert data["24h"]["requests"][-1] == 2
    assert data["24h"]["requests"][-6] == 1
    assert sum(data["24h"]["requests"]) == 3


def test_the_sparkline_data_is_embedded_as_json_and_drawn_by_chart_js(
    superuser, admin_client_as
) -> None:
    UsageRecordFactory()

    html = admin_client_as(superuser).get(INDEX).content.decode()

    embedded = re.search(
        r'<script id="operator-home-sparklines" type="application/json">(.*?)</script>', html, re.S
    )
    assert embedded and json.loads(embedded.group(1))["1h"]["requests"][-1] == 1
    assert "vendor/chart.js/chart.umd.min.js" in html
    assert "usage/operator_home.js" in html
    assert len(re.findall(r"<canvas data-sparkline=", html)) == 4
    # No inline script carries data: every <script> is a file or the JSON block.
    inline = re.findall(r"<script(?![^>]*\b(?:src|type=\"application/json\"))[^>]*>", html)
    assert inline == []


def test_p95_is_the_nearest_rank_of_successful_requests(superuser) -> None:
    now = timezone.now()
    for latency in range(100, 2100, 100):  # 20 successes in the last hour
        UsageRecordFactory(created_at=now - timedelta(minutes=5), latency_ms=latency)
    UsageRecordFactory(created_at=now - timedelta(minutes=5), failed=True, latency_ms=99_999)
    for latency in (5000, 6000):  # two more, earlier in the day
        UsageRecordFactory(created_at=now - timedelta(hours=3), latency_ms=latency)

    hour, day = home.operator_home(user=superuser, now=now).windows

    assert hour.p95_ms == 1900  # rank ceil(0.95 * 20) = 19 of 20
    assert day.p95_ms == 5000  # rank ceil(0.95 * 22) = 21 of 22


def test_p95_is_empty_without_successful_requests(superuser) -> None:
    UsageRecordFactory(failed=True)

    hour, day = home.operator_home(user=superuser).windows

    assert (hour.p95_ms, day.p95_ms) == (None, None)
    assert (hour.errors, day.errors) == (1, 1)


def test_the_usage_figures_cost_two_queries(superuser) -> None:
    now = timezone.now()
    for minutes in range(0, 24 * 60, 37):
        UsageRecordFactory(created_at=now - timedelta(minutes=minutes))

    with CaptureQueriesContext(connection) as queries:
        home.usage_windows(now)

    assert len(queries) == 2


def test_the_home_costs_a_fixed_number_of_queries(
    operator, admin_client_as, django_assert_max_num_queries
) -> None:
    client = admin_client_as(operator)
    CredentialFactory(balance=balance(1, 100))
    UsageRecordFactory()
    with CaptureQueriesContext(connection) as few:
        client.get(INDEX)
    now = timezone.now()
    credentials = [CredentialFactory(balance=balance(i, 100)) for i in range(30)]
    for i in range(300):
        UsageRecordFactory(
            created_at=now - timedelta(minutes=i * 4), credential=credentials[i % 30]
        )
    JobLock.objects.create(name="balances", last_run_at=now)

    # session, user, the operator's permissions (user's, group's), credentials, usage (2),
    # jobs, and the sidebar's recent actions
    with django_assert_max_num_queries(9) as many:
        response = client.get(INDEX)

    assert len(many) == len(few)
    assert response.status_code == 200


def test_refresh_failures_of_the_last_24_hours_are_listed(superuser, admin_client_as) -> None:
    recent = CredentialFactory(name="flaky", refresh_failure_count=1)
    old = CredentialFactory(name="old")
    gone = CredentialFactory(name="gone")
    CredentialFactory(name="fine")
    services.credential_refresh_failed(credential_id=recent.pk, owner="t", invalid_grant=False)
    services.credential_refresh_failed(credential_id=gone.pk, owner="t", invalid_grant=True)
    Credential.objects.filter(pk=old.pk).update(
        last_refresh_failure_at=timezone.now() - timedelta(hours=25)
    )

    html = section(admin_client_as(superuser).get(INDEX).content.decode(), "refresh-failures")

    rows = re.findall(
        r'data-credential="(\d+)">.*?<td class="num">(\d+)</td>\s*<td>([^<]*)</td>', html, re.S
    )
    assert sorted(rows) == sorted(
        [(str(recent.pk), "2", "—"), (str(gone.pk), "0", "Invalid refresh token")]
    )


def test_the_models_served_and_listed_are_shown(superuser, admin_client_as) -> None:
    now = timezone.now()
    UsageRecordFactory(model_sent="claude-sonnet-4.5", created_at=now - timedelta(minutes=1))
    UsageRecordFactory(model_sent="claude-sonnet-4.5", created_at=now - timedelta(hours=3))
    UsageRecordFactory(model_sent="", status=UsageStatus.REJECTED)
    CredentialFactory(available_models=["claude-sonnet-4.5", "claude-haiku-4.5"])
    CredentialFactory(available_models=["claude-haiku-4.5"])
    CredentialFactory(available_models=["claude-opus-4.1"], enabled=False)

    rows = home.operator_home(user=superuser, now=now).models

    assert [(r.model, r.requests_hour, r.listed_by) for r in rows] == [
        ("claude-sonnet-4.5", 1, 1),  # the one sent 3 hours ago is not in the last hour
        ("claude-haiku-4.5", 0, 2),
    ]
    html = section(admin_client_as(superuser).get(INDEX).content.decode(), "models")
    assert re.findall(r'data-model="([^"]+)"', html) == ["claude-sonnet-4.5", "claude-haiku-4.5"]


def test_each_job_shows_its_last_run(superuser, admin_client_as) -> None:
    JobLock.objects.create(
        name="balances", last_run_at=timezone.now() - timedelta(minutes=2), last_result="3 ok"
    )
    JobLock.objects.create(
        name="proxies", last_run_at=timezone.now() - timedelta(hours=2), last_result="0/0"
    )

    html = section(admin_client_as(superuser).get(INDEX).content.decode(), "jobs")

    jobs = dict(re.findall(r'<tr data-job="(\w+)"( class="home-overdue")?>', html))
    assert jobs == {
        "balances": "",
        "proxies": ' class="home-overdue"',
        "retention": ' class="home-overdue"',
    }
    assert "3 ok" in html
    assert "never" in html  # retention has not run


def test_the_home_reads_no_secret_column() -> None:
    assert set(home.CREDENTIAL_FIELDS).isdisjoint(SECRET_LOOKUPS)
    assert not any(name.endswith("_hash") for name in home.CREDENTIAL_FIELDS)


@pytest.mark.parametrize("persona", ["superuser", "operator", "viewer"])
def test_every_staff_role_sees_the_whole_home(persona, request, admin_client_as) -> None:
    CredentialFactory(balance=balance(1, 10), available_models=["claude-sonnet-4.5"])
    UsageRecordFactory()

    html = admin_client_as(request.getfixturevalue(persona)).get(INDEX).content.decode()

    for name in ("credentials", "traffic", "balances", "refresh-failures", "models", "jobs"):
        assert f'id="home-{name}"' in html, name
    assert 'id="content-main"' in html and "app-credentials" in html  # the app list follows


def test_staff_see_only_the_sections_they_may_view(admin_client_as) -> None:
    CredentialFactory(balance=balance(1, 10))
    UsageRecordFactory()
    user = staff_with("usage.view_usagerecord")

    html = admin_client_as(user).get(INDEX).content.decode()

    assert 'id="home-traffic"' in html and 'id="home-models"' in html
    for name in ("credentials", "balances", "refresh-failures", "jobs"):
        assert f'id="home-{name}"' not in html, name
    assert "Listed by credentials" not in html


def test_staff_without_permissions_see_no_section(admin_client_as) -> None:
    CredentialFactory()
    UsageRecordFactory()

    with CaptureQueriesContext(connection) as queries:
        html = admin_client_as(staff_with()).get(INDEX).content.decode()

    assert 'id="home-' not in html
    assert not any("usage_usagerecord" in q["sql"] for q in queries.captured_queries)


def test_a_user_without_a_staff_role_is_sent_to_the_login(outsider, admin_client_as) -> None:
    response = admin_client_as(outsider).get(INDEX)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_home_shows_no_secret(superuser, admin_client_as) -> None:
    made = [
        CredentialFactory(balance=balance(1, 10), refresh_failure_count=1),
        CredentialFactory(idc=True, enabled=False, disabled_reason=DisabledReason.MANUAL),
        CredentialFactory(api_key=True, proxy_password="hunter2-proxy-secret"),
    ]
    for credential in made:
        services.credential_refresh_failed(
            credential_id=credential.pk, owner="t", invalid_grant=False
        )
        UsageRecordFactory(credential=credential)

    html = admin_client_as(superuser).get(INDEX).content.decode()

    for credential in Credential.objects.all():
        for secret in (
            credential.refresh_token,
            credential.access_token,
            credential.client_secret,
            credential.kiro_api_key,
            credential.proxy_password,
        ):
            if secret:
                assert secret not in html
