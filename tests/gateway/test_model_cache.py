"""Model lists per credential (ListAvailableModels) and model-aware routing (kiro-ops §3.10)."""

from __future__ import annotations

import time

import httpx
import pytest
from django.utils import timezone

from credentials.models import Credential
from gateway.fakekiro.script import Script
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def post(gateway, body=BODY) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/v1/messages", json=body, timeout=30, headers={"x-api-key": gateway.key}
    )


def test_a_served_credential_gets_its_model_list_in_the_background(gateway):
    credential, _ = gateway.add_credential()

    assert post(gateway).status_code == 200

    deadline = time.monotonic() + 10
    while Credential.objects.get(pk=credential.pk).available_models is None:
        assert time.monotonic() < deadline, "the model list never arrived"
        time.sleep(0.05)
    stored = Credential.objects.get(pk=credential.pk)
    assert "claude-sonnet-4.5" in stored.available_models
    assert stored.models_checked_at is not None


def test_a_credential_whose_list_lacks_the_model_is_skipped(gateway):
    a, _ = gateway.add_credential(priority=0)
    b, _ = gateway.add_credential(priority=1)
    now = timezone.now()
    Credential.objects.filter(pk=a.pk).update(
        available_models=["claude-haiku-4.5"], models_checked_at=now
    )
    Credential.objects.filter(pk=b.pk).update(
        available_models=["claude-sonnet-4.5"], models_checked_at=now
    )

    assert post(gateway).status_code == 200

    record = UsageRecord.objects.get()
    assert [a.credential_id for a in record.attempts.all()] == [b.pk]


def test_a_failed_list_refresh_is_not_retried_on_every_request(gateway):
    credential, account = gateway.add_credential()
    gateway.fake.script(Script.fault(500, "boom"), route="models", account=account.id, times=None)

    for _ in range(3):
        assert post(gateway).status_code == 200
    time.sleep(0.3)  # let the background refresh finish

    assert len(gateway.fake.requests_for("models")) == 1
    assert Credential.objects.get(pk=credential.pk).available_models is None
