"""GET /healthz for load balancers."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from gateway.api import health


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test starts without a cached probe result."""
    monkeypatch.setattr(health, "_last", None)


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
