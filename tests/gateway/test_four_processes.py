"""N processes as one: four gateway processes on one Postgres database and one Redis, in
front of the same fake, behave as one gateway (docs/architecture.md, "Processes").

Each test starts four real uvicorn processes besides this test's own gateway thread; on
SQLite they are skipped (two processes share one database on Postgres only)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from asgiref.sync import sync_to_async

from credentials.models import Credential, GatewaySettings
from gateway.fakekiro.script import Script
from tests.gateway.conftest import gateway_processes
from tests.gateway.test_limits import fifty_concurrent_requests_stay_within_one_request
from tests.usage.test_live import viewer_feed
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

SETTINGS_TTL = 3.0  # KIRO_SETTINGS_CACHE_SECS of the four processes
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
def four(gateway, redis_url):
    """The base URLs of four more gateway processes sharing the database and Redis."""
    yield from gateway_processes(
        gateway, 4, REDIS_URL=redis_url, KIRO_SETTINGS_CACHE_SECS=str(SETTINGS_TTL)
    )


def post(url: str, key: str) -> httpx.Response:
    return httpx.post(url + "/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=30)


async def test_twenty_concurrent_requests_refresh_once_and_all_reach_one_live_feed(
    gateway, four, on_redis
):
    credential, account = await sync_to_async(gateway.add_credential)()  # no token yet
    socket = await viewer_feed()
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        four[i % 4] + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key}
                    )
                    for i in range(20)
                )
            )
        fed = [await socket.receive_json_from(timeout=15) for _ in range(20)]
    finally:
        await socket.disconnect()

    assert [a.status_code for a in answers] == [200] * 20
    assert gateway.fake.refresh_count(account=account.id) == 1
    fresh = await sync_to_async(Credential.objects.get)(pk=credential.pk)
    assert fresh.refresh_count == 1
    ids = await sync_to_async(lambda: set(UsageRecord.objects.values_list("id", flat=True)))()
    assert {m["record"]["id"] for m in fed} == ids
    assert len(ids) == 20


def test_client_key_budgets_overshoot_by_at_most_one_request(gateway, four):
    fifty_concurrent_requests_stay_within_one_request(gateway, four)


def test_a_cooldown_and_the_sticky_current_credential_hold_in_every_process(gateway, four):
    a, account_a = gateway.add_credential(priority=0)
    b, account_b = gateway.add_credential(priority=1)
    one, two, three, four_ = four
    for url in (two, three, four_):  # each process has read the settings: current is A
        assert post(url, gateway.key).status_code == 200
    assert GatewaySettings.load().current_credential_id == a.pk
    served = dict(gateway.fake.counters["chat_by_account"])
    assert served == {account_a.id: 3}

    # Through process one, A is throttled: it cools down, B serves and becomes current.
    gateway.fake.script(Script.throttled(), account=account_a.id)
    assert post(one, gateway.key).status_code == 200
    assert Credential.objects.get(pk=a.pk).cooldown_until is not None
    assert GatewaySettings.load().current_credential_id == b.pk

    # Processes two and three still hold the settings row that says A, yet skip it.
    for url in (two, three, two, three):
        assert post(url, gateway.key).status_code == 200
    counts = gateway.fake.counters["chat_by_account"]
    assert (counts[account_a.id], counts[account_b.id]) == (4, 5)

    # The operator clears A's cooldown. A has the better priority, but B is the current
    # credential: once its copy of the settings is renewed, process four stays on B too.
    Credential.objects.filter(pk=a.pk).update(cooldown_until=None)
    time.sleep(SETTINGS_TTL + 0.5)
    for url in (four_, four_, two, three):
        assert post(url, gateway.key).status_code == 200
    counts = gateway.fake.counters["chat_by_account"]
    assert (counts[account_a.id], counts[account_b.id]) == (4, 9)
