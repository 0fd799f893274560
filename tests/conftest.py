"""Shared fixtures: named personas and logged-in admin clients."""

from __future__ import annotations

import pytest
from django.test import Client

from tests import factories


@pytest.fixture
def superuser(db):
    return factories.make_superuser()


@pytest.fixture
def operator(db):
    return factories.make_operator()


@pytest.fixture
def viewer(db):
    return factories.make_viewer()


@pytest.fixture
def outsider(db):
    return factories.make_outsider()


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_as():
    """Return a function giving a logged-in test client for a persona."""
    return _client_for
