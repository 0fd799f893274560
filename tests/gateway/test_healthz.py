"""GET /healthz for load balancers."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from django.test import AsyncClient

from gateway.api import health


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test starts without a cached probe result or a watched event loop."""
    monkeypatch.setattr(health, "_last", None)
    monkeypatch.setattr(health, "_beat", None)
    monkeypatch.setattr(health, "_watched", None)


@pytest.mark.django_db(transaction=True)
async def test_it_reports_the_database_as_up():
    response = await AsyncClient().get("/healthz")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["vendor"] in ("sqlite", "postgresql")


@pytest.mark.django_db(transaction=True)
async def test_it_answers_503_when_the_database_is_down(monkeypatch):
    from gateway.api import health as views

    def unreachable():
        raise OSError("connection refused")

    monkeypatch.setattr(views, "_ping_database", unreachable)

    response = await AsyncClient().get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] == {
        "ok": False,
        "vendor": views.connection.vendor,
        "error": "OSError",
    }


@pytest.mark.django_db(transaction=True)
async def test_probes_within_the_cache_time_reuse_the_last_database_check(monkeypatch, settings):
    settings.KIRO_HEALTH_CACHE_SECS = 60
    calls = []
    real = health._ping_database

    def counted():
        calls.append(1)
        real()

    monkeypatch.setattr(health, "_ping_database", counted)

    statuses = [(await AsyncClient().get("/healthz")).status_code for _ in range(5)]

    assert statuses == [200] * 5
    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_stale_result_is_probed_again(monkeypatch, settings):
    settings.KIRO_HEALTH_CACHE_SECS = 0
    assert (await AsyncClient().get("/healthz")).status_code == 200

    monkeypatch.setattr(health, "_ping_database", lambda: (_ for _ in ()).throw(OSError("down")))

    assert (await AsyncClient().get("/healthz")).status_code == 503


# --- the health port: /healthz from threads, off the event loop ---------------------------------


@pytest.fixture
def health_port():
    """A health listener on a free port of 127.0.0.1 in this process; its base URL."""
    from gateway.api import health_listener

    server = health_listener.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_the_health_port_answers_as_the_main_one(health_port):
    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["event_loop"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_the_health_port_reports_the_database_down(health_port, monkeypatch):
    monkeypatch.setattr(health, "_ping_database", lambda: (_ for _ in ()).throw(OSError("down")))

    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 503
    assert response.json()["database"]["error"] == "OSError"


@pytest.mark.django_db(transaction=True)
def test_the_health_port_answers_while_the_event_loop_is_blocked(health_port, settings):
    """A loop busy for a while (here: blocked outright) does not delay the probe; one that
    stops turning for longer than KIRO_HEALTH_LOOP_STALL_SECS makes it answer 503."""
    settings.KIRO_HEALTH_LOOP_STALL_SECS = 0.8
    answers: list[tuple[int, float]] = []

    async def serve_then_block() -> None:
        health.watch_event_loop()
        await asyncio.sleep(0.1)
        time.sleep(1.5)  # the loop blocked: no heartbeat, no other task

    def probe() -> None:
        time.sleep(0.4)
        for _ in range(2):
            started = time.perf_counter()
            status = httpx.get(health_port + "/healthz", timeout=5).status_code
            answers.append((status, time.perf_counter() - started))
            time.sleep(0.6)

    prober = threading.Thread(target=probe)
    prober.start()
    asyncio.run(serve_then_block())
    prober.join(timeout=10)

    assert [status for status, _ in answers] == [200, 503]
    assert all(seconds < 0.5 for _, seconds in answers)


@pytest.mark.django_db(transaction=True)
def test_the_health_port_has_only_healthz(health_port):
    response = httpx.get(health_port + "/admin/", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
