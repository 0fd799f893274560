"""Client key limits: the admission rule, windows, and the database services behind them."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse

from credentials import limits
from credentials.limits import Budget, LimitExceeded, Refusal, Reservation
from credentials.models import ClientKey, ClientKeyWindow, LimitWindowKind
from tests.factories import ClientKeyFactory

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def _budget(**values: object) -> Budget:
    fields: dict[str, object] = {
        "field": "daily_token_budget",
        "label": "daily token budget",
        "unit": "tokens",
        "limit": 1000.0,
        "used": 0.0,
        "reserved": 0.0,
        "estimate": 100.0,
        "resets_at": datetime(2026, 3, 15, tzinfo=UTC),
    }
    fields.update(values)
    return Budget(**fields)  # type: ignore[arg-type]


def _open_reservations(key: ClientKey) -> int:
    return limits.limit_in_flight(key_id=key.pk, now=NOW + timedelta(seconds=1))


def _day(key: ClientKey) -> ClientKeyWindow:
    return ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.DAY)


# --- windows --------------------------------------------------------------------------------


def test_it_starts_days_and_months_at_local_midnight(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # already 1 January in Berlin

    assert limits.window_start("day", late).isoformat() == "2027-01-01T00:00:00+01:00"
    assert limits.window_end("day", late).isoformat() == "2027-01-02T00:00:00+01:00"
    assert limits.window_start("month", late).isoformat() == "2027-01-01T00:00:00+01:00"
    assert limits.window_end("month", late).isoformat() == "2027-02-01T00:00:00+01:00"


def test_it_ends_december_in_january():
    assert limits.window_end("month", datetime(2026, 12, 5, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


# --- pure decisions ---------------------------------------------------------------------------


def test_it_admits_requests_below_the_rpm_limit():
    hits = [NOW - timedelta(seconds=s) for s in (50, 30)]

    assert limits.rpm_refusal(limit=3, hits=hits, now=NOW) is None


def test_it_refuses_the_request_over_the_rpm_limit_until_the_oldest_leaves_the_minute():
    hits = [NOW - timedelta(seconds=s) for s in (50, 30, 10)]

    refusal = limits.rpm_refusal(limit=3, hits=hits, now=NOW)

    assert refusal is not None
    assert refusal.reason == "key_rpm_limit"
    assert refusal.retry_after == 10
    assert "3 requests per minute" in refusal.message


def test_it_ignores_admissions_older_than_a_minute():
    hits = [NOW - timedelta(seconds=s) for s in (90, 61, 10)]

    assert limits.rpm_refusal(limit=2, hits=hits, now=NOW) is None


def test_it_waits_for_enough_admissions_to_leave_when_the_limit_was_lowered():
    hits = [NOW - timedelta(seconds=s) for s in (50, 40, 30, 20)]

    refusal = limits.rpm_refusal(limit=2, hits=hits, now=NOW)

    assert refusal is not None and refusal.retry_after == 30  # the third-newest leaves in 30 s


def test_it_admits_a_request_that_fits_beside_those_in_flight():
    budget = _budget(used=500, reserved=300, estimate=200)

    assert limits.budget_refusal(budget, in_flight=3, now=NOW) is None


def test_it_refuses_a_request_that_would_cross_while_others_are_in_flight():
    budget = _budget(used=500, reserved=300, estimate=201)

    refusal = limits.budget_refusal(budget, in_flight=3, now=NOW)

    assert refusal is not None
    assert refusal.reason == "key_daily_token_budget"
    assert refusal.retry_after == limits.BUSY_RETRY_SECONDS
    assert "nearly used up (500 of 1,000 tokens left)" in refusal.message


def test_it_admits_one_crossing_request_when_nothing_is_in_flight():
    budget = _budget(used=950, reserved=0, estimate=200)

    assert limits.budget_refusal(budget, in_flight=0, now=NOW) is None


def test_it_serialises_requests_while_no_cost_is_known():
    unknown = _budget(estimate=None)

    assert limits.budget_refusal(unknown, in_flight=0, now=NOW) is None
    assert limits.budget_refusal(unknown, in_flight=1, now=NOW) is not None


def test_it_refuses_a_used_up_budget_until_it_resets():
    budget = _budget(used=1000, estimate=1)  # resets at midnight

    refusal = limits.budget_refusal(budget, in_flight=0, now=NOW)

    assert refusal is not None
    assert refusal.retry_after == 8 * 3600 + 50 * 60 + 34
    assert refusal.message == (
        "The daily token budget of this API key is used up (1,000 of 1,000 tokens); "
        "it resets at 2026-03-15 00:00 UTC."
    )


def test_it_names_credit_budgets_with_their_decimals():
    budget = _budget(
        field="monthly_credit_budget",
        label="monthly credit budget",
        unit="credits",
        limit=0.05,
        used=0.0509,
    )

    refusal = limits.budget_refusal(budget, in_flight=0, now=NOW)

    assert refusal is not None and refusal.reason == "key_monthly_credit_budget"
    assert "monthly credit budget" in refusal.message
    assert "(0.0509 of 0.05 credits)" in refusal.message


def test_it_reports_the_refusal_that_lasts_longest():
    short = Refusal("key_rpm_limit", "rpm", 12)
    long = Refusal("key_monthly_token_budget", "month", 86_400)

    assert limits.longest([short, None, long]) == long
    assert limits.longest([None]) is None


# --- database services ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_key_without_limits_reserves_nothing_but_is_still_counted():
    key = ClientKeyFactory()

    reservation = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=reservation, tokens=120, credits=0.5, now=NOW)

    assert reservation == Reservation(key.pk)
    assert not ClientKeyWindow.objects.filter(kind=LimitWindowKind.REQUEST).exists()
    day = _day(key)
    assert (day.requests, day.tokens, day.credits, day.peak_tokens) == (1, 120, 0.5, 120)
    month = ClientKeyWindow.objects.get(client_key=key, kind=LimitWindowKind.MONTH)
    assert month.start == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.django_db
def test_it_refuses_the_request_over_the_rpm_limit_and_frees_the_window_later():
    key = ClientKeyFactory(rpm_limit=2)
    for offset in (0, 20):
        limits.limit_reserve(key_id=key.pk, estimate_tokens=1, now=NOW + timedelta(seconds=offset))

    with pytest.raises(LimitExceeded) as refused:
        limits.limit_reserve(key_id=key.pk, estimate_tokens=1, now=NOW + timedelta(seconds=30))

    assert refused.value.refusal.retry_after == 30
    limits.limit_reserve(key_id=key.pk, estimate_tokens=1, now=NOW + timedelta(seconds=61))


@pytest.mark.django_db
def test_settled_requests_still_count_toward_the_minute():
    key = ClientKeyFactory(rpm_limit=1)
    reservation = limits.limit_reserve(key_id=key.pk, estimate_tokens=1, now=NOW)
    limits.limit_settle(reservation=reservation, tokens=5, credits=0, now=NOW)

    with pytest.raises(LimitExceeded):
        limits.limit_reserve(key_id=key.pk, estimate_tokens=1, now=NOW + timedelta(seconds=59))


@pytest.mark.django_db
def test_a_used_up_daily_token_budget_refuses_until_the_next_day():
    key = ClientKeyFactory(daily_token_budget=100)
    first = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=first, tokens=100, credits=0.1, now=NOW)

    with pytest.raises(LimitExceeded) as refused:
        limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)

    refusal = refused.value.refusal
    assert refusal.reason == "key_daily_token_budget"
    assert "daily token budget" in refusal.message and "used up" in refusal.message
    assert refusal.retry_after == int((datetime(2026, 3, 15, tzinfo=UTC) - NOW).total_seconds())
    tomorrow = datetime(2026, 3, 15, 0, 0, 1, tzinfo=UTC)
    limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=tomorrow)


@pytest.mark.django_db
def test_a_new_day_rolls_the_window_over_and_keeps_the_peak():
    key = ClientKeyFactory()
    limits.limit_settle(reservation=Reservation(key.pk), tokens=300, credits=1, now=NOW)

    limits.limit_settle(
        reservation=Reservation(key.pk), tokens=7, credits=0, now=NOW + timedelta(days=1)
    )

    day = _day(key)
    assert day.start == datetime(2026, 3, 15, tzinfo=UTC)
    assert (day.requests, day.tokens, day.peak_tokens) == (1, 7, 300)


@pytest.mark.django_db
def test_a_used_up_monthly_credit_budget_refuses_until_the_next_month():
    key = ClientKeyFactory(monthly_credit_budget=1.0)
    first = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=first, tokens=50, credits=1.25, now=NOW)

    with pytest.raises(LimitExceeded) as refused:
        limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW + timedelta(days=10))

    assert refused.value.refusal.reason == "key_monthly_credit_budget"
    assert "monthly credit budget" in refused.value.refusal.message
    limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=datetime(2026, 4, 1, tzinfo=UTC))


@pytest.mark.django_db
def test_the_first_request_of_a_key_runs_alone_until_a_cost_is_known():
    key = ClientKeyFactory(daily_token_budget=1_000_000)
    limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)

    with pytest.raises(LimitExceeded) as refused:
        limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)

    assert refused.value.refusal.retry_after == limits.BUSY_RETRY_SECONDS


@pytest.mark.django_db
def test_it_admits_as_many_concurrent_requests_as_fit_at_the_peak_cost():
    key = ClientKeyFactory(daily_token_budget=1000)
    warm = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=warm, tokens=100, credits=0, now=NOW)

    admitted = []
    with pytest.raises(LimitExceeded):
        for _ in range(20):
            admitted.append(limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW))

    assert len(admitted) == 9  # (1000 - 100) // 100
    assert _open_reservations(key) == 9


@pytest.mark.django_db
def test_a_larger_input_estimate_than_the_peak_is_reserved():
    key = ClientKeyFactory(daily_token_budget=1000)
    warm = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=warm, tokens=100, credits=0, now=NOW)

    big = limits.limit_reserve(key_id=key.pk, estimate_tokens=700, now=NOW)

    assert ClientKeyWindow.objects.get(pk=big.admission_id).tokens == 700
    with pytest.raises(LimitExceeded):  # 100 + 700 + 700 > 1000 with one in flight
        limits.limit_reserve(key_id=key.pk, estimate_tokens=700, now=NOW)


@pytest.mark.django_db
def test_settling_and_releasing_free_the_reservation():
    key = ClientKeyFactory(daily_token_budget=1000, rpm_limit=100)
    limits.limit_settle(reservation=Reservation(key.pk), tokens=10, credits=0, now=NOW)
    settled = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    released = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    assert _open_reservations(key) == 2

    limits.limit_settle(reservation=settled, tokens=40, credits=0, now=NOW)
    limits.limit_release(reservation=released, now=NOW)

    assert _open_reservations(key) == 0
    assert _day(key).tokens == 10 + 40  # a released request adds no usage


@pytest.mark.django_db
def test_a_reservation_that_is_never_settled_expires_after_its_lease():
    key = ClientKeyFactory(daily_token_budget=1000)
    limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)  # its process died
    later = NOW + limits.RESERVATION_LEASE + timedelta(seconds=1)

    limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=later)

    assert limits.limit_in_flight(key_id=key.pk, now=later) == 1


@pytest.mark.django_db
def test_old_admissions_are_pruned():
    key = ClientKeyFactory(daily_token_budget=10_000)
    first = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=first, tokens=10, credits=0, now=NOW)

    limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW + timedelta(minutes=2))

    assert ClientKeyWindow.objects.filter(kind=LimitWindowKind.REQUEST).count() == 1


@pytest.mark.django_db
def test_random_interleavings_never_overshoot_by_more_than_one_request():
    budget, cost = 5_000, 400
    for seed in range(5):
        rng = random.Random(seed)
        key = ClientKeyFactory(daily_token_budget=budget)
        warm = limits.limit_reserve(key_id=key.pk, estimate_tokens=5, now=NOW)
        limits.limit_settle(reservation=warm, tokens=cost, credits=0, now=NOW)
        pending: list[Reservation] = []
        admitted = refused = 0
        for _ in range(150):
            if pending and rng.random() < 0.45:
                reservation = pending.pop(rng.randrange(len(pending)))
                spent = rng.randint(cost // 2, cost)  # never more than the peak
                limits.limit_settle(reservation=reservation, tokens=spent, credits=0, now=NOW)
                continue
            try:
                pending.append(limits.limit_reserve(key_id=key.pk, estimate_tokens=5, now=NOW))
                admitted += 1
            except LimitExceeded:
                refused += 1
        for reservation in pending:
            limits.limit_settle(reservation=reservation, tokens=cost, credits=0, now=NOW)

        used = _day(key).tokens
        assert budget <= used < budget + cost, seed  # reached, and over by less than one
        assert admitted > 1 and refused > 0
        assert _open_reservations(key) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_from_many_threads_admit_only_what_fits():
    key = ClientKeyFactory(daily_token_budget=1000)
    warm = limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
    limits.limit_settle(reservation=warm, tokens=200, credits=0, now=NOW)
    barrier = threading.Barrier(16)
    outcomes: list[bool] = []

    def reserve() -> None:
        barrier.wait()
        try:
            limits.limit_reserve(key_id=key.pk, estimate_tokens=10, now=NOW)
            outcomes.append(True)
        except LimitExceeded:
            outcomes.append(False)
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == 16
    assert outcomes.count(True) == 4  # (1000 - 200) // 200, whatever the interleaving
    assert _open_reservations(key) == 4


# --- admin ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_key_list_shows_limits_and_todays_usage(superuser, admin_client_as):
    key = ClientKeyFactory(name="ci bot", rpm_limit=60, daily_token_budget=1_000_000)
    limits.limit_settle(reservation=Reservation(key.pk), tokens=1234, credits=0.25)

    page = admin_client_as(superuser).get(reverse("admin:credentials_clientkey_changelist"))

    html = page.content.decode()
    assert "60 rpm, 1,000,000 tokens/day" in html
    assert "1 requests, 1,234 / 1,000,000 tokens, 0.25 credits" in html
    assert key.key_hash not in html


@pytest.mark.django_db
def test_the_key_form_shows_usage_and_saves_limits(superuser, admin_client_as):
    client = admin_client_as(superuser)
    key = ClientKeyFactory(name="ci bot")
    limits.limit_settle(reservation=Reservation(key.pk), tokens=77, credits=0)
    url = reverse("admin:credentials_clientkey_change", args=[key.pk])

    page = client.get(url)
    response = client.post(
        url,
        {"name": "ci bot", "description": "", "enabled": "on", "rpm_limit": "30",
         "monthly_credit_budget": "12.5"},
    )  # fmt: skip

    assert "1 requests, 77 tokens, 0 credits" in page.content.decode()
    assert "Requests in flight" in page.content.decode()
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.rpm_limit, key.monthly_credit_budget, key.daily_token_budget) == (30, 12.5, None)


@pytest.mark.django_db
def test_a_key_created_in_the_admin_keeps_its_limits(superuser, admin_client_as):
    response = admin_client_as(superuser).post(
        reverse("admin:credentials_clientkey_add"),
        {"name": "capped", "description": "", "enabled": "on", "daily_token_budget": "5000"},
    )

    assert response.status_code == 200
    key = ClientKey.objects.get(name="capped")
    assert (key.daily_token_budget, key.enabled) == (5000, True)
