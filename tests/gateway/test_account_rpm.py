"""The per-account RPM limit (kiro-ops §3.8): a credential at its limit is skipped, neither
failed nor disabled; 429 with Retry-After when every usable one is; shared by processes."""

from __future__ import annotations

import httpx

from credentials.models import Credential, CredentialRequestStamp, GatewaySettings
from usage.models import UsageRecord

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hi"}],
}


def limit_to(rpm: int | None) -> None:
    GatewaySettings.objects.update_or_create(
        pk=GatewaySettings.singleton_id,
        defaults={"account_rpm_limit_enabled": rpm is not None, "account_rpm_limit": rpm or 60},
    )


def send(base_url: str, key: str) -> httpx.Response:
    return httpx.post(base_url + "/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=30)


def served_by() -> list[int | None]:
    return list(UsageRecord.objects.order_by("id").values_list("credential_id", flat=True))


def test_a_credential_at_its_limit_is_skipped_then_429_when_all_are(gateway):
    first, _ = gateway.add_credential(priority=0)
    second, _ = gateway.add_credential(priority=1)
    limit_to(1)

    responses = [send(gateway.base_url, gateway.key) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert served_by()[:2] == [first.pk, second.pk]
    refused = responses[2]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert UsageRecord.objects.order_by("-id").first().error_type == "account_rpm_limit"
    for credential in Credential.objects.all():
        assert credential.enabled and credential.failure_count == 0


def test_without_the_limit_nothing_is_counted(gateway):
    gateway.add_credential()
    limit_to(None)

    assert [send(gateway.base_url, gateway.key).status_code for _ in range(3)] == [200] * 3
    assert CredentialRequestStamp.objects.count() == 0


def test_the_count_is_shared_by_two_processes(gateway, second_process):
    gateway.add_credential()
    limit_to(2)

    here = send(gateway.base_url, gateway.key)
    there = send(second_process, gateway.key)
    again = send(gateway.base_url, gateway.key)

    assert (here.status_code, there.status_code, again.status_code) == (200, 200, 429)
    assert CredentialRequestStamp.objects.count() == 2
