"""What every process shares through Redis when REDIS_URL is set: the cache (the admin's login
sessions), the channel layer (the live usage feed). The prompt-cache metering over Redis is
tested in tests/usage/test_prompt_cache.py and tests/gateway/test_cache_metering.py.

All of it runs against the real Redis on 127.0.0.1:6379, in the tests' own database
(`redis_url`, flushed before and after each test); other processes are real Python processes
given the same REDIS_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings

from credentials import login
from tests.gateway.conftest import gateway_process
from tests.usage.test_live import viewer_feed

ROOT = Path(__file__).resolve().parents[2]


def run_elsewhere(redis_url: str, code: str) -> str:
    """Run `code` in another Python process configured with REDIS_URL (and this process's secret
    key and data directory); return what it printed."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kiro_site.settings",
        "REDIS_URL": redis_url,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "DATA_DIR": str(django_settings.DATA_DIR),
    }
    script = "import django\ndjango.setup()\n" + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


# --- the cache: login sessions ------------------------------------------------------------------


def test_a_login_session_lives_in_redis_encrypted_with_its_lifetime(on_redis, superuser):
    started = login.social_start(user_id=superuser.pk, email="dev@example.com")

    server = redis.Redis.from_url(on_redis)
    (key,) = [k for k in server.keys("*") if started.sid.encode() in k]
    stored = server.get(key)
    assert 0 < server.ttl(key) <= login.SOCIAL_TTL
    assert b"dev@example.com" not in stored and b"verifier" not in stored
    server.close()


def test_a_login_session_started_in_one_process_is_found_by_another(on_redis, superuser):
    here = login.social_start(user_id=superuser.pk)

    there = json.loads(
        run_elsewhere(
            on_redis,
            f"""
            import json
            from credentials import login
            found = login.page(sid="{here.sid}", user_id={superuser.pk})
            other = login.social_start(user_id={superuser.pk})
            print(json.dumps({{"found": found.signin_url, "sid": other.sid,
                               "url": other.signin_url}}))
            """,
        )
    )

    assert there["found"] == here.signin_url
    assert login.page(sid=there["sid"], user_id=superuser.pk).signin_url == there["url"]
    assert login.page(sid=there["sid"], user_id=superuser.pk + 1) is None


def test_without_redis_a_login_session_stays_in_its_process(superuser):
    here = login.social_start(user_id=superuser.pk)

    assert django_settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")
    assert login.page(sid=here.sid, user_id=superuser.pk) is not None


# --- the channel layer: the live feed -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_live_feed_shows_a_record_published_by_another_process(on_redis):
    socket = await viewer_feed()
    try:
        await sync_to_async(run_elsewhere)(
            on_redis,
            """
            from datetime import UTC, datetime
            from usage import live
            from usage.models import UsageRecord
            record = UsageRecord(pk=424242, created_at=datetime(2026, 12, 4, tzinfo=UTC),
                                 endpoint="messages", model_requested="claude-opus-4-7",
                                 status="success", http_status=200)
            live.publish_record(record)
            """,
        )
        message = await socket.receive_json_from(timeout=10)
    finally:
        await socket.disconnect()

    assert message["record"]["id"] == 424242
    assert message["record"]["model"] == "claude-opus-4-7"
    assert message["record"]["time"] == datetime(2026, 12, 4, tzinfo=UTC).isoformat()


@pytest.mark.django_db(transaction=True)
async def test_the_live_feed_shows_requests_served_by_another_gateway_process(gateway, on_redis):
    """On Postgres: a real second gateway process serves the request; this process's feed
    shows its record."""
    await sync_to_async(gateway.add_credential)()
    other = gateway_process(gateway, REDIS_URL=on_redis)
    base_url = await sync_to_async(next)(other)
    socket = await viewer_feed()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                base_url + "/v1/messages",
                headers={"x-api-key": gateway.key},
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 32,
                    "messages": [{"role": "user", "content": "from the other process"}],
                },
            )
        message = await socket.receive_json_from(timeout=15)
    finally:
        await socket.disconnect()
        await sync_to_async(next)(other, None)

    assert answer.status_code == 200
    assert message["record"]["endpoint"] == "/v1/messages"
    assert message["record"]["key_name"] == "test client"
    assert message["record"]["status"] == "success"
