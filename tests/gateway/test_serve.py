"""`manage.py serve`: several workers on one port, and SIGTERM lets a stream in flight finish
with its usage record written (Postgres: the served process shares the test's database)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from gateway.fakekiro.script import Script
from tests.gateway.conftest import ROOT, free_port, gateway_env, wait_healthy
from usage.models import UsageRecord

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Tell me slowly"}],
}


def serve(gateway, *args: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--no-jobs", *args], cwd=ROOT, env=gateway_env(gateway, LOG_LEVEL="warning")
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return url, process


def test_sigterm_lets_a_stream_in_flight_finish_and_records_it(gateway):
    _, account = gateway.add_credential()
    slow = Script.text("First words. ") + Script.pause(2.0) + Script.text("Last words.")
    gateway.fake.script(slow.with_usage(), account=account.id)
    url, process = serve(gateway, "--workers", "2", "--grace", "20")
    try:
        with httpx.stream(
            "POST", url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key}, timeout=30
        ) as response:
            chunks = response.iter_bytes()
            received = b""
            while b"First words" not in received:
                received += next(chunks)
            process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            received += b"".join(chunks)
        assert process.wait(timeout=25) == 0
    finally:
        if process.poll() is None:
            process.kill()

    assert b"Last words." in received and b"event: message_stop" in received
    assert time.monotonic() - stopped_at < 20
    record = UsageRecord.objects.get()
    assert (record.status, record.http_status) == ("success", 200)


def test_a_served_gateway_refuses_new_connections_once_stopped(gateway):
    gateway.add_credential()
    url, process = serve(gateway, "--workers", "2")

    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=25) == 0

    try:
        httpx.get(url + "/healthz", timeout=2)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the port still answers after SIGTERM")


def test_the_admins_websocket_is_served(gateway):
    """The live feed's socket reaches Channels: an anonymous one is refused by the consumer
    (403 at the handshake), not by a server that cannot speak websockets."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url, process = serve(gateway, "--workers", "1")
    try:
        ws_url = url.replace("http://", "ws://") + "/ws/usage/live/"
        try:
            with connect(ws_url, origin="http://127.0.0.1", open_timeout=10):
                raise AssertionError("an anonymous socket was accepted")
        except InvalidStatus as refused:
            assert refused.response.status_code == 403
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=25)


def test_the_health_port_is_served_beside_the_workers(gateway):
    """`serve --health-port` starts the probe's own process; both workers beat from their
    start (the lifespan protocol), before any request."""
    health_port = free_port()
    _, process = serve(gateway, "--workers", "2", "--health-port", str(health_port))
    probe = f"http://127.0.0.1:{health_port}/healthz"
    try:
        deadline = time.monotonic() + 30
        while True:  # the probe's process and the workers start each at their own pace
            try:
                answer = httpx.get(probe, timeout=5)
                if answer.json()["workers"]["workers"] == 2:
                    break
            except httpx.ConnectError:
                pass
            assert time.monotonic() < deadline, "the health port never saw both workers"
            time.sleep(0.2)
        probes = [httpx.get(probe, timeout=5) for _ in range(4)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=25)

    assert [p.status_code for p in probes] == [200] * 4
    assert all(p.json()["database"]["ok"] for p in probes)
    assert all(p.json()["workers"]["workers"] == 2 for p in probes)
    with pytest.raises(httpx.ConnectError):  # stopped with the server
        httpx.get(probe, timeout=5)
