"""Fixtures of the usage tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def back_to_the_latest_schema():
    """For migration tests: leave the database migrated to the end, as the other tests
    expect it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
