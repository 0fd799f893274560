"""pytest fixtures for the fake Kiro upstream.

Register with `pytest_plugins = ["gateway.fakekiro.pytest_plugin"]`.

* `fake_kiro_server` (session): one `FakeKiroThread` on a free 127.0.0.1 port.
* `fake_kiro` (function): that server, reset to a blank state (no accounts, scripts, log,
  counters; default delivery settings) before each test.
* `fresh_fake_kiro` (function): a brand-new server of its own, for tests that stop it or need
  an isolated port.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.fakekiro.server import FakeKiroThread


@pytest.fixture(scope="session")
def fake_kiro_server() -> Iterator[FakeKiroThread]:
    """Start one fake upstream for the session."""
    with FakeKiroThread() as fake:
        yield fake


@pytest.fixture
def fake_kiro(fake_kiro_server: FakeKiroThread) -> Iterator[FakeKiroThread]:
    """Yield the session fake, reset to a blank state."""
    fake_kiro_server.reset()
    yield fake_kiro_server
    fake_kiro_server.reset()


@pytest.fixture
def fresh_fake_kiro() -> Iterator[FakeKiroThread]:
    """Yield a fake upstream of its own, stopped afterwards."""
    with FakeKiroThread() as fake:
        yield fake
