"""The operator console's writes: balances, overage, bulk edits, deletions (kiro-ops §8.1)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from credentials.models import (
    Credential,
    CredentialGroup,
    DisabledReason,
)
from credentials.services.pool import groups_ensure
from credentials.services.proxies import proxy_assignable_urls

BALANCE_TTL = timedelta(minutes=5)


def credential_store_balance(*, credential_id: int, balance: dict[str, Any]) -> None:
    """Cache a getUsageLimits balance; update the title, backfill an empty email (§8.1)."""
    credential = Credential.objects.filter(pk=credential_id).first()
    if credential is None:
        return
    credential.balance = balance
    credential.balance_checked_at = timezone.now()
    fields = ["balance", "balance_checked_at", "updated_at"]
    title = balance.get("subscription_title") or ""
    if title and title != credential.subscription_title:
        credential.subscription_title = title  # drives the Opus/FREE rule (spec §3.1)
        fields.append("subscription_title")
    email = balance.get("email") or ""
    if email and not credential.email:
        credential.email = email
        fields.append("email")
    capability = balance.get("overage_capability_raw") or ""
    if capability:
        credential.overage_capability = capability[:32]
        fields.append("overage_capability")
    status = balance.get("overage_status") or ""
    if status:
        credential.overage_status = status[:16]
        fields.append("overage_status")
    credential.save(update_fields=fields)


def credential_set_overage_status(*, credential_id: int, status: str) -> None:
    """Record a changed overage status and drop the cached balance (spec §8.1)."""
    Credential.objects.filter(pk=credential_id).update(
        overage_status=status, balance_checked_at=None, updated_at=timezone.now()
    )


def credential_delete(*, credential_ids: Iterable[int]) -> int:
    """Delete credentials (any state may be deleted, spec kiro-ops #114 [F])."""
    ids = list(credential_ids)
    count = Credential.objects.filter(pk__in=ids).count()
    Credential.objects.filter(pk__in=ids).delete()
    return count


def credential_delete_disabled() -> list[int]:
    """Delete every disabled credential ("clear disabled", spec kiro-ops #124); return ids."""
    ids = list(Credential.objects.filter(enabled=False).values_list("pk", flat=True))
    Credential.objects.filter(pk__in=ids).delete()
    return ids


def credential_balance_exhausted(balance: Any) -> bool:
    if not isinstance(balance, dict):
        return False
    remaining = balance.get("remaining")
    percentage = balance.get("usage_percentage")
    return (isinstance(remaining, int | float) and remaining <= 0) or (
        isinstance(percentage, int | float) and percentage >= 100
    )


def credential_disable_exhausted(*, credential_ids: Iterable[int] | None = None) -> list[int]:
    """Disable enabled credentials whose cached balance is used up (spec kiro-ops #125)."""
    queryset = Credential.objects.filter(enabled=True, balance__isnull=False)
    if credential_ids is not None:
        queryset = queryset.filter(pk__in=list(credential_ids))
    rows = queryset.values_list("pk", "balance")
    ids = [pk for pk, balance in rows if credential_balance_exhausted(balance)]
    Credential.objects.filter(pk__in=ids).update(
        enabled=False, disabled_reason=DisabledReason.QUOTA_EXCEEDED, updated_at=timezone.now()
    )
    return ids


@transaction.atomic
def credential_edit_groups(
    *, credential_ids: Iterable[int], names: Iterable[str], mode: str
) -> int:
    """Replace, append or remove groups on credentials (spec kiro-ops #127)."""
    if mode not in ("replace", "append", "remove"):
        raise ValueError(f"unknown mode {mode!r}")
    wanted = [n.strip() for n in names if n.strip()]
    credentials = list(Credential.objects.filter(pk__in=list(credential_ids)))
    if mode == "remove":
        groups = list(CredentialGroup.objects.filter(name__in=wanted))
    else:
        groups = list(groups_ensure(names=wanted).values())
    for credential in credentials:
        if mode == "replace":
            credential.groups.set(groups)
        elif mode == "append":
            credential.groups.add(*groups)
        else:
            credential.groups.remove(*groups)
    Credential.objects.filter(pk__in=[c.pk for c in credentials]).update(updated_at=timezone.now())
    return len(credentials)


def credential_set_proxy(*, credential_ids: Iterable[int], url: str) -> int:
    """Copy a proxy URL onto credentials; no live link to the pool (spec kiro-ops §7)."""
    return Credential.objects.filter(pk__in=list(credential_ids)).update(
        proxy_url=url, proxy_username="", proxy_password="", updated_at=timezone.now()
    )


def credential_assign_round_robin(*, credential_ids: Iterable[int]) -> dict[int, str]:
    """Spread the assignable pool URLs over credentials: credential i gets URL i mod n (§7)."""
    urls = proxy_assignable_urls()
    ids = sorted(credential_ids)
    if not urls:
        return {}
    plan = {pk: urls[i % len(urls)] for i, pk in enumerate(ids)}
    with transaction.atomic():
        for url in set(plan.values()):
            credential_set_proxy(
                credential_ids=[pk for pk, chosen in plan.items() if chosen == url], url=url
            )
    return plan


# --- proxy pool (spec kiro-ops §7) ------------------------------------------------------------
