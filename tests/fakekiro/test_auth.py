"""Token endpoints and bearer checks (spec §1.2, §8.3-§8.6)."""

from __future__ import annotations

import httpx

from gateway.fakekiro import Script, bodies
from gateway.fakekiro.server import FakeKiroThread
from tests.fakekiro.builders import TIMEOUT, chat


def _social_refresh(fake: FakeKiroThread, token: str) -> httpx.Response:
    return httpx.post(
        f"{fake.base_url}/refreshToken",
        json={"refreshToken": token},
        headers={"accept": "application/json, text/plain, */*"},
        timeout=TIMEOUT,
    )


def _idc_refresh(fake: FakeKiroThread, token: str, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{fake.base_url}/token",
        json={
            "clientId": client_id,
            "clientSecret": secret,
            "refreshToken": token,
            "grantType": "refresh_token",
        },
        timeout=TIMEOUT,
    )


def test_it_refreshes_a_social_token_that_then_works(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice", auth="social", expires_in=120)

    response = _social_refresh(fake_kiro, account.refresh_token)

    assert response.status_code == 200
    answer = response.json()
    assert answer["expiresIn"] == 120
    assert answer["refreshToken"] == account.refresh_token
    assert answer["profileArn"].startswith("arn:aws:codewhisperer:")
    assert chat(fake_kiro, answer["accessToken"]).status_code == 200
    assert len(account.refresh_token) >= 100  # spec §8.2 local pre-check


def test_it_counts_refresh_calls_per_token_and_account(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice")
    _social_refresh(fake_kiro, account.refresh_token)
    _social_refresh(fake_kiro, "unknown-token")

    assert fake_kiro.refresh_count(token=account.refresh_token) == 1
    assert fake_kiro.refresh_count(account="alice") == 1
    assert fake_kiro.refresh_count(token="unknown-token") == 1
    assert fake_kiro.counters["refresh_by_account"] == {"alice": 1}


def test_it_rotates_refresh_tokens_and_rejects_the_old_one(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice", rotate_refresh_token=True)

    first = _social_refresh(fake_kiro, account.refresh_token)
    replay = _social_refresh(fake_kiro, account.refresh_token)
    second = _social_refresh(fake_kiro, first.json()["refreshToken"])

    assert first.json()["refreshToken"] != account.refresh_token
    assert replay.status_code == 400
    assert replay.content == (
        b'{"error":"invalid_grant","error_description":"Invalid refresh token provided"}'
    )
    assert second.status_code == 200
    assert fake_kiro.refresh_count(account="alice") == 3
    assert fake_kiro.account("alice").refresh_token == second.json()["refreshToken"]


def test_it_answers_invalid_grant_for_an_unknown_token(fake_kiro: FakeKiroThread) -> None:
    response = _social_refresh(fake_kiro, "aor" + "x" * 150)

    assert response.status_code == 400
    assert '"invalid_grant"' in response.text
    assert "Invalid refresh token provided" in response.text


def test_it_refreshes_an_idc_token_with_its_client(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("bob", auth="idc", expires_in=28800)
    assert account.client_id and account.client_secret

    ok = _idc_refresh(fake_kiro, account.refresh_token, account.client_id, account.client_secret)
    bad_client = _idc_refresh(fake_kiro, account.refresh_token, account.client_id, "nope")
    wrong_flow = _social_refresh(fake_kiro, account.refresh_token)

    assert ok.status_code == 200
    assert ok.json()["expiresIn"] == 28800
    assert ok.json()["tokenType"] == "Bearer"
    assert chat(fake_kiro, ok.json()["accessToken"]).status_code == 200
    assert bad_client.status_code == 401
    assert bad_client.content == bodies.INVALID_CLIENT
    assert wrong_flow.status_code == 400


def test_it_refreshes_an_external_idp_token_form_encoded(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("carol", auth="external_idp", scopes="api://kiro/.default")

    response = httpx.post(
        f"{fake_kiro.base_url}/contoso-tenant/oauth2/v2.0/token",
        data={
            "client_id": account.client_id or "",
            "grant_type": "refresh_token",
            "refresh_token": account.refresh_token,
            "scope": "api://kiro/.default offline_access",
        },
        headers={"accept": "application/json"},
        timeout=TIMEOUT,
    )
    unknown = httpx.post(
        f"{fake_kiro.base_url}/common/oauth2/v2.0/token",
        data={"client_id": "x", "grant_type": "refresh_token", "refresh_token": "nope"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    token = response.json()["access_token"]
    assert response.json()["token_type"] == "Bearer"
    assert chat(fake_kiro, token).status_code == 403  # tokentype EXTERNAL_IDP missing
    assert chat(fake_kiro, token, token_type="EXTERNAL_IDP").status_code == 200
    assert unknown.status_code == 400
    assert "invalid_grant" in unknown.text
    assert fake_kiro.requests_for("refresh_external")[0].form["scope"].startswith("api://")


def test_it_rejects_an_expired_access_token(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice", access_expires_in=-1)

    response = chat(fake_kiro, account.access_token or "")

    assert response.status_code == 403
    assert response.content == (
        b'{"message":"The bearer token included in the request is invalid."}'
    )


def test_it_rejects_tokens_expired_on_demand(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice")
    assert chat(fake_kiro, account.access_token or "").status_code == 200

    fake_kiro.expire_access_tokens("alice")

    assert chat(fake_kiro, account.access_token or "").status_code == 403


def test_it_issues_short_lived_tokens(fake_kiro: FakeKiroThread) -> None:
    import time

    account = fake_kiro.add_account("alice", expires_in=1)
    token = _social_refresh(fake_kiro, account.refresh_token).json()["accessToken"]
    assert chat(fake_kiro, token).status_code == 200

    time.sleep(1.1)

    assert chat(fake_kiro, token).status_code == 403


def test_it_rejects_an_unknown_bearer(fake_kiro: FakeKiroThread) -> None:
    response = chat(fake_kiro, "aoa-not-issued")

    assert response.status_code == 403
    assert "The bearer token included in the request is invalid" in response.text
    assert fake_kiro.requests_for("chat")[0].problems


def test_it_accepts_api_keys_only_with_the_api_key_tokentype(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("keyed", auth="api_key")
    assert account.api_key and account.api_key.startswith("ksk_")

    plain = chat(fake_kiro, account.api_key)
    typed = chat(fake_kiro, account.api_key, token_type="API_KEY")

    assert plain.status_code == 403
    assert typed.status_code == 200
    assert fake_kiro.requests_for("chat")[-1].account_id == "keyed"


def test_it_scripts_refresh_faults(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account("alice")
    fake_kiro.script(Script.rate_limited(retry_after=3), route="refresh", account="alice")

    limited = _social_refresh(fake_kiro, account.refresh_token)
    ok = _social_refresh(fake_kiro, account.refresh_token)

    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    assert ok.status_code == 200
    assert fake_kiro.refresh_count(account="alice") == 2


def test_it_runs_the_device_code_login(fake_kiro: FakeKiroThread) -> None:
    base = fake_kiro.base_url
    client = httpx.post(f"{base}/client/register", json={"clientName": "kiro-rs"}, timeout=TIMEOUT)
    creds = client.json()
    device = httpx.post(
        f"{base}/device_authorization",
        json={**creds, "startUrl": "https://view.awsapps.com/start"},
        timeout=TIMEOUT,
    ).json()
    poll = {
        "clientId": creds["clientId"],
        "clientSecret": creds["clientSecret"],
        "grantType": "urn:ietf:params:oauth:grant-type:device_code",
        "deviceCode": device["deviceCode"],
    }

    pending = httpx.post(f"{base}/token", json=poll, timeout=TIMEOUT)
    fake_kiro.approve_device(device["userCode"])
    granted = httpx.post(f"{base}/token", json=poll, timeout=TIMEOUT)

    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    assert granted.status_code == 200
    refresh = _idc_refresh(
        fake_kiro, granted.json()["refreshToken"], creds["clientId"], creds["clientSecret"]
    )
    assert refresh.status_code == 200


def test_device_lifetime_interval_and_scripted_polls_are_configurable(
    fake_kiro: FakeKiroThread,
) -> None:
    base = fake_kiro.base_url
    fake_kiro.configure(device_expires_in=30, device_interval=7)
    creds = httpx.post(f"{base}/client/register", json={}, timeout=TIMEOUT).json()
    device = httpx.post(
        f"{base}/device_authorization", json={**creds, "startUrl": ""}, timeout=TIMEOUT
    ).json()
    fake_kiro.script(Script.json({"error": "slow_down"}, status=400), route="device")
    poll = {
        "clientId": creds["clientId"],
        "clientSecret": creds["clientSecret"],
        "grantType": "urn:ietf:params:oauth:grant-type:device_code",
        "deviceCode": device["deviceCode"],
    }

    scripted = httpx.post(f"{base}/token", json=poll, timeout=TIMEOUT)
    unscripted = httpx.post(f"{base}/token", json=poll, timeout=TIMEOUT)

    assert (device["expiresIn"], device["interval"]) == (30, 7)
    assert (scripted.status_code, scripted.json()["error"]) == (400, "slow_down")
    assert unscripted.json()["error"] == "authorization_pending"
