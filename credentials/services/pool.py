"""The pool's bookkeeping: enable/disable, failures, cooldowns, success, self-heal, and the
token-refresh claims (spec kiro-ops §3.5–§3.9, kiro-protocol §8)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from credentials import fastsql, selectors
from credentials.models import (
    Credential,
    CredentialGroup,
    CredentialRequestStamp,
    DisabledReason,
    GatewaySettings,
)


def credential_enable(*, credential_ids: Iterable[int]) -> int:
    """Enable credentials, clearing reason, failure counters and cooldown (spec §2.6)."""
    return (
        Credential.objects.filter(pk__in=list(credential_ids))
        .exclude(disabled_reason=DisabledReason.INVALID_CONFIG)
        .update(
            enabled=True,
            disabled_reason="",
            failure_count=0,
            refresh_failure_count=0,
            cooldown_until=None,
            self_heal_rounds=0,
            last_self_heal_at=None,
            self_heal_model="",
            updated_at=timezone.now(),
        )
    )


def credential_disable(*, credential_ids: Iterable[int]) -> int:
    """Disable credentials by hand (reason Manual)."""
    return Credential.objects.filter(pk__in=list(credential_ids), enabled=True).update(
        enabled=False, disabled_reason=DisabledReason.MANUAL, updated_at=timezone.now()
    )


def credential_reset_failures(*, credential_ids: Iterable[int]) -> int:
    """Zero the failure counters; a credential disabled for failures is enabled again."""
    ids = list(credential_ids)
    now = timezone.now()
    Credential.objects.filter(
        pk__in=ids,
        enabled=False,
        disabled_reason__in=[
            DisabledReason.TOO_MANY_FAILURES,
            DisabledReason.TOO_MANY_REFRESH_FAILURES,
        ],
    ).update(enabled=True, disabled_reason="", updated_at=now)
    return Credential.objects.filter(pk__in=ids).update(
        failure_count=0, refresh_failure_count=0, total_failure_count=0, updated_at=now
    )


def groups_ensure(*, names: Iterable[str]) -> dict[str, CredentialGroup]:
    """Return groups by name, creating the missing ones (spec kiro-ops §3.11)."""
    wanted = sorted(set(names))
    existing = {g.name: g for g in CredentialGroup.objects.filter(name__in=wanted)}
    for name in wanted:
        if name not in existing:
            existing[name] = CredentialGroup.objects.create(name=name)
    return existing


# --- kiro-rs import ----------------------------------------------------------------------

FAILURES_BEFORE_DISABLE = 3


def pool_set_current(*, credential_id: int | None) -> None:
    """Move priority mode's sticky current credential (shared by every process)."""
    GatewaySettings.objects.filter(pk=GatewaySettings.singleton_id).update(
        current_credential_id=credential_id
    )
    selectors.note_current_credential(credential_id)


def credential_disable_auto(*, credential_id: int, reason: str) -> None:
    """Disable a credential for an upstream reason (QuotaExceeded, Suspended, ...)."""
    Credential.objects.filter(pk=credential_id).update(
        enabled=False,
        disabled_reason=reason,
        failure_count=FAILURES_BEFORE_DISABLE,
        total_failure_count=F("total_failure_count") + 1,
        updated_at=timezone.now(),
    )


def credential_count_failure(*, credential_id: int) -> bool:
    """Count one auth failure; at three in a row disable (TooManyFailures). Return disabled?"""
    now = timezone.now()
    Credential.objects.filter(pk=credential_id).update(
        failure_count=F("failure_count") + 1,
        total_failure_count=F("total_failure_count") + 1,
        updated_at=now,
    )
    return bool(
        Credential.objects.filter(
            pk=credential_id, enabled=True, failure_count__gte=FAILURES_BEFORE_DISABLE
        ).update(enabled=False, disabled_reason=DisabledReason.TOO_MANY_FAILURES, updated_at=now)
    )


def credential_cooldown(*, credential_id: int, seconds: int) -> None:
    """Cool a throttled credential down (spec kiro-ops §3.7); never leads to a disable."""
    now = timezone.now()
    until = now + timedelta(seconds=max(1, seconds))
    Credential.objects.filter(pk=credential_id).filter(
        Q(cooldown_until__isnull=True) | Q(cooldown_until__lt=until)
    ).update(cooldown_until=until, updated_at=now)
    Credential.objects.filter(pk=credential_id).update(
        total_failure_count=F("total_failure_count") + 1
    )


def credential_report_success(*, credential_id: int, model: str | None) -> None:
    """Record a served request: counters, last use, cooldown and self-heal streak cleared.

    One UPDATE (every served request runs it): hand-built SQL (credentials/fastsql.py). SET
    expressions all read the row as it was, so the CASEs see the old self_heal_model."""
    now = fastsql.prep(Credential, "last_used_at", timezone.now())
    sql, params = _success_sql(bool(model)), [now]
    if model:
        # spec kiro-ops §3.9: only a success on the streak's own model clears it.
        params += [model.lower()] * 3
    fastsql.execute(sql, [*params, credential_id])


@functools.cache
def _success_sql(with_model: bool) -> str:
    def c(name: str) -> str:
        return fastsql.column(Credential, name)

    sets = [
        f"{c('success_count')} = {c('success_count')} + 1",
        f"{c('last_used_at')} = %s",
        f"{c('failure_count')} = 0",
        f"{c('refresh_failure_count')} = 0",
        f"{c('cooldown_until')} = NULL",
    ]
    if with_model:
        same = f"{c('self_heal_model')} = %s"
        sets += [
            f"{c('self_heal_rounds')} = CASE WHEN {same} THEN 0 ELSE {c('self_heal_rounds')} END",
            f"{c('last_self_heal_at')} = CASE WHEN {same} THEN NULL "
            f"ELSE {c('last_self_heal_at')} END",
            f"{c('self_heal_model')} = CASE WHEN {same} THEN '' ELSE {c('self_heal_model')} END",
        ]
    return f"UPDATE {fastsql.table(Credential)} SET {', '.join(sets)} WHERE {c('id')} = %s"


RPM_WINDOW = timedelta(seconds=60)


@transaction.atomic
def credential_rpm_reserve(*, credential_id: int, limit: int) -> int:
    """Take one of the credential's `limit` requests of the last minute (kiro-ops §3.8).

    Returns 0 when the request may go, else the seconds until the oldest one leaves the
    window. The credential's row is locked while counting, so that processes sharing the
    database never hand out more than `limit`."""
    now = timezone.now()
    list(Credential.objects.select_for_update().filter(pk=credential_id).values_list("pk"))
    stamps = CredentialRequestStamp.objects.filter(credential_id=credential_id)
    stamps.filter(at__lte=now - RPM_WINDOW).delete()
    recent = list(stamps.order_by("at").values_list("at", flat=True)[:limit])
    if len(recent) >= limit:
        return max(1, math.ceil((recent[0] + RPM_WINDOW - now).total_seconds()))
    CredentialRequestStamp.objects.create(credential_id=credential_id, at=now)
    return 0


def credential_self_heal(*, credential_ids: Iterable[int], model: str | None) -> int:
    """Re-enable TooManyFailures credentials for another try (spec kiro-ops §3.9)."""
    now = timezone.now()
    return Credential.objects.filter(
        pk__in=list(credential_ids),
        enabled=False,
        disabled_reason=DisabledReason.TOO_MANY_FAILURES,
    ).update(
        enabled=True,
        disabled_reason="",
        failure_count=0,
        self_heal_rounds=F("self_heal_rounds") + 1,
        self_heal_total=F("self_heal_total") + 1,
        last_self_heal_at=now,
        self_heal_model=(model or "").lower(),
        updated_at=now,
    )


# --- token refresh bookkeeping (spec kiro-protocol §8) ------------------------------------


def credential_refresh_claim(
    *, credential_id: int, seen_version: int, owner: str, ttl_seconds: int
) -> bool:
    """Claim the right to refresh with a conditional UPDATE; True for exactly one caller."""
    now = timezone.now()
    return bool(
        Credential.objects.filter(pk=credential_id, token_version=seen_version)
        .filter(Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now))
        .update(
            refresh_claimed_until=now + timedelta(seconds=ttl_seconds),
            refresh_claim_owner=owner,
        )
    )


def credential_refresh_commit(
    *,
    credential_id: int,
    owner: str,
    access_token: str,
    expires_at: Any,
    refresh_token: str | None,
    profile_arn: str | None,
) -> None:
    """Store a refreshed token, bump token_version and release the claim."""
    credential = Credential.objects.get(pk=credential_id)
    credential.access_token = access_token
    credential.expires_at = expires_at
    if refresh_token:
        credential.set_refresh_token(refresh_token)  # rotated (spec kiro-ops §2.8)
    if profile_arn:
        credential.profile_arn = profile_arn
    credential.token_version += 1
    credential.refresh_claimed_until = None
    credential.refresh_claim_owner = ""
    credential.refresh_failure_count = 0
    credential.refresh_count += 1
    credential.last_refreshed_at = timezone.now()
    credential.save(update_fields=[
        "access_token", "expires_at", "refresh_token", "refresh_token_hash", "profile_arn",
        "token_version", "refresh_claimed_until", "refresh_claim_owner",
        "refresh_failure_count", "refresh_count", "last_refreshed_at", "updated_at",
    ])  # fmt: skip


def credential_refresh_failed(*, credential_id: int, owner: str, invalid_grant: bool) -> bool:
    """Record a failed refresh and release the claim. Return whether it was disabled."""
    now = timezone.now()
    release = {
        "refresh_claimed_until": None,
        "refresh_claim_owner": "",
        "last_refresh_failure_at": now,
        "updated_at": now,
    }
    rows = Credential.objects.filter(pk=credential_id)
    if invalid_grant:
        rows.update(enabled=False, disabled_reason=DisabledReason.INVALID_REFRESH_TOKEN, **release)
        return True
    rows.update(refresh_failure_count=F("refresh_failure_count") + 1, **release)
    return bool(
        rows.filter(enabled=True, refresh_failure_count__gte=FAILURES_BEFORE_DISABLE).update(
            enabled=False, disabled_reason=DisabledReason.TOO_MANY_REFRESH_FAILURES
        )
    )


def credential_refresh_release(*, credential_id: int, owner: str) -> None:
    """Give up a refresh claim without counting a failure."""
    Credential.objects.filter(pk=credential_id, refresh_claim_owner=owner).update(
        refresh_claimed_until=None, refresh_claim_owner=""
    )


def credential_set_profile_arn(*, credential_id: int, profile_arn: str) -> None:
    """Store a profileArn found by ListAvailableProfiles (spec kiro-protocol §8.9)."""
    Credential.objects.filter(pk=credential_id).update(
        profile_arn=profile_arn, updated_at=timezone.now()
    )


def credential_set_models(*, credential_id: int, models: list[str]) -> None:
    """Store a credential's upstream model list (ListAvailableModels, spec kiro-ops §3.10)."""
    Credential.objects.filter(pk=credential_id).update(
        available_models=models, models_checked_at=timezone.now()
    )


# --- operator console: balance, overage, bulk edits (spec kiro-ops §8.1, §10 #122–#135) ------
