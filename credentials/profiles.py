"""Resolve the real profileArn of IdC / external-IdP credentials (spec kiro-protocol §8.9, Z).

Before the first chat call, a credential whose ARN is missing or still the Builder-ID
placeholder asks ListAvailableProfiles; a real ARN found is stored. A definitive answer is
remembered per process, so the lookup happens at most once per credential; network errors
try again on a later request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import httpx

from credentials import services, tokens
from credentials.asyncdb import db
from credentials.selectors import GatewayConfig
from gateway.kiro import client as kiro_client
from gateway.kiro.types import BUILDER_ID_PLACEHOLDER_ARN, CredentialAccess
from gateway.protocol.classify import parse_retry_after

log = logging.getLogger(__name__)
_settled: set[int] = set()  # credential ids with a definitive answer in this process


def needs_lookup(access: CredentialAccess) -> bool:
    if access.is_api_key or access.auth_method == "social" or access.id in _settled:
        return False
    return not access.profile_arn or access.profile_arn == BUILDER_ID_PLACEHOLDER_ARN


def first_arn(body: str) -> str | None:
    """Return the first non-blank profile ARN of a ListAvailableProfiles answer."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    profiles = data.get("profiles") if isinstance(data, dict) else None
    for profile in profiles if isinstance(profiles, list) else []:
        arn = profile.get("arn") if isinstance(profile, dict) else None
        if isinstance(arn, str) and arn.strip():
            return arn.strip()
    return None


async def resolve(access: CredentialAccess, config: GatewayConfig) -> CredentialAccess:
    """Return the credential with its real profileArn when one can be found."""
    if not needs_lookup(access):
        return access
    try:
        responses = await kiro_client.list_profiles(access, tokens.bearer(access), config)
    except httpx.HTTPError as exc:
        log.warning("profile lookup for credential %s failed: %s", access.id, exc)
        return access  # spec §8.9: network errors retry on a later request
    arn = None
    for response in responses:
        if response.status_code == 429:
            raise tokens.TokenError(
                "profile lookup rate limited",
                rate_limited=True,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if 200 <= response.status_code < 300:
            arn = first_arn(response.text)
            if arn:
                break
    _settled.add(access.id)
    if not arn:
        return access  # keep the placeholder (spec §8.9: empty list)
    await db(services.credential_set_profile_arn, credential_id=access.id, profile_arn=arn)
    return replace(access, profile_arn=arn)
