"""The prompt-cache store: in-process without REDIS_URL, Redis with it, shared by processes.

The Redis tests use the real server on 127.0.0.1:6379, in the tests' own database
(`redis_url`, flushed before and after each test)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.core.cache import caches
from django.test import override_settings

from usage import prompt_cache

LONG = "Project conventions: " + "keep it short. " * 300
ROOT = Path(__file__).resolve().parents[2]


def cached(question: str = "Hi", *, key_id: int = 7) -> tuple[dict, int]:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": question}],
    }
    return body, key_id


def meter(body: dict, key_id: int):
    return prompt_cache.meter(body, key_id=key_id, system_key=False)


def redis_caches(url: str) -> dict:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        prompt_cache.ALIAS: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "kiro-test",
        },
    }


@pytest.fixture
def local_store():
    caches[prompt_cache.ALIAS].clear()
    yield
    caches[prompt_cache.ALIAS].clear()


@pytest.fixture
def redis_store(redis_url):
    import redis

    server = redis.Redis.from_url(redis_url)
    with override_settings(CACHES=redis_caches(redis_url)):
        yield server
    server.close()


def test_the_first_request_creates_and_the_second_reads(local_store):
    first = meter(*cached("first"))
    second = meter(*cached("second"))

    assert first.read == 0.0 and first.covered > 0.9
    assert second.read == 1.0


def test_another_key_does_not_read_what_one_key_wrote(local_store):
    meter(*cached(key_id=1))

    assert meter(*cached(key_id=2)).read == 0.0


def test_the_system_key_without_a_session_is_not_metered(local_store):
    body, _ = cached()

    assert prompt_cache.meter(body, key_id=0, system_key=True).covered == 0.0
    assert prompt_cache.meter(body, key_id=0, system_key=True).covered == 0.0


def test_the_redis_store_keeps_entries_with_their_ttl(redis_store):
    meter(*cached("first"))

    keys = redis_store.keys("kiro-test:*")
    assert len(keys) == 1
    assert 0 < redis_store.ttl(keys[0]) <= 300
    assert meter(*cached("second")).read == 1.0


def test_a_hit_refreshes_the_ttl(redis_store):
    meter(*cached("first"))
    (key,) = redis_store.keys("kiro-test:*")
    redis_store.expire(key, 5)

    meter(*cached("second"))

    assert redis_store.ttl(key) > 5


def test_two_processes_share_the_redis_store(redis_store, redis_url):
    """A second Python process writes the prefix; this one reads it."""
    script = textwrap.dedent(
        f"""
        import django, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "kiro_site.settings"
        os.environ["REDIS_URL"] = "{redis_url}"
        django.setup()
        from django.conf import settings
        settings.CACHES["prompt_cache"]["KEY_PREFIX"] = "kiro-test"
        from tests.usage.test_prompt_cache import cached, meter
        print(meter(*cached("from the other process")).read)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "0.0"

    assert meter(*cached("here")).read == 1.0


def test_a_store_outage_leaves_the_upstreams_figures(settings):
    broken = redis_caches("redis://127.0.0.1:1/0")  # nothing listens
    with override_settings(CACHES=broken):
        assert meter(*cached()) is None
