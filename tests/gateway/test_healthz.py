"""GET /healthz for load balancers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest
from django.test import AsyncClient

from gateway.api import health


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test starts without a cached probe result or a watched event loop."""
    monkeypatch.setattr(health, "_last", None)
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


# --- the health port: /healthz from a process of its own, with the workers' heartbeats ------


STALL = 0.8  # KIRO_HEALTH_LOOP_STALL_SECS in these tests


@pytest.fixture
def beats(tmp_path):
    """The heartbeat folder the workers touch their files in."""
    return tmp_path


@pytest.fixture
def health_port(beats):
    """A health listener on a free port of 127.0.0.1 (here in the test's process, as
    `manage.py health_port` runs it in its own); its base URL."""
    from gateway.api import health_listener

    server = health_listener.start("127.0.0.1", 0, beats, STALL)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def beat(beats, pid: int, age: float = 0.0) -> None:
    path = beats / str(pid)
    path.touch()
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


@pytest.mark.django_db(transaction=True)
def test_the_health_port_answers_as_the_main_one_with_the_workers(health_port, beats):
    beat(beats, os.getpid())

    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["workers"]["ok"] is True and body["workers"]["workers"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_health_port_is_503_until_a_worker_beats(health_port):
    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 503
    assert response.json()["workers"] == {
        "ok": False,
        "workers": 0,
        "stalled": 0,
        "oldest_beat_ms": None,
    }


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_loop_stopped_turning_makes_it_503(health_port, beats):
    beat(beats, os.getpid(), age=STALL + 1)

    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 503
    assert response.json()["workers"]["stalled"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_file_of_a_worker_that_exited_is_dropped(health_port, beats):
    beat(beats, os.getpid())
    gone = dead_pid()
    beat(beats, gone, age=STALL + 5)

    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json()["workers"]["workers"] == 1
    assert not (beats / str(gone)).exists()


@pytest.mark.django_db(transaction=True)
def test_the_health_port_reports_the_database_down(health_port, beats, monkeypatch):
    beat(beats, os.getpid())
    monkeypatch.setattr(health, "_ping_database", lambda: (_ for _ in ()).throw(OSError("down")))

    response = httpx.get(health_port + "/healthz", timeout=5)

    assert response.status_code == 503
    assert response.json()["database"]["error"] == "OSError"


@pytest.mark.django_db(transaction=True)
def test_the_health_port_has_only_healthz(health_port):
    response = httpx.get(health_port + "/admin/", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_a_worker_loop_touches_its_heartbeat_file_while_it_turns(beats, settings):
    settings.KIRO_HEALTH_BEAT_DIR = str(beats)
    path = beats / str(os.getpid())
    stamps = []

    async def turn() -> None:
        health.watch_event_loop()
        for _ in range(3):
            stamps.append(path.stat().st_mtime_ns)
            await asyncio.sleep(health.BEAT_SECS + 0.1)

    asyncio.run(turn())

    assert stamps[0] < stamps[1] < stamps[2]


def test_without_a_beat_folder_nothing_is_written(beats, settings):
    settings.KIRO_HEALTH_BEAT_DIR = ""

    async def turn() -> None:
        health.watch_event_loop()

    asyncio.run(turn())

    assert list(beats.iterdir()) == []
