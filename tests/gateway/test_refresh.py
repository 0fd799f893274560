"""Token refresh (spec kiro-protocol §8): once across coroutines and processes, rotation,
invalid_grant, each auth kind."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from credentials.models import Credential, sha256_hex
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


async def _fire(urls: list[str], key: str, count: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    urls[i % len(urls)] + "/v1/messages", json=BODY, headers={"x-api-key": key}
                )
                for i in range(count)
            )
        )
    return [r.status_code for r in responses]


def test_twenty_concurrent_requests_on_an_expired_token_refresh_once(gateway):
    credential, account = gateway.add_credential()  # no access token yet: must refresh

    statuses = asyncio.run(_fire([gateway.base_url], gateway.key, 20))

    assert statuses == [200] * 20
    assert gateway.fake.refresh_count(account=account.id) == 1
    assert Credential.objects.get(pk=credential.pk).refresh_count == 1


def test_two_processes_refresh_an_expired_token_exactly_once(gateway, second_process):
    credential, account = gateway.add_credential()

    statuses = asyncio.run(_fire([gateway.base_url, second_process], gateway.key, 20))

    assert statuses == [200] * 20
    assert gateway.fake.refresh_count(account=account.id) == 1
    assert Credential.objects.get(pk=credential.pk).refresh_count == 1
    assert UsageRecord.objects.filter(status="success").count() == 20


def test_a_rotated_refresh_token_is_stored(gateway):
    credential, account = gateway.add_credential(rotate_refresh_token=True)

    assert (
        httpx.post(
            gateway.base_url + "/v1/messages",
            json=BODY,
            timeout=30,
            headers={"x-api-key": gateway.key},
        ).status_code
        == 200
    )

    stored = Credential.objects.get(pk=credential.pk)
    assert stored.refresh_token != account.refresh_token
    assert stored.refresh_token_hash == sha256_hex(stored.refresh_token)
    assert stored.token_version == 1


def test_invalid_grant_disables_the_credential_and_fails_over(gateway):
    broken, _ = gateway.add_credential(priority=0)
    healthy, _ = gateway.add_credential(priority=1)
    broken.set_refresh_token("aor" + "Z" * 150)  # unknown to the fake: invalid_grant
    broken.save()
    # Known lists: no list is fetched first (issue 9), so the refresh fails in the attempt.
    Credential.objects.update(available_models=["claude-sonnet-4.5"])

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, timeout=30, headers={"x-api-key": gateway.key}
    )

    assert response.status_code == 200
    stored = Credential.objects.get(pk=broken.pk)
    assert (stored.enabled, stored.disabled_reason) == (False, "InvalidRefreshToken")
    assert stored.last_refresh_failure_at is not None  # listed on the admin home
    record = UsageRecord.objects.get()
    assert [(a.credential_id, a.outcome) for a in record.attempts.all()] == [
        (broken.pk, "auth_failed"),
        (healthy.pk, "success"),
    ]


def test_an_idc_credential_refreshes_through_create_token(gateway):
    _, account = gateway.add_credential(auth="idc")

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, timeout=30, headers={"x-api-key": gateway.key}
    )

    assert response.status_code == 200
    assert gateway.fake.refresh_count(account=account.id) == 1
    sent = gateway.fake.requests_for("token")[-1]
    assert sent.header("x-amz-user-agent") == "aws-sdk-js/3.980.0 KiroIDE"


def test_an_api_key_credential_is_never_refreshed(gateway):
    _, account = gateway.add_credential(auth="api_key")

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, timeout=30, headers={"x-api-key": gateway.key}
    )

    assert response.status_code == 200
    chat = gateway.fake.requests_for("chat")[-1]
    assert chat.header("tokentype") == "API_KEY"
    assert chat.header("authorization") == f"Bearer {account.api_key}"
    assert gateway.fake.requests_for("refresh") == []


def test_an_external_idp_endpoint_off_the_allow_list_is_refused_without_a_call(gateway):
    credential, _ = gateway.add_credential()
    Credential.objects.filter(pk=credential.pk).update(
        auth_method="external_idp",
        client_id="c",
        token_endpoint=gateway.fake.base_url + "/t",
        # A known list: no list fetch first (issue 9), only the attempt refreshes.
        available_models=["claude-sonnet-4.5"],
    )

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, timeout=30, headers={"x-api-key": gateway.key}
    )

    assert response.status_code == 502
    assert gateway.fake.requests_for("refresh_external") == []
    assert Credential.objects.get(pk=credential.pk).refresh_failure_count == 1


def test_invalid_grant_after_a_rotation_elsewhere_adopts_the_new_token(gateway, monkeypatch):
    from django.utils import timezone

    from credentials import services
    from credentials.asyncdb import db
    from gateway.kiro import auth as kiro_auth

    credential, _ = gateway.add_credential(rotate_refresh_token=True)
    real = kiro_auth.refresh_request
    rotated = []

    async def another_process_rotates_first(access, config):
        if not rotated:
            # Another process refreshes (rotating the token) and stores the result first.
            async with httpx.AsyncClient() as client:
                answer = (
                    await client.post(
                        gateway.fake.base_url + "/refreshToken",
                        json={"refreshToken": access.refresh_token},
                    )
                ).json()
            rotated.append(answer["refreshToken"])
            await db(
                services.credential_refresh_commit,
                credential_id=access.id,
                owner="other-process",
                access_token=answer["accessToken"],
                expires_at=timezone.now() + timedelta(hours=1),
                refresh_token=answer["refreshToken"],
                profile_arn=None,
            )
        return await real(access, config)

    monkeypatch.setattr(kiro_auth, "refresh_request", another_process_rotates_first)

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, timeout=30, headers={"x-api-key": gateway.key}
    )

    assert response.status_code == 200
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.enabled and stored.refresh_token == rotated[0]
