"""Shared fixtures: named personas and logged-in admin clients.

Imports of Django code stay inside the fixtures so that the protocol tests also run with
`-p no:django` (gateway/protocol must not need Django).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["gateway.fakekiro.pytest_plugin"]


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


@pytest.fixture(autouse=True)
def _forget_cached_settings():
    """Start every test without the process's copy of the settings row (credentials.selectors):
    a test's rolled-back transaction must not leave its settings to the next test."""
    import sys

    def forget() -> None:
        selectors = sys.modules.get("credentials.selectors")
        if selectors is not None:
            selectors.forget_gateway_config()

    forget()
    yield
    forget()
