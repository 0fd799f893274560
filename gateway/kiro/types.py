"""The plain values the Kiro client takes: who calls (`CredentialAccess`) and how (`KiroConfig`).

No Django here: `credentials.selectors` builds these from the database, the Kiro client only
reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

SOCIAL_PROFILE_ARN = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK"
BUILDER_ID_PLACEHOLDER_ARN = "arn:aws:codewhisperer:us-east-1:638616132270:profile/AAAACCCCXXXX"


class KiroConfig(Protocol):
    """The gateway settings the Kiro client reads (credentials.selectors.GatewayConfig)."""

    kiro_version: str
    system_version: str
    node_version: str
    tls_backend: str
    proxy_url: str
    proxy_username: str
    proxy_password: str


@dataclass(frozen=True, slots=True)
class CredentialAccess:
    """What it takes to call Kiro as one credential (secrets decrypted, in memory only)."""

    id: int
    auth_method: str
    provider: str
    refresh_token: str
    access_token: str
    expires_at: datetime | None
    token_version: int
    client_id: str
    client_secret: str
    kiro_api_key: str
    token_endpoint: str
    scopes: str
    auth_region: str
    api_region: str
    machine_id: str
    profile_arn: str
    endpoint: str
    proxy_url: str
    proxy_username: str
    proxy_password: str
    models_checked_at: datetime | None = None

    @property
    def is_api_key(self) -> bool:
        return self.auth_method == "api_key"

    @property
    def streaming_profile_arn(self) -> str | None:
        """Return the ARN sent on chat calls (spec kiro-protocol §1.2, Z)."""
        if self.is_api_key:
            return None
        if self.profile_arn:
            return self.profile_arn
        if self.auth_method == "social" or self.provider.lower() in ("github", "google"):
            return SOCIAL_PROFILE_ARN
        return BUILDER_ID_PLACEHOLDER_ARN
