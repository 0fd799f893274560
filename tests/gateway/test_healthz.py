"""GET /healthz for load balancers."""

from __future__ import annotations

import pytest
from django.test import AsyncClient


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
