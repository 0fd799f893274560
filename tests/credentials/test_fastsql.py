"""The serving path's hand-built SQL (credentials/fastsql.py) gives what the ORM gives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from credentials import limits, selectors
from credentials.models import ClientKeyWindow, Credential
from tests.factories import ClientKeyFactory, CredentialFactory, CredentialGroupFactory
from usage.models import UsageRecord
from usage.services import AttemptDraft, UsageDraft, usage_record_store

pytestmark = pytest.mark.django_db


def test_the_key_lookup_names_every_limit_field():
    assert selectors._KEY_LIMITS == limits.LIMIT_FIELDS


def test_a_key_is_found_by_hash_with_its_group_limits_and_last_use():
    group = CredentialGroupFactory(name="team-a")
    seen = timezone.now() - timedelta(minutes=5)
    key = ClientKeyFactory(group=group, rpm_limit=10, last_used_at=seen)
    identity = selectors.client_key_by_hash(key.key_hash)
    assert identity is not None
    assert (identity.id, identity.name, identity.group) == (key.pk, key.name, "team-a")
    assert identity.limited is True
    assert identity.last_used_at == seen

    plain = ClientKeyFactory()
    identity = selectors.client_key_by_hash(plain.key_hash)
    assert (identity.group, identity.limited, identity.last_used_at) == (None, False, None)
    plain.enabled = False
    plain.save()
    assert selectors.client_key_by_hash(plain.key_hash) is None


def test_candidates_and_access_match_the_orm():
    group = CredentialGroupFactory(name="g")
    later = timezone.now() + timedelta(minutes=3)
    grouped = CredentialFactory(priority=2, cooldown_until=later, available_models=["M-1"])
    grouped.groups.add(group)
    other = CredentialFactory(priority=1, proxy_password="pw", enabled=False)

    every = selectors.pool_candidates(group=None)
    assert [c.id for c in every] == [other.pk, grouped.pk]  # priority, then id
    assert every[0].enabled is False
    assert every[1].cooldown_until == later
    assert every[1].models == frozenset({"m-1"})
    only = selectors.pool_candidates(group="g")
    assert [(c.id, c.groups) for c in only] == [(grouped.pk, frozenset({"g"}))]
    assert selectors.pool_candidates(group="nobody") == []

    config = selectors.read_gateway_config()
    access = selectors.credential_access(credential_id=other.pk, config=config)
    row = Credential.objects.get(pk=other.pk)
    assert access.refresh_token == row.refresh_token  # decrypted, as the ORM does
    assert access.proxy_password == "pw"
    assert access.expires_at == row.expires_at
    assert selectors.credential_access(credential_id=999_999, config=config) is None


def test_the_record_store_writes_what_the_orm_reads_back():
    key = ClientKeyFactory()
    credential = CredentialFactory()
    draft = UsageDraft(
        endpoint="/v1/messages",
        client_key_id=key.pk,
        model_requested="claude-sonnet-4-5",
        model_sent="claude-sonnet-4.5",
        credential_id=credential.pk,
        status="success",
        http_status=200,
        input_tokens=12,
        output_tokens=34,
        credits=0.25,
        first_token_ms=7,
        normalizer_rules=["empty_text_dropped"],
        stream=True,
    )
    draft.attempts.append(AttemptDraft(credential.pk, "ide", 503, "transient", "x" * 5000, 3))
    draft.attempts.append(AttemptDraft(credential.pk, "ide", 200, "success", "", 4))
    record = usage_record_store(draft=draft)
    stored = UsageRecord.objects.get(pk=record.pk)
    assert stored.normalizer_rules == ["empty_text_dropped"]
    assert (stored.stream, stored.credits, stored.first_token_ms) == (True, 0.25, 7)
    assert stored.created_at == record.created_at
    attempts = list(stored.attempts.order_by("attempt"))
    assert [(a.attempt, a.http_status, a.outcome) for a in attempts] == [
        (0, 503, "transient"),
        (1, 200, "success"),
    ]
    assert attempts[0].error_snippet.endswith("…(truncated)")
    credential.refresh_from_db()
    assert credential.success_count == 1 and credential.last_used_at is not None
    key.refresh_from_db()
    assert key.last_used_at == stored.created_at


def test_window_increments_keep_peaks_and_roll_over():
    key = ClientKeyFactory()
    now = timezone.now()
    reservation = limits.Reservation(key.pk)
    limits.limit_settle(reservation=reservation, tokens=100, credits=1.5, now=now)
    limits.limit_settle(reservation=reservation, tokens=40, credits=0.5, now=now)
    limits.limit_settle(reservation=reservation, tokens=0, credits=0.0, now=now)
    day = ClientKeyWindow.objects.get(client_key=key, kind="day")
    assert (day.requests, day.tokens, day.credits) == (3, 140, 2.0)
    assert (day.peak_tokens, day.peak_credits) == (100, 1.5)
    tomorrow = now + timedelta(days=1)
    limits.limit_settle(reservation=reservation, tokens=10, credits=0.1, now=tomorrow)
    day.refresh_from_db()
    assert (day.requests, day.tokens, day.peak_tokens) == (1, 10, 100)


def test_the_start_read_gives_what_the_separate_selectors_give():
    assert ("id", *selectors._ACCESS_ONLY) == selectors._ACCESS_FIELDS
    group = CredentialGroupFactory(name="g")
    inside = CredentialFactory(priority=3, proxy_password="secret", available_models=["a"])
    inside.groups.add(group)
    outside = CredentialFactory(priority=1)
    grouped_key = ClientKeyFactory(group=group, daily_token_budget=1000)
    plain_key = ClientKeyFactory()
    empty_key = ClientKeyFactory(group=CredentialGroupFactory(name="empty"))
    config = selectors.read_gateway_config()

    for key in (grouped_key, plain_key, empty_key):
        start = selectors.request_start(key.key_hash)
        identity = selectors.client_key_by_hash(key.key_hash)
        assert start.key == identity
        assert start.candidates == selectors.pool_candidates(group=identity.group)
        for candidate in start.candidates:
            expected = selectors.credential_access(credential_id=candidate.id, config=config)
            assert start.access(candidate.id, config) == expected
    assert [c.id for c in selectors.request_start(plain_key.key_hash).candidates] == [
        outside.pk,
        inside.pk,
    ]
    assert selectors.request_start(empty_key.key_hash).candidates == []
    assert selectors.request_start("0" * 64) == selectors.StartRead(None, [], {})
