"""A live gateway on a free 127.0.0.1 port in front of the fake upstream."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from django.conf import settings as django_settings
from django.db import connection

from credentials import services
from credentials.models import AuthMethod, Credential
from gateway.fakekiro.server import FakeKiroThread
from usage.models import UsageRecord


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


def records(count: int = 1) -> list[UsageRecord]:
    """Return the usage records, waiting briefly for those of streams to land."""
    deadline = time.monotonic() + 10
    while UsageRecord.objects.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(UsageRecord.objects.order_by("pk"))


def one_record() -> UsageRecord:
    """Return the request's one usage record."""
    (record,) = records()
    return record


@contextmanager
def streaming(
    gateway: Gateway, path: str, body: dict, headers: dict[str, str]
) -> Iterator[httpx.Response]:
    """POST `body` to the gateway and hold the streamed response open; the client leaves
    (closes the connection) when the block ends."""
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", gateway.base_url + path, json=body, headers=headers) as response,
    ):
        yield response


@pytest.fixture
def gateway(transactional_db, fake_kiro, settings) -> Iterator[Gateway]:
    """Serve the gateway in front of the (reset) fake upstream, with one client key."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    _, plaintext = services.client_key_create(name="test client")
    port = free_port()
    with _ServerThread(port):
        yield Gateway(base_url=f"http://127.0.0.1:{port}", fake=fake_kiro, key=plaintext)


ROOT = Path(__file__).resolve().parents[2]


def gateway_env(gateway: Gateway, **env_overrides: str) -> dict[str, str]:
    """The environment of another gateway process on this test's Postgres database, in front
    of the same fake (skips the test on SQLite). Without REDIS_URL in `env_overrides` it runs
    without Redis."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "two processes share one database on Postgres (SQLite tests use a file of "
            "their own per test run)"
        )
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "SECRET_KEY": django_settings.SECRET_KEY,
        "DATA_DIR": str(django_settings.DATA_DIR),
        "KIRO_API_BASE_URL": gateway.fake.base_url,
        "KIRO_SOCIAL_AUTH_BASE_URL": gateway.fake.base_url,
        "KIRO_IDC_AUTH_BASE_URL": gateway.fake.base_url,
        "DJANGO_SETTINGS_MODULE": "kiro_site.settings",
    }
    env.pop("REDIS_URL", None)
    env.update(env_overrides)
    return env


def wait_healthy(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until the process at `url` answers /healthz (kill it and fail if it never does)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the gateway process did not start")
        time.sleep(0.2)


def gateway_process(gateway: Gateway, **env_overrides: str) -> Iterator[str]:
    """Start another gateway process (uvicorn) on the same database, in front of the same
    fake; yield its base URL."""
    env = gateway_env(gateway, **env_overrides)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "kiro_site.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen([*command, "--lifespan", "off"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    yield url
    process.terminate()
    process.wait(timeout=15)


def gateway_processes(gateway: Gateway, count: int, **env_overrides: str) -> Iterator[list[str]]:
    """Start `count` more gateway processes together (each uvicorn, on this test's Postgres
    database, in front of the same fake); yield their base URLs, stop them all afterwards."""
    env = gateway_env(gateway, **env_overrides)
    started: list[tuple[subprocess.Popen, str]] = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "kiro_site.asgi:application"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            process = subprocess.Popen([*command, "--lifespan", "off"], cwd=ROOT, env=env)
            started.append((process, f"http://127.0.0.1:{port}"))
        for process, url in started:
            wait_healthy(url, process, seconds=60)
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture
def second_process(gateway: Gateway) -> Iterator[str]:
    """Another gateway process on the same Postgres database (no Redis)."""
    yield from gateway_process(gateway)
