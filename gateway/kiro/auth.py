"""Token requests to Kiro's and AWS's auth services: refresh (spec §8.3–§8.5) and the grants
of the admin's login flows (kiro-ops §8.4: OIDC device code, the social portal's code
exchange). Plain values in, raw httpx responses out; no Django."""

from __future__ import annotations

import uuid

import httpx

from gateway.kiro.client import (
    REST_TIMEOUT,
    Proxy,
    client_for,
    effective_proxy,
    host_of,
    idc_auth_base,
    social_auth_base,
)
from gateway.kiro.types import CredentialAccess, KiroConfig

# --- token refresh (spec §8.3–§8.5) ---------------------------------------------------------


async def refresh_request(access: CredentialAccess, config: KiroConfig) -> httpx.Response:
    """POST the refresh grant for the credential's auth kind and return the raw answer."""
    client = client_for(effective_proxy(access, config), config.tls_backend)
    if access.auth_method == "external_idp":
        form = {
            "client_id": access.client_id,
            "grant_type": "refresh_token",
            "refresh_token": access.refresh_token,
        }
        if access.scopes:
            form["scope"] = access.scopes
        return await client.post(
            access.token_endpoint,
            data=form,
            headers={"Accept": "application/json"},
            timeout=REST_TIMEOUT,
        )
    if access.auth_method == "idc":
        url = idc_auth_base(access.auth_region) + "/token"
        headers = {
            "content-type": "application/json",
            "x-amz-user-agent": "aws-sdk-js/3.980.0 KiroIDE",
            "user-agent": f"aws-sdk-js/3.980.0 ua/2.1 os/{config.system_version} lang/js "
            f"md/nodejs#{config.node_version} api/sso-oidc#3.980.0 m/E KiroIDE",
            "host": host_of(url),
            "amz-sdk-invocation-id": str(uuid.uuid4()),
            "amz-sdk-request": "attempt=1; max=4",
        }
        payload = {
            "clientId": access.client_id,
            "clientSecret": access.client_secret,
            "refreshToken": access.refresh_token,
            "grantType": "refresh_token",
        }
        return await client.post(url, json=payload, headers=headers, timeout=REST_TIMEOUT)
    url = social_auth_base(access.auth_region) + "/refreshToken"
    headers = {
        "Accept": "application/json, text/plain, */*",
        "Content-Type": "application/json",
        "User-Agent": f"KiroIDE-{config.kiro_version}-{access.machine_id}",
        "host": host_of(url),
    }
    return await client.post(
        url, json={"refreshToken": access.refresh_token}, headers=headers, timeout=REST_TIMEOUT
    )


# --- admin login flows (spec kiro-ops §8.4) ---------------------------------------------------
#
# The wire side of `credentials.login`: IdC / Builder ID device-code login (SSO-OIDC RegisterClient,
# StartDeviceAuthorization, CreateToken) and the Social PKCE code exchange. Each returns the raw
# answer; sessions, polling and error wording stay in `credentials.login`. The caller passes the
# proxy (a session's own, else the effective one) and the TLS backend.

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OIDC_SCOPES = [
    "codewhisperer:completions",
    "codewhisperer:analysis",
    "codewhisperer:conversations",
    "codewhisperer:transformations",
    "codewhisperer:taskassist",
]
_LOGIN_OIDC_HEADERS = {
    "content-type": "application/json",
    "x-amz-user-agent": "aws-sdk-js/3.980.0 KiroIDE",
    "user-agent": "aws-sdk-js/3.980.0 ua/2.1 api/sso-oidc#3.980.0 m/E KiroIDE",
}
_LOGIN_PORTAL_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/plain, */*",
    "user-agent": "KiroIDE",
}


async def _login_post(
    url: str, payload: dict[str, object], headers: dict[str, str], proxy: Proxy | None, tls: str
) -> httpx.Response:
    client = client_for(proxy, tls)
    return await client.post(url, json=payload, headers=dict(headers), timeout=REST_TIMEOUT)


async def register_client(
    region: str, *, issuer_url: str, proxy: Proxy | None, tls_backend: str
) -> httpx.Response:
    """RegisterClient: a public OIDC client for the device-code and refresh grants."""
    payload: dict[str, object] = {
        "clientName": "kiro-rs",
        "clientType": "public",
        "scopes": OIDC_SCOPES,
        "grantTypes": [DEVICE_GRANT, "refresh_token"],
        "issuerUrl": issuer_url,
    }
    url = idc_auth_base(region) + "/client/register"
    return await _login_post(url, payload, _LOGIN_OIDC_HEADERS, proxy, tls_backend)


async def device_authorization(
    region: str,
    *,
    client_id: str,
    client_secret: str | None,
    start_url: str,
    proxy: Proxy | None,
    tls_backend: str,
) -> httpx.Response:
    """StartDeviceAuthorization for a registered client and an IdC start URL."""
    payload: dict[str, object] = {
        "clientId": client_id,
        "clientSecret": client_secret,
        "startUrl": start_url,
    }
    url = idc_auth_base(region) + "/device_authorization"
    return await _login_post(url, payload, _LOGIN_OIDC_HEADERS, proxy, tls_backend)


async def device_token(
    region: str,
    *,
    client_id: str,
    client_secret: str | None,
    device_code: str,
    proxy: Proxy | None,
    tls_backend: str,
) -> httpx.Response:
    """One CreateToken poll with the device-code grant (RFC 8628)."""
    payload: dict[str, object] = {
        "clientId": client_id,
        "clientSecret": client_secret,
        "grantType": DEVICE_GRANT,
        "deviceCode": device_code,
    }
    url = idc_auth_base(region) + "/token"
    return await _login_post(url, payload, _LOGIN_OIDC_HEADERS, proxy, tls_backend)


async def social_code_exchange(
    region: str,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    proxy: Proxy | None,
    tls_backend: str,
) -> httpx.Response:
    """Exchange a Kiro portal authorization code and its PKCE verifier for tokens."""
    payload: dict[str, object] = {
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
    }
    url = social_auth_base(region) + "/oauth/token"
    return await _login_post(url, payload, _LOGIN_PORTAL_HEADERS, proxy, tls_backend)
