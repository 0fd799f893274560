"""Proxy tunnels for the lean transport: the HTTP CONNECT handshake and its Basic auth.

SOCKS5 is dialled with python-socks in `gateway.kiro.transport`."""

from __future__ import annotations

import asyncio
import base64

import httptools
import httpx


class TunnelProtocol(asyncio.Protocol):
    """Read a proxy's answer to CONNECT, before the socket is handed to TLS."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[int] = loop.create_future()
        self.reason = b""

    def data_received(self, data: bytes) -> None:
        """Parse the proxy's response head."""
        if self.head.done():
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.head.set_exception(httpx.ProxyError(f"Malformed proxy response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the handshake if the proxy hangs up first."""
        if not self.head.done():
            self.head.set_exception(httpx.ProxyError("Proxy closed the connection"))

    def on_status(self, status: bytes) -> None:
        """Keep the reason phrase for the error message."""
        self.reason = status

    def on_headers_complete(self) -> None:
        """Report the status; a 2xx answer to CONNECT has no body (RFC 9110 9.3.6)."""
        if not self.head.done():
            self.head.set_result(self._parser.get_status_code())


def basic_auth(username: str, password: str) -> bytes:
    """Build a Basic credentials value (RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode())
    return b"Basic " + token


def authority(host: str, port: int) -> str:
    """Format host:port, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
