"""Shared fixtures: named personas and logged-in admin clients.

Imports of Django code stay inside the fixtures so that the protocol tests also run with
`-p no:django` (gateway/protocol must not need Django).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["gateway.fakekiro.pytest_plugin", "tests.browser"]


@pytest.fixture
def superuser(db):
    from tests import factories

    return factories.make_superuser()


@pytest.fixture
def operator(db):
    from tests import factories

    return factories.make_operator()


@pytest.fixture
def viewer(db):
    from tests import factories

    return factories.make_viewer()


@pytest.fixture
def outsider(db):
    from tests import factories

    return factories.make_outsider()


@pytest.fixture
def admin_client_as():
    """Return a function giving a logged-in test client for a persona."""
    from django.test import Client

    def client_for(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return client_for


@pytest.fixture(scope="session")
def live_server():
    """pytest-django's live server, bound to 127.0.0.1 only (its default is `localhost`)."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _forget_cached_settings():
    """Start every test without the process's copy of the settings row (credentials.selectors)
    or of failed model-list refreshes: one test must not leave them to the next."""
    import sys

    def forget() -> None:
        selectors = sys.modules.get("credentials.selectors")
        if selectors is not None:
            selectors.forget_gateway_config()
        model_cache = sys.modules.get("credentials.model_cache")
        if model_cache is not None:  # credential ids repeat across tests
            model_cache.forget_failures()

    forget()
    yield
    forget()


# The tests' own Redis database (`make test` sets TEST_REDIS_URL to database 13 on
# 127.0.0.1:6379); every test that uses it starts and ends with it flushed.
TEST_REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def redis_url():
    """The URL of the tests' own Redis database, flushed before and after the test.

    Redis runs on every machine and in CI: a test that needs it fails when it is down."""
    import os

    import redis

    url = os.environ.get("TEST_REDIS_URL") or TEST_REDIS_URL
    server = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        server.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); the Redis tests need it")
    server.flushdb()
    yield url
    server.flushdb()
    server.close()


@pytest.fixture
def on_redis(redis_url, settings):
    """This process on the tests' Redis, as REDIS_URL sets it up: the caches (login sessions,
    prompt-cache metering) and the channel layer (live feed). Yields the URL."""
    from channels.layers import channel_layers

    from kiro_site.settings import redis_backends

    settings.CACHES, settings.CHANNEL_LAYERS = redis_backends(redis_url)
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()
