"""The admin login flows' wire calls in `gateway.kiro.client`, against the fake upstream: IdC
device code (register, authorize, token) and the Social code exchange (spec kiro-ops §8.4).
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from gateway.kiro import auth as kiro_auth
from gateway.kiro import client as kiro_client

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DIRECT = {"proxy": None, "tls_backend": "rustls"}


@pytest.fixture
async def fake(fake_kiro, settings):
    """The fake upstream with the auth base URLs pointed at it; the loop's clients closed after."""
    for name in ("KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    yield fake_kiro
    await kiro_client.close_clients()


async def test_register_and_device_authorization_open_a_device_login(fake):
    registered = await kiro_auth.register_client(
        "eu-west-1", issuer_url="https://d-1.awsapps.com/start", **DIRECT
    )

    assert registered.status_code == 200
    client = registered.json()
    [register] = fake.requests_for("register")
    assert (register.method, register.path) == ("POST", "/client/register")
    assert register.json == {
        "clientName": "kiro-rs",
        "clientType": "public",
        "scopes": kiro_auth.OIDC_SCOPES,
        "grantTypes": [DEVICE_GRANT, "refresh_token"],
        "issuerUrl": "https://d-1.awsapps.com/start",
    }
    assert register.header("user-agent").endswith("api/sso-oidc#3.980.0 m/E KiroIDE")

    authorized = await kiro_auth.device_authorization(
        "eu-west-1",
        client_id=client["clientId"],
        client_secret=client["clientSecret"],
        start_url="https://d-1.awsapps.com/start",
        **DIRECT,
    )

    assert authorized.status_code == 200
    answer = authorized.json()
    [device] = fake.state.devices.values()
    assert (answer["deviceCode"], answer["userCode"]) == (device.device_code, device.user_code)
    [sent] = fake.requests_for("device")
    assert sent.path == "/device_authorization"
    assert sent.json["startUrl"] == "https://d-1.awsapps.com/start"
    assert (device.client_id, device.client_secret) == (client["clientId"], client["clientSecret"])


async def test_device_token_polls_with_the_device_grant_and_logs_no_secret(fake, caplog):
    caplog.set_level(logging.DEBUG)
    client = (await kiro_auth.register_client("us-east-1", issuer_url="x", **DIRECT)).json()
    fields = {"client_id": client["clientId"], "client_secret": client["clientSecret"]}
    device = (
        await kiro_auth.device_authorization("us-east-1", start_url="x", **fields, **DIRECT)
    ).json()

    pending = await kiro_auth.device_token(
        "us-east-1", device_code=device["deviceCode"], **fields, **DIRECT
    )
    fake.approve_device(device["userCode"])
    done = await kiro_auth.device_token(
        "us-east-1", device_code=device["deviceCode"], **fields, **DIRECT
    )

    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    assert done.status_code == 200
    tokens = done.json()
    account = fake.account(fake.state.devices[device["deviceCode"]].account_id)
    assert (tokens["accessToken"], tokens["refreshToken"]) == (
        account.access_token,
        account.refresh_token,
    )
    polls = fake.requests_for("token")
    assert [(r.path, r.json["grantType"], r.json["deviceCode"]) for r in polls] == [
        ("/token", DEVICE_GRANT, device["deviceCode"])
    ] * 2
    for secret in (client["clientSecret"], device["deviceCode"], account.refresh_token):
        assert secret not in caplog.text


async def test_social_code_exchange_posts_code_and_verifier_to_the_portal(fake, caplog):
    caplog.set_level(logging.DEBUG)
    answer = await kiro_auth.social_code_exchange(
        "us-east-1",
        code="c0de",
        code_verifier="v" * 43,
        redirect_uri="http://127.0.0.1:3128/oauth/callback?login_option=github",
        **DIRECT,
    )

    assert answer.status_code == 200
    tokens = answer.json()
    account = fake.account("social-login-1")
    assert (tokens["refreshToken"], tokens["profileArn"]) == (
        account.refresh_token,
        account.profile_arn,
    )
    [sent] = fake.requests_for("login")
    assert (sent.method, sent.path) == ("POST", "/oauth/token")
    assert json.loads(sent.body) == {
        "code": "c0de",
        "code_verifier": "v" * 43,
        "redirect_uri": "http://127.0.0.1:3128/oauth/callback?login_option=github",
    }
    assert (sent.header("user-agent"), sent.header("accept")) == (
        "KiroIDE",
        "application/json, text/plain, */*",
    )
    assert "v" * 43 not in caplog.text and account.refresh_token not in caplog.text


async def test_an_unreachable_auth_host_raises_an_httpx_error(fresh_fake_kiro, settings):
    settings.KIRO_IDC_AUTH_BASE_URL = fresh_fake_kiro.base_url
    fresh_fake_kiro.stop()  # the port is now closed
    try:
        with pytest.raises(httpx.HTTPError):  # credentials.login turns this into a LoginError
            await kiro_auth.register_client("us-east-1", issuer_url="x", **DIRECT)
    finally:
        await kiro_client.close_clients()
