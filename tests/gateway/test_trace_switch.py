"""The trace_enabled setting: off, a request leaves its usage record but no attempt rows."""

from __future__ import annotations

import httpx
import pytest

from credentials.models import GatewaySettings
from gateway.fakekiro.script import Script
from usage.models import UpstreamAttempt, UsageRecord

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.mark.parametrize(("trace", "rows"), [(True, 2), (False, 0)])
def test_attempt_rows_follow_the_trace_switch(gateway, trace, rows):
    GatewaySettings.objects.update_or_create(
        pk=GatewaySettings.singleton_id, defaults={"trace_enabled": trace}
    )
    _, failing = gateway.add_credential(priority=0)
    gateway.add_credential(priority=1)
    gateway.fake.script(Script.quota_exhausted(), account=failing.id)

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key}, timeout=30
    )

    assert response.status_code == 200
    record = UsageRecord.objects.get()
    assert (record.status, record.attempt_count) == ("success", 2)
    assert UpstreamAttempt.objects.count() == rows
