"""An HTTP/1.1 transport for `httpx.AsyncClient` built on `httptools`, with a lean pool.

Why: PERF-NOTES measured httpcore + h11 at ~40 % of proxy CPU (every chunk is parsed in
Python and passed up several async-generator layers) and one httpcore pool collapsing at a
few hundred live streams (O(connections²) assignment on every start and release,
encode/httpcore#1035). Here an `asyncio.Protocol` feeds an `httptools.HttpResponseParser`
(llhttp, in C); the body pieces one socket read delivers become one chunk; the pool does O(1)
work per acquire and release.

Scope: HTTP/1.1 only (no HTTP/2, no upgrades, no pipelining), one asyncio event loop per
transport, direct or through one proxy (`http://`, `https://`, `socks5://`, `socks5h://`).

Exceptions (all `httpx.TransportError` subclasses, as httpcore raises them):

| situation | exception |
| --- | --- |
| TCP/TLS/proxy connect takes longer than `connect` | `httpx.ConnectTimeout` |
| refused, unreachable, DNS, TLS verification failure | `httpx.ConnectError` |
| proxy answers CONNECT with non-2xx, SOCKS refusal/auth failure | `httpx.ProxyError` |
| no pool slot within `pool` | `httpx.PoolTimeout` |
| sending the request body stalls longer than `write` | `httpx.WriteTimeout` |
| no byte for longer than `read` while waiting for headers or body | `httpx.ReadTimeout` |
| clean EOF (FIN) before the response or its body is complete | `httpx.RemoteProtocolError` |
| socket error (reset, broken pipe) before the response is complete | `httpx.ReadError` |
| bytes that are not HTTP/1.x, or a protocol upgrade | `httpx.RemoteProtocolError` |
| CR or LF inside a request header | `httpx.LocalProtocolError` |

The EOF/reset split is httpcore's (h11 reports an incomplete body as a protocol error, an
`OSError` during a read as `ReadError`), so callers catching httpx errors see no change.
A connection closed locally by `aclose()` under a reader raises `httpx.ReadError`.

Replays: when a kept-alive connection dies before any response byte (the server closed it
as we reused it), the request goes out again on another connection if its body is bytes and
either nothing had been written yet or the method is idempotent (RFC 9110 9.2.2); a POST
that was already written is never replayed and raises as above.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, Final

import httpx
from python_socks import ProxyConnectionError, ProxyError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from gateway.kiro.connection import (
    COALESCE_LIMIT,
    Connection,
    PoolKey,
    PoolStats,
    StaleConnection,
    read_error,
)
from gateway.kiro.pool import ConnectionPool, ResponseStream
from gateway.kiro.proxies import DEFAULT_PORTS, UnusableProxy, proxy_url_problem
from gateway.kiro.proxy import TunnelProtocol, authority, basic_auth

if TYPE_CHECKING:
    import socket

__all__ = ["LeanClient", "LeanTransport", "PoolStats", "build_client"]

# RFC 9110 9.2.2: only these may be replayed after a kept-alive connection dies unanswered.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# How many stale pooled connections one request may run into before giving up.
_MAX_STALE_RETRIES: Final = 3


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio + httptools, with TLS, proxies and an O(1) connection pool."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | None = None,
        proxy: str | None = None,
        proxy_auth: tuple[str, str] | None = None,
        max_connections: int = 2000,
        keepalive_expiry: float | None = 30.0,
    ) -> None:
        # The gateway passes a certifi or truststore context; httpx's default is certifi.
        self._ssl = verify if verify is not None else httpx.create_ssl_context()
        self._pool = ConnectionPool(
            max_connections=max_connections, keepalive_expiry=keepalive_expiry
        )
        self._proxy: httpx.URL | None = None
        self._proxy_key = ""
        self._proxy_auth: tuple[str, str] | None = None
        self._proxy_header: bytes | None = None
        if proxy is not None:
            problem = proxy_url_problem(proxy)
            if problem is not None:
                raise UnusableProxy(f"Unusable proxy: {problem}")
            url = httpx.URL(proxy)
            self._proxy = url
            self._proxy_key = str(url.copy_with(username=None, password=None))
            if proxy_auth is not None:
                # Stored apart from the URL by the gateway; the explicit pair wins.
                self._proxy_auth = proxy_auth
            elif url.username or url.password:
                self._proxy_auth = (url.username, url.password)
            if self._proxy_auth is not None and url.scheme in ("http", "https"):
                self._proxy_header = basic_auth(*self._proxy_auth)

    def stats(self) -> PoolStats:
        """Return the pool's counters."""
        return self._pool.stats()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request and return the response once its head has arrived."""
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme: {scheme!r}")
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if scheme == "https" else 80)
        key: PoolKey = (scheme, host, port, self._proxy_key)
        timeouts = request.extensions.get("timeout", {})
        method = request.method
        head_request = method == "HEAD"
        replayable = isinstance(request.stream, httpx.ByteStream)
        close_after = "close" in request.headers.get("connection", "").lower()
        pool = self._pool

        attempt = 0
        while True:
            attempt += 1
            conn = await pool.acquire(key, timeouts.get("pool"))
            if conn is None:
                try:
                    conn = await self._connect(key, timeouts.get("connect"))
                except BaseException:
                    pool.free_slot()
                    raise
                pool.add(conn)
            try:
                conn.start_response(head_request=head_request, read_timeout=timeouts.get("read"))
                await self._send(conn, request, timeouts.get("write"))
                while not conn._headers_done:
                    if conn._error is not None:
                        if conn.reused and not conn.received_any:
                            raise StaleConnection from conn._error
                        raise conn._error
                    await conn.wait()
            except StaleConnection as exc:
                conn.finish_response()
                pool.discard(conn)
                # A kept-alive connection closed under us before any answer: replay if
                # nothing was written (any method) or if the request is safe to repeat.
                unsent = exc.__cause__ is None
                can_replay = replayable and (unsent or method in _IDEMPOTENT)
                if can_replay and attempt <= _MAX_STALE_RETRIES:
                    continue
                raise (exc.__cause__ or read_error(None)) from None
            except BaseException:
                conn.finish_response()
                pool.discard(conn)
                raise
            break

        if close_after:
            conn._keep_alive = False
        return httpx.Response(
            conn._status,
            headers=conn._headers,
            stream=ResponseStream(conn, pool),
            extensions={"http_version": conn._version, "reason_phrase": conn._reason},
        )

    async def aclose(self) -> None:
        """Close every connection, idle or busy, and fail pool waiters."""
        self._pool.close()

    async def _send(
        self, conn: Connection, request: httpx.Request, write_timeout: float | None
    ) -> None:
        """Write the request head and body, framed as httpx's headers say."""
        if conn.closed:
            raise StaleConnection  # noticed before the first byte: safe to replay
        head = self._request_head(conn, request)
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            body = b"".join(stream)
            if chunked and body:
                body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
            elif chunked:
                body = b"0\r\n\r\n"
            if len(body) <= COALESCE_LIMIT:
                conn.write(head + body)
            else:
                conn.write(head)
                conn.write(body)
            await conn.drain(write_timeout)
            return
        conn.write(head)
        async for part in stream:  # type: ignore[union-attr]
            if conn.closed:
                return  # the server hung up; its response (if any) is read next
            if not part:
                continue
            conn.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
            await conn.drain(write_timeout)
        if chunked and not conn.closed:
            conn.write(b"0\r\n\r\n")
            await conn.drain(write_timeout)

    def _request_head(self, conn: Connection, request: httpx.Request) -> bytes:
        """Serialise the request line and headers in httpx's order and case."""
        url = request.url
        target = url.raw_path
        if conn.absolute_form:
            target = url.raw_scheme + b"://" + url.netloc + target
        parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            # h11 rejects these too: a CR or LF would let a value inject headers.
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                raise httpx.LocalProtocolError(f"Invalid header {name!r}")
            parts += (name, b": ", value, b"\r\n")
        if conn.absolute_form and self._proxy_header is not None:
            parts += (b"Proxy-Authorization: ", self._proxy_header, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _connect(self, key: PoolKey, connect_timeout: float | None) -> Connection:
        """Open a connection for `key`, through the proxy if there is one."""
        scheme, host, port, _ = key
        loop = asyncio.get_running_loop()
        conn = Connection(key, loop, self._pool)
        tls = self._ssl if scheme == "https" else None
        server_hostname = host if tls is not None else None
        proxy = self._proxy
        try:
            async with asyncio.timeout(connect_timeout):
                if proxy is None:
                    await loop.create_connection(
                        lambda: conn, host, port, ssl=tls, server_hostname=server_hostname
                    )
                elif proxy.scheme in ("socks5", "socks5h"):
                    sock = await self._socks_connect(proxy, host, port, connect_timeout)
                    try:
                        await loop.create_connection(
                            lambda: conn, sock=sock, ssl=tls, server_hostname=server_hostname
                        )
                    except BaseException:
                        sock.close()
                        raise
                elif scheme == "https":
                    await self._tunnel(conn, loop, proxy, host, port)
                else:
                    conn.absolute_form = True
                    proxy_tls = self._ssl if proxy.scheme == "https" else None
                    await loop.create_connection(
                        lambda: conn,
                        proxy.host,
                        proxy.port or DEFAULT_PORTS[proxy.scheme],
                        ssl=proxy_tls,
                        server_hostname=proxy.host if proxy_tls is not None else None,
                    )
        except TimeoutError:  # also python_socks's ProxyTimeoutError
            conn.abort()
            raise httpx.ConnectTimeout(f"Timed out connecting to {authority(host, port)}") from None
        except ProxyConnectionError as exc:
            conn.abort()
            raise httpx.ConnectError(str(exc)) from exc
        except ProxyError as exc:
            conn.abort()
            raise httpx.ProxyError(str(exc)) from exc
        except OSError as exc:  # includes ssl.SSLError and certificate failures
            conn.abort()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _socks_connect(
        self, proxy: httpx.URL, host: str, port: int, connect_timeout: float | None
    ) -> socket.socket:
        """Get a socket connected to host:port through the SOCKS5 proxy."""
        username, password = self._proxy_auth or (None, None)
        socks = SocksProxy(
            ProxyType.SOCKS5,
            proxy.host,
            proxy.port or DEFAULT_PORTS[proxy.scheme],
            username=username,
            password=password,
            # socks5h: the proxy resolves the name (needed when only it can see the DNS).
            rdns=proxy.scheme == "socks5h",
            loop=asyncio.get_running_loop(),
        )
        # Our own asyncio.timeout bounds this; python_socks's default would be 60 s.
        limit = connect_timeout if connect_timeout is not None else 1e9
        return await socks.connect(host, port, timeout=limit)

    async def _tunnel(
        self,
        conn: Connection,
        loop: asyncio.AbstractEventLoop,
        proxy: httpx.URL,
        host: str,
        port: int,
    ) -> None:
        """Open a CONNECT tunnel through an HTTP(S) proxy and start TLS to host inside it."""
        proxy_tls = self._ssl if proxy.scheme == "https" else None
        tunnel = TunnelProtocol(loop)
        raw, _ = await loop.create_connection(
            lambda: tunnel,
            proxy.host,
            proxy.port or DEFAULT_PORTS[proxy.scheme],
            ssl=proxy_tls,
            server_hostname=proxy.host if proxy_tls is not None else None,
        )
        try:
            target = authority(host, port).encode("ascii")
            lines = [b"CONNECT ", target, b" HTTP/1.1\r\nHost: ", target, b"\r\n"]
            if self._proxy_header is not None:
                lines += (b"Proxy-Authorization: ", self._proxy_header, b"\r\n")
            lines.append(b"\r\n")
            raw.write(b"".join(lines))
            status = await tunnel.head
            if not 200 <= status < 300:
                reason = tunnel.reason.decode("latin-1")
                raise httpx.ProxyError(f"Proxy refused CONNECT: {status} {reason}")
            tls = await loop.start_tls(raw, conn, self._ssl, server_hostname=host)
        except BaseException:
            tunnel.head.cancel()  # nobody will read the failure connection_lost would set
            raw.abort()
            raise
        assert tls is not None
        conn.connection_made(tls)


def build_client(
    *,
    verify: ssl.SSLContext,
    timeout: httpx.Timeout,
    proxy: str | None = None,
    proxy_auth: tuple[str, str] | None = None,
    max_connections: int = 2000,
    keepalive_expiry: float | None = 30.0,
) -> LeanClient:
    """Build an `httpx.AsyncClient` that sends through a `LeanTransport`."""
    transport = LeanTransport(
        verify=verify,
        proxy=proxy,
        proxy_auth=proxy_auth,
        max_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )
    # trust_env=False: with it httpx would mount its own proxy transports from
    # HTTP(S)_PROXY and bypass this one; the gateway configures proxies explicitly.
    return LeanClient(transport=transport, timeout=timeout, trust_env=False)


class LeanClient(httpx.AsyncClient):
    """An AsyncClient whose one transport is a LeanTransport, reachable for the hot path."""

    def __init__(self, *, transport: LeanTransport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self.lean_transport = transport

    async def send_streaming(self, request: httpx.Request) -> httpx.Response:
        """Send straight through the transport and return the response, body unread.

        What `send(request, stream=True)` does minus auth, redirects, cookies and event
        hooks, none of which the chat call uses; that layer cost about 0.4 ms per request
        (bench/gateway.py profile). The caller closes the response. The request must carry
        its timeouts (`httpx.Request(..., extensions={"timeout": ...})`)."""
        response = await self.lean_transport.handle_async_request(request)
        response.request = request
        return response
