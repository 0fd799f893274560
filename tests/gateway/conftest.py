"""A live gateway on a free 127.0.0.1 port in front of the fake upstream."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from credentials import services
from credentials.models import AuthMethod, Credential
from gateway.fakekiro.server import FakeKiroThread


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ServerThread(threading.Thread):
    """uvicorn serving the project's ASGI app in a thread with its own event loop."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        from kiro_site.asgi import application

        self.server = uvicorn.Server(
            uvicorn.Config(
                application,
                host="127.0.0.1",
                port=port,
                lifespan="off",
                log_level="warning",
                loop="asyncio",
                http="h11",
            )
        )

    def run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> _ServerThread:
        self.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.join(timeout=15)


@dataclass
class Gateway:
    base_url: str
    fake: FakeKiroThread
    key: str

    def add_credential(
        self, *, auth: str = "social", priority: int = 0, **fake_values
    ) -> tuple[Credential, object]:
        """Register an account on the fake and the matching credential in the database."""
        account = self.fake.add_account(auth=auth, **fake_values)
        credential = Credential(auth_method=auth, priority=priority, email=account.email)
        if auth == AuthMethod.API_KEY:
            credential.set_kiro_api_key(account.api_key)
        else:
            credential.set_refresh_token(account.refresh_token)
            credential.client_id = account.client_id or ""
            credential.client_secret = account.client_secret or ""
        credential.save()
        return credential, account


@pytest.fixture
def gateway(transactional_db, fake_kiro, settings) -> Iterator[Gateway]:
    """Serve the gateway in front of the (reset) fake upstream, with one client key."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    _, plaintext = services.client_key_create(name="test client")
    port = free_port()
    with _ServerThread(port):
        yield Gateway(base_url=f"http://127.0.0.1:{port}", fake=fake_kiro, key=plaintext)
