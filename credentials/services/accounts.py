"""New accounts: the batch import and the admin's login flows (kiro-ops §6.3, §8.4)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from credentials import batch_import
from credentials.models import (
    Credential,
    sha256_hex,
)
from credentials.services.kiro_rs import IMPORTED_DEFAULTS
from credentials.services.pool import groups_ensure
from credentials.services.proxies import proxy_assignable_urls


@dataclass(slots=True)
class BatchImportRun:
    """What the items of one batch share: the tokens seen so far and the proxies to hand out."""

    include_errored: bool
    proxies: list[str]
    in_batch: dict[str, int] = field(default_factory=dict)  # token hash -> item index


def credential_batch_import_start(*, include_errored: bool) -> BatchImportRun:
    """Begin a batch import; items then go one at a time through `..._item`."""
    return BatchImportRun(include_errored=include_errored, proxies=proxy_assignable_urls())


@transaction.atomic
def credential_batch_import_item(
    *, run: BatchImportRun, item: batch_import.BatchItem
) -> batch_import.BatchOutcome:
    """Create the credential of one valid, new item; report what happened to it.

    One transaction per item, so a stopped stream keeps the items already finished (§6.3).
    """

    def report(outcome: str, detail: str = "", pk: int | None = None) -> batch_import.BatchOutcome:
        return batch_import.BatchOutcome(item.index, item.source, item.label, outcome, detail, pk)

    if item.errored and not run.include_errored:
        return report("skipped", 'KAM status "error"')
    if item.problem:
        return report("invalid", item.problem)
    refresh = item.values.get("refresh_token") or ""
    api_key = item.values.get("kiro_api_key") or ""
    hashes = [
        (sha256_hex(secret), column, kind)
        for secret, column, kind in (
            (refresh, "refresh_token_hash", "refresh token"),
            (api_key, "kiro_api_key_hash", "API key"),
        )
        if secret
    ]
    earlier = next((run.in_batch[d] for d, _, _ in hashes if d in run.in_batch), None)
    if earlier is not None:
        return report("duplicate", f"same token as item {earlier} of this batch")
    duplicate = next(
        (
            kind
            for digest, column, kind in hashes
            if Credential.objects.filter(**{column: digest}).exists()
        ),
        None,
    )
    if duplicate:
        return report("duplicate", f"same {duplicate} as an existing credential")
    credential = Credential()
    for attr, default in IMPORTED_DEFAULTS.items():
        value = item.values.get(attr)
        setattr(credential, attr, default if value is None else value)
    credential.set_refresh_token(refresh)
    credential.set_kiro_api_key(api_key)
    credential.enabled = item.values.get("enabled", True)
    credential.disabled_reason = item.values.get("disabled_reason") or ""
    credential.kiro_extra = item.kiro_extra
    if not credential.proxy_url and run.proxies:
        credential.proxy_url = secrets.choice(run.proxies)  # spec kiro-ops #123
    credential.save()
    groups = groups_ensure(names=item.groups)
    credential.groups.set([groups[name] for name in item.groups])
    for digest, _, _ in hashes:
        run.in_batch[digest] = item.index
    return report("imported", "", credential.pk)


@transaction.atomic
def credential_batch_import(
    *, items: list[batch_import.BatchItem], include_errored: bool
) -> list[batch_import.BatchOutcome]:
    """Create a credential per valid, new item; report every item (duplicates are skipped)."""
    run = credential_batch_import_start(include_errored=include_errored)
    return [credential_batch_import_item(run=run, item=item) for item in items]


# --- login flows (spec kiro-ops §8.4) -----------------------------------------------------------


def refresh_token_check_new(refresh_token: str, *, exclude_id: int | None = None) -> None:
    if not refresh_token:
        raise ValueError("the login gave no refresh token")
    others = Credential.objects.filter(refresh_token_hash=sha256_hex(refresh_token))
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    if others.exists():
        raise ValueError("another credential already has this refresh token")


@dataclass(frozen=True, slots=True)
class LoginTokens:
    """What a device-code or social login produced: the tokens and, for IdC, its client."""

    auth_method: str  # "idc" | "social"
    refresh_token: str = field(repr=False)
    access_token: str = field(repr=False)
    expires_at: Any
    provider: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    start_url: str = ""
    region: str = ""
    profile_arn: str = ""


def credential_create_from_login(
    *,
    tokens: LoginTokens,
    priority: int | None = None,
    email: str = "",
    proxy_url: str = "",
) -> int:
    """Add the credential a device-code or social login produced; return its id."""
    refresh_token_check_new(tokens.refresh_token)
    credential = Credential(
        auth_method=tokens.auth_method,
        provider=tokens.provider,
        access_token=tokens.access_token,
        expires_at=tokens.expires_at,
        client_id=tokens.client_id,
        client_secret=tokens.client_secret,
        start_url=tokens.start_url,
        region=tokens.region,
        auth_region=tokens.region,
        profile_arn=tokens.profile_arn,
        priority=priority if priority is not None else 0,
        email=email,
        proxy_url=proxy_url,
    )
    credential.set_refresh_token(tokens.refresh_token)
    credential.save()
    return credential.pk


@transaction.atomic
def credential_relogin(*, credential_id: int, tokens: LoginTokens) -> None:
    """Put freshly minted tokens on an existing credential (spec kiro-ops §8.4 re-login).

    Keeps id, priority, groups, email and proxy. IdC replaces the whole client-bound set and
    clears what belonged to the old registration; both reset health and the self-heal streak
    (the total stays) and drop the cached balance and model list.
    """
    credential = Credential.objects.select_for_update().filter(pk=credential_id).first()
    if credential is None:
        raise ValueError(f"credential #{credential_id} no longer exists")
    refresh_token_check_new(tokens.refresh_token, exclude_id=credential_id)
    credential.set_refresh_token(tokens.refresh_token)
    credential.access_token = tokens.access_token
    credential.expires_at = tokens.expires_at
    credential.auth_method = tokens.auth_method
    if tokens.auth_method == "idc":
        credential.provider = tokens.provider
        credential.client_id = tokens.client_id
        credential.client_secret = tokens.client_secret
        credential.region = tokens.region
        credential.auth_region = tokens.region
        credential.start_url = tokens.start_url
        credential.profile_arn = ""
        credential.token_endpoint = ""
        credential.issuer_url = ""
        credential.scopes = ""
        credential.set_kiro_api_key("")
    elif tokens.profile_arn:
        credential.profile_arn = tokens.profile_arn
    credential.enabled = True
    credential.disabled_reason = ""
    credential.failure_count = 0
    credential.refresh_failure_count = 0
    credential.cooldown_until = None
    credential.self_heal_rounds = 0
    credential.last_self_heal_at = None
    credential.self_heal_model = ""
    credential.balance = None
    credential.balance_checked_at = None
    credential.available_models = None
    credential.models_checked_at = None
    credential.token_version += 1  # other processes drop their copy of the old token
    credential.refresh_claimed_until = None
    credential.refresh_claim_owner = ""
    credential.save()
