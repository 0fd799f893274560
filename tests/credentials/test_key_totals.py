"""A client key's lifetime totals in the admin: the list, the change page, the reset."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from credentials import limits
from credentials.limits import Reservation
from credentials.models import ClientKey, ClientKeyWindow, LimitWindowKind
from tests.admin_pages import assert_standard_list
from tests.factories import ClientKeyFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:credentials_clientkey_changelist"


def a_used_key(name: str = "ci bot", **limit_values: object) -> ClientKey:
    key = ClientKeyFactory(name=name, **limit_values)
    for tokens in (1_200_000, 34_567):
        limits.limit_settle(
            reservation=Reservation(key.pk),
            tokens=tokens + 100,
            credits=1.25,
            input_tokens=tokens,
            output_tokens=100,
        )
    return key


def month(key: ClientKey) -> ClientKeyWindow:
    return ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.MONTH)


def reset_by_action(client, *keys: ClientKey):
    return client.post(
        reverse(CHANGELIST),
        {"action": "reset_totals", "_selected_action": [key.pk for key in keys]},
        follow=True,
    )


def test_the_client_key_list_fits_its_column_budget_and_shows_lifetime_figures(
    superuser, admin_client_as
):
    key = a_used_key(rpm_limit=60, daily_token_budget=1_000_000)
    ClientKeyFactory(name="laptop", enabled=False)

    html = admin_client_as(superuser).get(reverse(CHANGELIST)).content.decode()
    page = assert_standard_list(html)

    assert len(page.columns) == 9  # the checkbox and eight columns (ten before, no lifetime)
    assert [item[0].text.lower() for item in page.tools] == ["add client key"]
    assert "lifetime" in [column.lower() for column in page.columns]
    assert "2 requests" in html
    assert "1.23M in / 200 out tokens · 2.5 credits" in html
    assert f"{key.prefix}…" in html
    assert '<span class="kg-badge kg-bad" title="">disabled</span>' in html
    assert key.key_hash not in html


def test_the_key_page_shows_the_exact_lifetime_figures_and_the_reset_button(
    superuser, admin_client_as
):
    key = a_used_key()

    page = admin_client_as(superuser).get(
        reverse("admin:credentials_clientkey_change", args=[key.pk])
    )

    html = page.content.decode()
    assert "1,234,567 input, 200 output" in html
    assert "Counting since" in html
    assert reverse("admin:credentials_clientkey_reset_totals", args=[key.pk]) in html
    assert "Reset lifetime statistics" in html
    assert key.key_hash not in html


def test_the_reset_action_zeroes_the_totals_and_keeps_the_budgets_usage(superuser, admin_client_as):
    key, other = a_used_key(), a_used_key("other")

    response = reset_by_action(admin_client_as(superuser), key)

    assert "Reset the lifetime statistics of 1 key(s)." in response.content.decode()
    row = month(key)
    assert (row.total_requests, row.total_input_tokens, row.total_output_tokens) == (0, 0, 0)
    assert row.total_credits == 0.0
    assert (row.requests, row.tokens) == (2, 1_234_767)  # the month still counts for budgets
    assert month(other).total_requests == 2


def test_the_reset_is_in_the_keys_history(superuser, admin_client_as):
    key = a_used_key()

    reset_by_action(admin_client_as(superuser), key)

    (entry,) = LogEntry.objects.filter(object_id=str(key.pk))
    assert entry.user == superuser
    assert entry.get_change_message() == (
        "Reset lifetime statistics (were 2 requests, 1,234,567 input and 200 output tokens, "
        "2.5 credits)"
    )


def test_the_reset_button_resets_one_key_and_returns_to_it(operator, admin_client_as):
    key = a_used_key()
    url = reverse("admin:credentials_clientkey_reset_totals", args=[key.pk])
    client = admin_client_as(operator)

    response = client.post(url)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:credentials_clientkey_change", args=[key.pk])
    assert month(key).total_requests == 0
    assert LogEntry.objects.filter(object_id=str(key.pk), user=operator).count() == 1
    assert client.get(url).status_code == 405
    missing = reverse("admin:credentials_clientkey_reset_totals", args=[key.pk + 1000])
    assert client.post(missing).status_code == 404


def test_a_viewer_cannot_reset(viewer, admin_client_as):
    key = a_used_key()
    client = admin_client_as(viewer)
    url = reverse("admin:credentials_clientkey_reset_totals", args=[key.pk])

    assert client.post(url).status_code == 403
    page = client.get(reverse("admin:credentials_clientkey_change", args=[key.pk]))
    assert url not in page.content.decode()
    assert "reset_totals" not in client.get(reverse(CHANGELIST)).content.decode()
    reset_by_action(client, key)
    assert month(key).total_requests == 2
    assert not LogEntry.objects.exists()


def test_a_key_never_used_shows_zeroes_and_resets_quietly(superuser, admin_client_as):
    key = ClientKeyFactory(name="fresh")
    client = admin_client_as(superuser)

    page = client.get(reverse("admin:credentials_clientkey_change", args=[key.pk]))
    response = reset_by_action(client, key)

    assert "not used yet" in page.content.decode()
    assert response.status_code == 200
    assert not ClientKeyWindow.objects.filter(client_key=key).exists()
    assert LogEntry.objects.filter(object_id=str(key.pk)).count() == 1


def test_new_totals_count_from_the_reset(superuser, admin_client_as):
    key = a_used_key()
    reset_by_action(admin_client_as(superuser), key)

    limits.limit_settle(
        reservation=Reservation(key.pk), tokens=10, credits=0.5, input_tokens=7, output_tokens=3
    )

    totals = limits.totals_of(month(key))
    assert (totals.requests, totals.input_tokens, totals.output_tokens) == (1, 7, 3)
    assert totals.since is not None


def test_the_add_page_renders_without_figures(superuser, admin_client_as):
    page = admin_client_as(superuser).get(reverse("admin:credentials_clientkey_add"))

    assert page.status_code == 200
    assert "not used yet" in page.content.decode()


def test_the_key_list_reads_its_figures_in_one_query_whatever_the_number_of_keys(
    superuser, admin_client_as
):
    client = admin_client_as(superuser)
    url = reverse(CHANGELIST)

    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    a_used_key("first")
    few = queries_for_the_list()
    for n in range(49):
        a_used_key(f"key {n}")

    assert queries_for_the_list() == few
