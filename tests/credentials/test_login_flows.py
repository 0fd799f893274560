"""Login flows in the admin against the fake upstream: IdC device code and Social paste, new
credentials and re-logins, session expiry, and balance on add (spec kiro-ops §8.4, §10 #140–#144).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from credentials import login
from credentials.models import AuthMethod, Credential, CredentialGroup, DisabledReason
from gateway.fakekiro.script import Script
from tests import factories
from tests.credentials.test_lifecycle import ensure_roles
from tests.factories import CredentialFactory, long_token
from tests.gateway.conftest import Gateway

LOGIN = "admin:credentials_credential_login"
SESSION = "admin:credentials_credential_login_session"
POLL = "admin:credentials_credential_login_poll"
COMPLETE = "admin:credentials_credential_login_complete"
RELOGIN = "admin:credentials_credential_relogin"


@pytest.fixture
def kiro(transactional_db, fake_kiro, settings) -> Gateway:
    """The fake upstream with the base URLs pointed at it, and the staff roles."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    ensure_roles()
    return Gateway(base_url="", fake=fake_kiro, key="")


@pytest.fixture
def as_role(kiro, admin_client_as):
    made: dict[str, object] = {}

    def client(role: str):
        make = {"operator": factories.make_operator, "viewer": factories.make_viewer}[role]
        if role not in made:
            made[role] = make()
        return admin_client_as(made[role])

    return client


def start_device(client, **fields) -> str:
    """Start a device login from the add page; return the session id."""
    data = {"flow": "idc", "start_url": login.BUILDER_ID_START_URL, "region": "us-east-1"}
    response = client.post(reverse(LOGIN), {**data, **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"].rstrip("/").split("/")[-1]


def poll(client, sid: str) -> dict:
    response = client.post(reverse(POLL, args=[sid]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


def start_social(client, url: str | None = None, **fields) -> tuple[str, dict[str, str]]:
    """Start a social login; return the session id and the sign-in URL's query."""
    response = client.post(url or reverse(LOGIN), {"flow": "social", **fields})
    assert response.status_code == 302
    sid = response["Location"].rstrip("/").split("/")[-1]
    page = client.get(response["Location"]).content.decode()
    href = unescape(re.search(r'href="([^"]+)" [^>]*id="signin-link"', page).group(1))
    assert href.startswith("https://app.kiro.dev/signin?")
    return sid, {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}


def complete(client, sid: str, redirect_url: str):
    return client.post(reverse(COMPLETE, args=[sid]), {"redirect_url": redirect_url})


# --- IdC device code ------------------------------------------------------------------------------


def test_a_device_login_adds_an_idc_credential_and_fetches_its_balance(kiro, as_role):
    client = as_role("operator")
    assert client.get(reverse(LOGIN)).status_code == 200

    sid = start_device(client, priority="7", email="builder@example.com")
    page = client.get(reverse(SESSION, args=[sid])).content.decode()
    [device] = kiro.fake.state.devices.values()
    assert device.user_code in page
    assert f"/device?user_code={device.user_code}" in page
    assert reverse(POLL, args=[sid]) in page
    register = json.loads(kiro.fake.requests_for("register")[0].body)
    assert register["clientName"] == "kiro-rs"
    assert register["issuerUrl"] == login.BUILDER_ID_START_URL
    assert "urn:ietf:params:oauth:grant-type:device_code" in register["grantTypes"]

    pending = poll(client, sid)
    assert pending["status"] == "pending"
    assert Credential.objects.count() == 0

    assert kiro.fake.approve_device(device.user_code) == 1
    done = poll(client, sid)

    assert done["status"] == "done"
    credential = Credential.objects.get(pk=done["credentialId"])
    account = kiro.fake.account(kiro.fake.state.devices[device.device_code].account_id)
    assert credential.auth_method == AuthMethod.IDC
    assert credential.provider == "BuilderId"
    assert (credential.client_id, credential.client_secret) == (
        device.client_id,
        device.client_secret,
    )
    assert credential.refresh_token == account.refresh_token
    assert credential.access_token == account.access_token
    assert credential.expires_at > timezone.now() + timedelta(minutes=50)
    assert credential.start_url == login.BUILDER_ID_START_URL
    assert (credential.region, credential.auth_region) == ("us-east-1", "us-east-1")
    assert (credential.priority, credential.email) == (7, "builder@example.com")
    assert credential.balance["usage_limit"] == 2000.0 and credential.balance_checked_at
    assert done["credentialUrl"] == reverse(
        "admin:credentials_credential_change", args=[credential.pk]
    )
    assert LogEntry.objects.filter(object_id=str(credential.pk), action_flag=ADDITION).exists()
    grants = [json.loads(r.body)["grantType"] for r in kiro.fake.requests_for("token")]
    assert grants == ["urn:ietf:params:oauth:grant-type:device_code"] * 2
    for secret in (device.client_secret, device.device_code, account.refresh_token):
        assert secret not in page
        assert secret not in json.dumps(pending) and secret not in json.dumps(done)


def test_the_session_is_spent_once_the_credential_exists(kiro, as_role):
    client = as_role("operator")
    sid = start_device(client)
    kiro.fake.approve_device()
    assert poll(client, sid)["status"] == "done"

    again = poll(client, sid)

    assert again["status"] == "expired"
    assert Credential.objects.count() == 1


def test_any_other_start_url_is_an_enterprise_login(kiro, as_role):
    client = as_role("operator")
    sid = start_device(
        client, start_url="https://d-9067642ac7.awsapps.com/start", region="eu-west-1"
    )
    kiro.fake.approve_device()

    credential = Credential.objects.get(pk=poll(client, sid)["credentialId"])

    assert credential.provider == "Enterprise"
    assert credential.start_url == "https://d-9067642ac7.awsapps.com/start"
    assert (credential.region, credential.auth_region) == ("eu-west-1", "eu-west-1")
    device = json.loads(kiro.fake.requests_for("device")[0].body)
    assert device["startUrl"] == "https://d-9067642ac7.awsapps.com/start"


def test_slow_down_keeps_waiting_with_a_longer_interval(kiro, as_role):
    client = as_role("operator")
    kiro.fake.configure(device_interval=5)
    sid = start_device(client)
    kiro.fake.script(Script.json({"error": "slow_down"}, status=400), route="device")

    answer = poll(client, sid)

    assert (answer["status"], answer["interval"]) == ("pending", 10)
    kiro.fake.approve_device()
    assert poll(client, sid)["status"] == "done"


def test_an_expired_device_session_says_so(kiro, as_role):
    client = as_role("operator")
    kiro.fake.configure(device_expires_in=1)
    sid = start_device(client)
    time.sleep(1.2)
    kiro.fake.approve_device()

    answer = poll(client, sid)

    assert answer["status"] == "expired"
    assert "expired" in answer["message"]
    assert "expired" in client.get(reverse(SESSION, args=[sid])).content.decode()
    assert Credential.objects.count() == 0


def test_an_expired_device_code_upstream_ends_the_session(kiro, as_role):
    client = as_role("operator")
    sid = start_device(client)
    kiro.fake.script(Script.json({"error": "expired_token"}, status=400), route="device")

    assert poll(client, sid)["status"] == "expired"
    assert poll(client, sid)["status"] == "expired"  # the session is gone, not retried
    assert len(kiro.fake.requests_for("token")) == 1


def test_the_check_now_button_works_without_javascript(kiro, as_role):
    client = as_role("operator")
    sid = start_device(client)

    waiting = client.post(reverse(POLL, args=[sid]), {"html": "1"})
    kiro.fake.approve_device()
    done = client.post(reverse(POLL, args=[sid]), {"html": "1"})

    assert waiting.status_code == 302 and waiting["Location"] == reverse(SESSION, args=[sid])
    credential = Credential.objects.get()
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:credentials_credential_change", args=[credential.pk])


def test_another_users_session_cannot_be_polled(kiro, as_role, admin_client_as):
    sid = start_device(as_role("operator"))
    kiro.fake.approve_device()
    other = admin_client_as(factories.make_operator("otto"))

    assert poll(other, sid)["status"] == "expired"
    assert Credential.objects.count() == 0


def test_a_token_answer_without_refresh_token_is_an_error(kiro, as_role):
    credential = CredentialFactory(idc=True, priority=4)
    before = credential.refresh_token
    client = as_role("operator")
    response = client.post(
        reverse(RELOGIN, args=[credential.pk]),
        {"flow": "idc", "start_url": login.BUILDER_ID_START_URL, "region": "us-east-1"},
    )
    sid = response["Location"].rstrip("/").split("/")[-1]
    kiro.fake.script(
        Script.json({"accessToken": "aoa" + "x" * 40, "expiresIn": 3600}), route="device"
    )

    answer = poll(client, sid)

    assert answer["status"] == "error"
    assert "no refresh token" in answer["message"]
    credential.refresh_from_db()
    assert credential.refresh_token == before


def test_a_device_relogin_keeps_identity_and_replaces_the_client_set(kiro, as_role):
    team = CredentialGroup.objects.create(name="team")
    credential = CredentialFactory(
        auth_method=AuthMethod.SOCIAL,
        priority=3,
        email="kept@example.com",
        profile_arn="arn:aws:codewhisperer:us-east-1:123456789012:profile/OLDPROFILE01",
        token_endpoint="https://login.example.com/token",
        issuer_url="https://login.example.com",
        scopes="openid",
        enabled=False,
        disabled_reason=DisabledReason.TOO_MANY_FAILURES,
        failure_count=3,
        refresh_failure_count=2,
        self_heal_rounds=2,
        self_heal_total=5,
        balance={"usage_limit": 1.0},
        available_models=["old-model"],
    )
    credential.groups.set([team])
    client = as_role("operator")
    assert client.get(reverse(RELOGIN, args=[credential.pk])).status_code == 200

    response = client.post(
        reverse(RELOGIN, args=[credential.pk]),
        {"flow": "idc", "start_url": "https://d-1.awsapps.com/start", "region": "eu-west-1"},
    )
    sid = response["Location"].rstrip("/").split("/")[-1]
    kiro.fake.approve_device()
    answer = poll(client, sid)

    assert answer["status"] == "done" and answer["credentialId"] == credential.pk
    assert Credential.objects.count() == 1
    [device] = kiro.fake.state.devices.values()
    account = kiro.fake.account(device.account_id)
    credential.refresh_from_db()
    assert (credential.priority, credential.email) == (3, "kept@example.com")
    assert [g.name for g in credential.groups.all()] == ["team"]
    assert credential.auth_method == AuthMethod.IDC and credential.provider == "Enterprise"
    assert credential.refresh_token == account.refresh_token
    assert credential.client_id == device.client_id
    assert credential.client_secret == device.client_secret
    assert (credential.region, credential.auth_region) == ("eu-west-1", "eu-west-1")
    assert credential.start_url == "https://d-1.awsapps.com/start"
    assert (credential.profile_arn, credential.token_endpoint, credential.issuer_url) == (
        "",
        "",
        "",
    )
    assert credential.scopes == ""
    assert credential.enabled and credential.disabled_reason == ""
    assert (credential.failure_count, credential.refresh_failure_count) == (0, 0)
    assert (credential.self_heal_rounds, credential.self_heal_total) == (0, 5)
    assert credential.available_models is None
    assert credential.balance["usage_limit"] == 2000.0  # fetched again after the login
    assert LogEntry.objects.filter(
        object_id=str(credential.pk), action_flag=CHANGE, change_message__contains="Re-logged"
    ).exists()


def test_a_failed_balance_after_login_is_a_warning(kiro, as_role):
    client = as_role("operator")
    sid = start_device(client)
    kiro.fake.approve_device()
    kiro.fake.script(Script.json({"message": "boom"}, status=500), route="usage", times=None)

    answer = poll(client, sid)

    assert answer["status"] == "done"
    assert "balance could not be fetched" in answer["warning"]
    assert Credential.objects.get(pk=answer["credentialId"]).balance is None
    page = client.get(answer["credentialUrl"]).content.decode()
    assert "balance could not be fetched" in page


# --- Social (paste the redirect URL) ------------------------------------------------------------


def test_a_social_paste_login_adds_a_social_credential(kiro, as_role):
    client = as_role("operator")
    sid, query = start_social(client, priority="2", email="social@example.com")
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == "http://127.0.0.1:3128"
    assert query["redirect_from"] == "KiroIDE"

    response = complete(
        client,
        sid,
        f"http://127.0.0.1:3128/oauth/callback?code=c0de&state={query['state']}"
        "&login_option=github",
    )

    assert response.status_code == 302
    credential = Credential.objects.get()
    assert response["Location"] == reverse(
        "admin:credentials_credential_change", args=[credential.pk]
    )
    account = kiro.fake.account("social-login-1")
    assert credential.auth_method == AuthMethod.SOCIAL
    assert credential.refresh_token == account.refresh_token
    assert credential.access_token == account.access_token
    assert credential.profile_arn == account.profile_arn
    assert credential.expires_at > timezone.now() + timedelta(minutes=50)
    assert (credential.priority, credential.email) == (2, "social@example.com")
    assert credential.balance_checked_at is not None
    exchange = json.loads(kiro.fake.requests_for("login")[0].body)
    assert exchange["code"] == "c0de"
    assert exchange["redirect_uri"] == "http://127.0.0.1:3128/oauth/callback?login_option=github"
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(exchange["code_verifier"].encode()).digest()
    ).rstrip(b"=")
    assert challenge.decode() == query["code_challenge"]
    assert len(base64.urlsafe_b64decode(exchange["code_verifier"] + "=")) == 32
    assert LogEntry.objects.filter(object_id=str(credential.pk), action_flag=ADDITION).exists()


def test_the_social_page_never_shows_the_verifier(kiro, as_role):
    client = as_role("operator")
    sid, query = start_social(client)
    page = client.get(reverse(SESSION, args=[sid])).content.decode()
    complete(client, sid, f"http://127.0.0.1:3128/signin/callback?code=x&state={query['state']}")

    verifier = json.loads(kiro.fake.requests_for("login")[0].body)["code_verifier"]
    assert verifier not in page


def test_a_social_state_mismatch_is_rejected_and_the_session_kept(kiro, as_role):
    client = as_role("operator")
    sid, query = start_social(client)

    response = complete(client, sid, "http://127.0.0.1:3128/oauth/callback?code=c&state=forged")

    assert response.status_code == 400
    assert "state does not match" in response.content.decode()
    assert Credential.objects.count() == 0
    assert kiro.fake.requests_for("login") == []
    response = complete(
        client, sid, f"http://127.0.0.1:3128/oauth/callback?code=c&state={query['state']}"
    )
    assert response.status_code == 302
    assert Credential.objects.count() == 1


def test_an_expired_social_session_says_so(kiro, as_role, monkeypatch):
    monkeypatch.setattr(login, "SOCIAL_TTL", 1)
    client = as_role("operator")
    sid, query = start_social(client)
    time.sleep(1.2)

    response = complete(
        client, sid, f"http://127.0.0.1:3128/oauth/callback?code=c&state={query['state']}"
    )

    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert Credential.objects.count() == 0


def test_a_social_relogin_replaces_the_tokens_and_keeps_the_rest(kiro, as_role):
    team = CredentialGroup.objects.create(name="team")
    credential = CredentialFactory(
        priority=9,
        email="kept@example.com",
        enabled=False,
        disabled_reason=DisabledReason.INVALID_REFRESH_TOKEN,
        refresh_failure_count=3,
    )
    credential.groups.set([team])
    client = as_role("operator")

    sid, query = start_social(client, reverse(RELOGIN, args=[credential.pk]))
    response = complete(
        client, sid, f"http://127.0.0.1:3128/oauth/callback?code=c&state={query['state']}"
    )

    assert response.status_code == 302
    assert Credential.objects.count() == 1
    account = kiro.fake.account("social-login-1")
    credential.refresh_from_db()
    assert credential.refresh_token == account.refresh_token
    assert credential.access_token == account.access_token
    assert (credential.priority, credential.email) == (9, "kept@example.com")
    assert [g.name for g in credential.groups.all()] == ["team"]
    assert credential.enabled and credential.disabled_reason == ""
    assert credential.refresh_failure_count == 0
    assert LogEntry.objects.filter(object_id=str(credential.pk), action_flag=CHANGE).exists()
    change_page = client.get(reverse("admin:credentials_credential_change", args=[credential.pk]))
    assert reverse(RELOGIN, args=[credential.pk]) in change_page.content.decode()


def test_an_idc_credential_cannot_log_in_again_by_social_login(kiro, as_role):
    credential = CredentialFactory(idc=True)
    response = as_role("operator").post(reverse(RELOGIN, args=[credential.pk]), {"flow": "social"})

    assert response.status_code == 200
    assert "Only a Social credential" in response.content.decode()


# --- balance on add (spec §8.1) -----------------------------------------------------------------


def add_form(refresh_token: str) -> dict:
    return {
        "auth_method": "social",
        "priority": "0",
        "endpoint": "ide",
        "refresh_token": refresh_token,
        "name": "added by hand",
    }


def test_adding_a_credential_in_the_admin_fetches_its_balance(kiro, as_role):
    account = kiro.fake.add_account(auth="social", current_usage=12.0)

    response = as_role("operator").post(
        reverse("admin:credentials_credential_add"), add_form(account.refresh_token), follow=True
    )

    assert response.status_code == 200
    credential = Credential.objects.get()
    assert credential.balance["current_usage"] == 12.0
    assert credential.email == account.email  # backfilled by the balance query


def test_a_failed_balance_on_add_is_a_warning_and_the_credential_stays(kiro, as_role):
    response = as_role("operator").post(
        reverse("admin:credentials_credential_add"), add_form(long_token()), follow=True
    )

    assert response.status_code == 200
    assert Credential.objects.count() == 1
    assert Credential.objects.get().balance is None
    assert "its balance could not be fetched" in response.content.decode()


# --- permissions ---------------------------------------------------------------------------------


def test_a_viewer_gets_403_on_every_login_page(kiro, as_role):
    sid = start_device(as_role("operator"))
    social_sid, _ = start_social(as_role("operator"))
    credential = CredentialFactory()
    viewer = as_role("viewer")

    assert viewer.get(reverse(LOGIN)).status_code == 403
    assert viewer.post(reverse(LOGIN), {"flow": "idc"}).status_code == 403
    assert viewer.get(reverse(RELOGIN, args=[credential.pk])).status_code == 403
    assert (
        viewer.post(reverse(RELOGIN, args=[credential.pk]), {"flow": "social"}).status_code == 403
    )
    assert viewer.get(reverse(SESSION, args=[sid])).status_code == 403
    assert viewer.post(reverse(POLL, args=[sid])).status_code == 403
    assert (
        viewer.post(reverse(COMPLETE, args=[social_sid]), {"redirect_url": "x"}).status_code == 403
    )
    assert len(kiro.fake.requests_for("register")) == 1  # only the operator's start
    changelist = viewer.get(reverse("admin:credentials_credential_changelist")).content.decode()
    assert reverse(LOGIN) not in changelist
    operator_list = as_role("operator").get(reverse("admin:credentials_credential_changelist"))
    assert reverse(LOGIN) in operator_list.content.decode()
