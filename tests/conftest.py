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
