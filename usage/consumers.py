"""The live usage feed: a websocket that streams new usage records to staff who may view them."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from usage.live import GROUP

# Application close codes (RFC 6455 leaves 4000-4999 to applications), after HTTP 401/403.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
VIEW_PERMISSION = "usage.view_usagerecord"


def _may_view(user: Any) -> bool:
    """Tell whether `user` is active staff with the permission to view usage."""
    return bool(user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION))


class UsageLiveConsumer(AsyncJsonWebsocketConsumer):
    """Join the live group after checking the session user; relay each published record."""

    groups: list[str] = []  # joined by hand, only once the user is allowed
    joined = False

    async def connect(self) -> None:
        """Refuse anonymous (4401) and unprivileged (4403) sockets; accept the rest."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(_may_view)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the group if the socket had joined it."""
        if self.joined:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Ignore client messages: the feed is one way."""

    async def usage_record(self, event: dict[str, Any]) -> None:
        """Forward one published record to the browser."""
        await self.send_json({"type": "usage.record", "record": event["record"]})
