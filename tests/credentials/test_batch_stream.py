"""Streamed batch import: one SSE event per item, a summary, and stopping mid-way
(spec kiro-ops §6.3, §10 #118–#120)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.test import AsyncClient
from django.urls import reverse

from credentials.admin import batch as credentials_admin
from credentials.admin.batch import batch_import_events
from credentials.batch_import import parse_batch
from credentials.models import Credential
from gateway.fakekiro.script import Script
from tests import factories
from tests.credentials.test_lifecycle import ensure_roles
from tests.factories import CredentialFactory, long_token
from tests.gateway.conftest import Gateway

STREAM = "admin:credentials_credential_batch_import_stream"


@pytest.fixture
def kiro(transactional_db, fake_kiro, settings) -> Gateway:
    """The fake upstream with the base URLs pointed at it, and the staff roles."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    ensure_roles()
    return Gateway(base_url="", fake=fake_kiro, key="")


@pytest.fixture
async def async_db(kiro):
    """Close the connection the async ORM calls opened in asgiref's thread (Postgres teardown)."""
    yield kiro
    await sync_to_async(connections.close_all)()


async def client_as(make) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(await sync_to_async(make)())
    return client


async def events_of(response) -> list[dict]:
    """Read a whole event stream; every event is one `data: <json>` block."""
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    return [json.loads(b.removeprefix("data: ")) for b in blocks]


async def test_the_stream_reports_each_item_then_a_summary(async_db):
    existing = await sync_to_async(CredentialFactory)()
    fresh = long_token()
    text = json.dumps(
        [
            {"refreshToken": fresh, "email": "new@example.com"},
            {"refreshToken": existing.refresh_token, "email": "dup@example.com"},
            {"refreshToken": "aorTRUNCATED..."},
        ]
    )
    client = await client_as(factories.make_operator)

    response = await client.post(reverse(STREAM), {"text": text})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert "no-cache" in response["Cache-Control"]
    assert response["X-Accel-Buffering"] == "no"
    events = await events_of(response)
    created = await Credential.objects.aget(email="new@example.com")
    assert events[0] == {
        "index": 1,
        "status": "imported",
        "credentialId": created.pk,
        "email": "new@example.com",
    }
    assert events[1]["status"] == "duplicate" and "existing credential" in events[1]["error"]
    assert events[2]["status"] == "failed" and "truncated" in events[2]["error"]
    assert events[3] == {
        "status": "summary",
        "summary": {
            "total": 3,
            "imported": 1,
            "verified": 0,
            "duplicate": 1,
            "failed": 1,
            "rolledBack": 0,
        },
    }
    assert await LogEntry.objects.filter(action_flag=ADDITION).acount() == 1
    assert fresh not in json.dumps(events)


async def test_verify_reports_usage_and_rolls_back_failures(async_db):
    account = async_db.fake.add_account(auth="social", current_usage=123.4, usage_limit=500.0)
    text = json.dumps(
        [
            {"refreshToken": account.refresh_token, "email": "good@example.com"},
            {"refreshToken": long_token(), "email": "unknown@example.com"},
        ]
    )
    client = await client_as(factories.make_operator)

    events = await events_of(await client.post(reverse(STREAM), {"text": text, "verify": "1"}))

    assert events[0]["status"] == "verified" and events[0]["usage"] == "123/500"
    assert events[0]["subscription"] == "KIRO PRO+"
    assert events[1]["status"] == "failed" and events[1]["rolledBack"] is True
    assert "credentialId" not in events[1]
    assert events[2]["summary"]["verified"] == 1
    assert events[2]["summary"]["rolledBack"] == 1
    emails = [c.email async for c in Credential.objects.all()]
    assert emails == ["good@example.com"]
    assert await LogEntry.objects.filter(action_flag=DELETION).acount() == 1


async def test_closing_the_stream_mid_way_stops_the_remaining_items(async_db):
    user = await sync_to_async(factories.make_operator)()
    items = parse_batch(
        [("x.json", json.dumps([{"refreshToken": long_token()} for _ in range(5)]))]
    )
    events = batch_import_events(items=items, include_errored=False, verify=False, user_id=user.pk)

    first = json.loads((await anext(events)).removeprefix("data: "))
    second = json.loads((await anext(events)).removeprefix("data: "))
    await events.aclose()  # what a disconnect ("Stop") does to the generator

    assert [first["status"], second["status"]] == ["imported", "imported"]
    assert await Credential.objects.acount() == 2  # finished items are kept
    assert await LogEntry.objects.filter(action_flag=ADDITION).acount() == 2
    with pytest.raises(StopAsyncIteration):
        await anext(events)


async def test_a_disconnect_under_asgi_stops_the_import_after_the_current_item(async_db):
    """The real serving path: Django's ASGI handler, the client goes away after one event."""
    slow_failure = dataclasses.replace(
        Script.json({"error": "invalid_grant"}, status=400), first_byte_delay=0.3
    )
    async_db.fake.script(slow_failure, route="refresh", times=None)  # each verify takes 0.3 s
    client = await client_as(factories.make_operator)
    tokens = [long_token() for _ in range(6)]
    body = urlencode({"text": json.dumps([{"refreshToken": t} for t in tokens]), "verify": "1"})
    csrf = "A" * 32  # an unmasked token: the cookie and header must match
    cookies = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": reverse(STREAM),
        "raw_path": reverse(STREAM).encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", f"{cookies}; csrftoken={csrf}".encode()),
            (b"x-csrftoken", csrf.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    first_event = asyncio.Event()
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body.encode(), "more_body": False}
        await first_event.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if b"data: " in message.get("body", b""):
            first_event.set()

    await asyncio.wait_for(ASGIHandler()(scope, receive, send), timeout=20)

    assert sent[0]["status"] == 200
    events = [m["body"] for m in sent if m.get("body")]
    assert len(events) == 1 and b'"rolledBack": true' in events[0]
    # The item in progress when the client left finishes in the background.
    await asyncio.wait_for(asyncio.gather(*list(credentials_admin._finishing)), timeout=10)
    added = await LogEntry.objects.filter(action_flag=ADDITION).acount()
    deleted = await LogEntry.objects.filter(action_flag=DELETION).acount()
    assert 1 <= added <= 2  # the sixth, fifth, ... items never started
    assert deleted == added  # an interrupted item is still verified and rolled back
    assert await Credential.objects.acount() == 0
    assert len(async_db.fake.requests_for("refresh")) == added


async def test_a_viewer_gets_403_and_bad_requests_are_refused(async_db):
    viewer = await client_as(factories.make_viewer)
    text = json.dumps([{"refreshToken": long_token()}])

    assert (await viewer.post(reverse(STREAM), {"text": text})).status_code == 403
    assert await Credential.objects.acount() == 0
    operator = await client_as(factories.make_operator)
    assert (await operator.get(reverse(STREAM))).status_code == 405
    empty = await operator.post(reverse(STREAM), {"text": ""})
    assert empty.status_code == 400 and "Paste JSON" in empty.json()["error"]


def test_the_page_offers_the_streaming_import_to_operators(kiro, admin_client_as):
    page = admin_client_as(factories.make_operator()).get(
        reverse("admin:credentials_credential_batch_import")
    )

    html = page.content.decode()
    assert reverse(STREAM) in html
    assert 'id="batch-stop"' in html
    assert "credentials/batch_import.js" in html
