"""The live usage feed: who may open the socket, and what a published record looks like."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, Permission
from django.test import Client

from credentials import roles
from kiro_site.routing import websocket_application
from tests import factories
from usage import live
from usage.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from usage.models import UsageRecord, UsageStatus

# The socket reads the session from another thread, so the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/usage/live/"


def ensure_roles() -> None:
    """Recreate the staff role groups; a transactional test's flush removes migration data."""
    for role, wanted in roles.ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(
            [
                Permission.objects.get(content_type__app_label=app, codename=codename)
                for app, codename in wanted
            ]
        )


def session_cookie(user: object) -> str:
    """Return a session id for `user`, as the admin login would set it."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def open_socket(user: object | None) -> WebsocketCommunicator:
    """Return a communicator on the live feed, signed in as `user` when given."""
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        sessionid = await sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"sessionid={sessionid}".encode()))
    return WebsocketCommunicator(websocket_application, PATH, headers=headers)


async def viewer_feed() -> WebsocketCommunicator:
    """Return a connected live feed of a viewer (the staff roles recreated first)."""
    await sync_to_async(ensure_roles)()
    viewer = await sync_to_async(factories.make_viewer)()
    socket = await open_socket(viewer)
    connected, _ = await socket.connect()
    assert connected
    return socket


@pytest.fixture
def staff_roles() -> None:
    ensure_roles()


def make_record(**values: object) -> UsageRecord:
    credential = factories.CredentialFactory()
    key = factories.ClientKeyFactory(name="ci runner")
    defaults: dict[str, object] = {
        "created_at": datetime(2026, 3, 10, 12, 0, 5, tzinfo=UTC),
        "endpoint": "messages",
        "model_requested": "claude-sonnet-4-5",
        "status": UsageStatus.SUCCESS,
        "http_status": 200,
        "input_tokens": 120,
        "output_tokens": 34,
        "credits": 0.25,
        "latency_ms": 812,
        "credential": credential,
        "client_key": key,
    }
    return UsageRecord.objects.create(**{**defaults, **values})


async def test_it_refuses_an_anonymous_socket() -> None:
    communicator = await open_socket(None)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, CLOSE_UNAUTHENTICATED)


async def test_it_refuses_a_user_without_a_staff_role(staff_roles: None) -> None:
    outsider = await sync_to_async(factories.make_outsider)()
    communicator = await open_socket(outsider)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, CLOSE_FORBIDDEN)


async def test_it_refuses_staff_without_the_view_permission(staff_roles: None) -> None:
    from django.contrib.auth.models import User

    clerk = await sync_to_async(User.objects.create_user)(username="clerk", is_staff=True)
    communicator = await open_socket(clerk)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, CLOSE_FORBIDDEN)


async def test_it_streams_a_published_record_to_the_superuser(staff_roles: None) -> None:
    superuser = await sync_to_async(factories.make_superuser)()
    record = await sync_to_async(make_record)()
    communicator = await open_socket(superuser)
    connected, _ = await communicator.connect()
    assert connected
    try:
        await sync_to_async(live.publish_record)(record)
        message = await communicator.receive_json_from(timeout=5)
    finally:
        await communicator.disconnect()
    assert message == {
        "type": "usage.record",
        "record": {
            "id": record.pk,
            "time": "2026-03-10T12:00:05+00:00",
            "endpoint": "messages",
            "model": "claude-sonnet-4-5",
            "status": "success",
            "http_status": 200,
            "error_type": "",
            "stream": False,
            "input_tokens": 120,
            "output_tokens": 34,
            "credits": 0.25,
            "latency_ms": 812,
            "credential_id": record.credential_id,
            "key_name": "ci runner",
        },
    }


async def test_it_streams_to_a_viewer(staff_roles: None) -> None:
    viewer = await sync_to_async(factories.make_viewer)()
    record = await sync_to_async(make_record)(status=UsageStatus.ERROR, error_type="quota")
    communicator = await open_socket(viewer)
    connected, _ = await communicator.connect()
    assert connected
    try:
        await sync_to_async(live.publish_record)(record)
        message = await communicator.receive_json_from(timeout=5)
    finally:
        await communicator.disconnect()
    assert message["record"]["status"] == "error"
    assert message["record"]["error_type"] == "quota"


async def test_it_keeps_secrets_out_of_the_feed(staff_roles: None) -> None:
    viewer = await sync_to_async(factories.make_viewer)()
    record = await sync_to_async(make_record)()
    communicator = await open_socket(viewer)
    await communicator.connect()
    try:
        await sync_to_async(live.publish_record)(record)
        raw = await communicator.receive_from(timeout=5)
    finally:
        await communicator.disconnect()
    credential, key = record.credential, record.client_key
    for secret in (credential.refresh_token, credential.access_token, key.key_hash, key.prefix):
        assert secret not in raw


def test_publish_logs_instead_of_raising_when_the_layer_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    record = make_record()

    class BrokenLayer:
        async def group_send(self, group: str, message: dict) -> None:
            raise ConnectionError("redis is down")

    monkeypatch.setattr(live, "get_channel_layer", lambda: BrokenLayer())
    live.publish_record(record)
    assert "could not publish usage record" in caplog.text
