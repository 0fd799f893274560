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
import base64
import collections
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httptools
import httpx
from python_socks import ProxyConnectionError, ProxyError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

if TYPE_CHECKING:
    import socket

__all__ = ["LeanClient", "LeanTransport", "PoolStats", "build_client"]

# (scheme, host, port, proxy URL or "").
_Key = tuple[str, str, int, str]

# Pause reading from the socket when the consumer lags this far behind, resume below the
# low mark: a stalled client must not make us buffer an unbounded upstream body.
_HIGH_WATER: Final = 1024 * 1024
_LOW_WATER: Final = 256 * 1024
# Below this size the head and the body go out in one write (one segment, one syscall).
_COALESCE_LIMIT: Final = 64 * 1024
# RFC 9110 9.2.2: only these may be replayed after a kept-alive connection dies unanswered.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# How many stale pooled connections one request may run into before giving up.
_MAX_STALE_RETRIES: Final = 3
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Counters of one transport's pool."""

    connections: int  # open connections plus slots reserved by connects in progress
    idle: int
    waiting: int


class _StaleConnection(Exception):
    """Signal that a pooled connection died before the request was sent or answered."""


def _read_error(exc: BaseException | None) -> httpx.TransportError:
    """Map how a connection ended mid-response to the httpx exception callers expect."""
    if exc is None:
        return httpx.RemoteProtocolError("Server disconnected before the response was complete")
    return httpx.ReadError(str(exc) or type(exc).__name__)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes requests, parses responses as bytes arrive."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_close_delimited",
        "_complete",
        "_drain_waiter",
        "_error",
        "_head_request",
        "_headers",
        "_headers_done",
        "_interim",
        "_keep_alive",
        "_loop",
        "_parser",
        "_pieces",
        "_pool",
        "_read_timeout",
        "_reading_paused",
        "_reason",
        "_status",
        "_timer",
        "_version",
        "_wait_start",
        "_waiter",
        "_write_paused",
        "absolute_form",
        "closed",
        "idle_since",
        "in_pool",
        "key",
        "received_any",
        "reused",
        "transport",
    )

    def __init__(self, key: _Key, loop: asyncio.AbstractEventLoop, pool: _Pool) -> None:
        self.key = key
        self._loop = loop
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.in_pool = False
        self.reused = False
        self.idle_since = 0.0
        # Plain-http requests through an HTTP proxy use the absolute form (RFC 9112 3.2.2).
        self.absolute_form = False
        self._parser: httptools.HttpResponseParser | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._reset_response(head_request=False, read_timeout=None)

    def _reset_response(self, *, head_request: bool, read_timeout: float | None) -> None:
        """Forget the previous response and get ready for the next one."""
        self._head_request = head_request
        self._read_timeout = read_timeout
        self._status = 0
        self._reason = b""
        self._version = b"HTTP/1.1"
        self._headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self._interim = False
        self._complete = False
        self._close_delimited = False
        self._keep_alive = True
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._pieces: list[bytes] = []
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wait_start = 0.0
        self._reading_paused = False
        self.received_any = False

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (also called by hand after a CONNECT tunnel's `start_tls`)."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Parse what one socket read delivered and queue its body bytes as one chunk."""
        parser = self._parser
        if parser is None:
            # Bytes while idle, or after a complete response: the server is out of step.
            self.close()
            return
        self.received_any = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("Unexpected protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, httpx.TransportError):
                self._fail(exc.__context__)  # raised by one of our callbacks
                return
            if not self._complete:
                self._fail(httpx.RemoteProtocolError(f"Malformed HTTP response: {exc}"))
                return
            # Junk after a complete response: keep the response, drop the connection.
            self._keep_alive = False
        pieces = self._pieces
        if pieces:
            # PERF-NOTES: per-chunk overhead dominates; one read becomes one chunk.
            chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            self._chunks.append(chunk)
            self._buffered += len(chunk)
            if self._buffered > _HIGH_WATER and not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        """Let the transport close; `connection_lost` decides what the EOF means."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """End the response in progress, as complete or as failed."""
        closed_here = self.closed
        self.closed = True
        if self.in_pool:
            self._pool.lost_idle(self)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(httpx.WriteError(str(exc) if exc else "Connection closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parser is not None and not self._complete:
            if exc is None and self._headers_done and self._close_delimited:
                # RFC 9112 6.3 (8): without length or chunking, the body ends at close.
                self._complete = True
                self._keep_alive = False
            elif self._error is None:
                # closed already set and no exc: we closed it (aclose()), not the server.
                local = exc is None and closed_here
                self._error = (
                    httpx.ReadError("Connection closed by the client")
                    if local
                    else _read_error(exc)
                )
        self._wake()

    def pause_writing(self) -> None:
        """Note that the socket's send buffer is full."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """Wake a writer waiting for the send buffer to drain."""
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        """Spot a second response where only one was asked for."""
        if self._complete:
            self._keep_alive = False

    def on_status(self, status: bytes) -> None:
        """Keep the reason phrase."""
        self._reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect a header in arrival order, ignoring chunked trailers."""
        if not self._headers_done:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        """Settle status, framing and keep-alive, and wake whoever waits for the head."""
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if status == 101:
            raise httpx.RemoteProtocolError("Unexpected 101 Switching Protocols")
        if 100 <= status < 200:
            # RFC 9110 15.2: interim responses precede the real one; drop them.
            self._interim = True
            self._headers = []
            return
        self._status = status
        self._headers_done = True
        version = parser.get_http_version()
        self._version = b"HTTP/" + version.encode("ascii")
        has_length = False
        chunked = False
        connection = b""
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"transfer-encoding":
                chunked = value.rstrip().lower().endswith(b"chunked")
            elif lname == b"connection":
                connection += b"," + value.lower()
        tokens = {token.strip() for token in connection.split(b",")}
        if version == "1.1":
            self._keep_alive = b"close" not in tokens
        else:
            self._keep_alive = b"keep-alive" in tokens
        if self._head_request or status in (204, 304):
            # llhttp cannot be told the request was HEAD; it would wait for Content-Length
            # bytes that never come. The response ends with its head.
            self._complete = True
            self._parser = None
        elif not has_length and not chunked:
            self._close_delimited = True
            self._keep_alive = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        """Collect a body piece; `data_received` joins the pieces of one read."""
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        """Mark the response complete (interim responses excepted)."""
        if self._interim:
            self._interim = False
            return
        self._complete = True

    # --- used by the transport and the response stream ------------------------------------

    def start_response(self, *, head_request: bool, read_timeout: float | None) -> None:
        """Arm a fresh parser before the request goes out."""
        self._reset_response(head_request=head_request, read_timeout=read_timeout)
        self._parser = httptools.HttpResponseParser(self)

    def finish_response(self) -> bool:
        """Detach the parser and say whether the connection can serve another request."""
        self._parser = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reusable = self._complete and self._keep_alive and self._error is None
        if reusable and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        self._chunks.clear()
        self._buffered = 0
        return reusable and not self.closed

    def is_alive(self) -> bool:
        """Say whether an idle connection still looks usable."""
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    def close(self) -> None:
        """Close the socket; `connection_lost` follows."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the socket at once, without flushing (after cancellation or errors)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def write(self, data: bytes) -> None:
        """Queue bytes on the socket."""
        self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self, write_timeout: float | None) -> None:
        """Wait until the send buffer is below the high-water mark."""
        if not self._write_paused:
            return
        if self.closed:
            raise httpx.WriteError("Connection closed while sending the request")
        fut = self._loop.create_future()
        self._drain_waiter = fut
        try:
            async with asyncio.timeout(write_timeout):
                await fut
        except TimeoutError:
            raise httpx.WriteTimeout("Timed out sending the request body") from None
        finally:
            self._drain_waiter = None

    def _fail(self, error: httpx.TransportError) -> None:
        """Record a fatal response error, drop the socket, wake the reader."""
        self._error = error
        self._pieces.clear()
        self.abort()
        self._wake()

    def _wake(self) -> None:
        """Resolve the reader's waiter, if any."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for the next event (head, body, end, error), bounded by the read timeout."""
        loop = self._loop
        waiter = loop.create_future()
        self._waiter = waiter
        if self._read_timeout is not None:
            self._wait_start = loop.time()
            if self._timer is None:
                # One timer re-armed lazily instead of one per wait: a stream that gets a
                # chunk every few ms would otherwise push and cancel a timer per chunk.
                self._timer = loop.call_at(self._wait_start + self._read_timeout, self._tick)
        await waiter

    def _tick(self) -> None:
        """Fail the reader if it has waited longer than the read timeout, else re-arm."""
        self._timer = None
        waiter = self._waiter
        timeout = self._read_timeout
        if waiter is None or waiter.done() or timeout is None:
            return
        deadline = self._wait_start + timeout
        # call_at may fire up to one clock resolution early.
        if self._loop.time() + 0.001 >= deadline:
            self._waiter = None
            waiter.set_exception(httpx.ReadTimeout(f"No data from the server for {timeout} s"))
        else:
            self._timer = self._loop.call_at(deadline, self._tick)


class _ResponseStream(httpx.AsyncByteStream):
    """Body bytes of one response, a chunk per socket read, as they arrive."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, conn: _Connection, pool: _Pool) -> None:
        self._conn: _Connection | None = conn
        self._pool = pool

    def __aiter__(self) -> _ResponseStream:
        # A plain iterator, not an async generator: one frame fewer per chunk.
        return self

    async def __anext__(self) -> bytes:
        """Return the next chunk, waiting for the socket if none is buffered."""
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        chunks = conn._chunks
        while not chunks:
            if conn._error is not None:
                error = conn._error
                self._release(reuse=False)
                raise error
            if conn._complete:
                self._release(reuse=True)
                raise StopAsyncIteration
            try:
                await conn.wait()
            except BaseException:
                # ReadTimeout, or the client went away (CancelledError): the connection
                # is mid-response, so it can never be reused.
                self._release(reuse=False)
                raise
        chunk = chunks.popleft()
        conn._buffered -= len(chunk)
        if conn._reading_paused and conn._buffered < _LOW_WATER:
            conn._reading_paused = False
            conn.transport.resume_reading()  # type: ignore[union-attr]
        return chunk

    async def aclose(self) -> None:
        """Return a fully received keep-alive connection to the pool, else close it."""
        self._release(reuse=True)

    def _release(self, *, reuse: bool) -> None:
        """Hand the connection back exactly once."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if reuse and conn.finish_response():
            self._pool.release(conn)
        else:
            conn.finish_response()
            self._pool.discard(conn)


class _Pool:
    """Keep-alive connections per key under one global limit; O(1) acquire and release."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float | None) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._total = 0  # live connections + slots held by connects in progress
        self._live: set[_Connection] = set()
        # Per key, LIFO: the most recently used connection is the likeliest to still be open.
        self._idle: dict[_Key, OrderedDict[_Connection, None]] = {}
        # All idle connections, oldest first: expiry and cross-key eviction take the head.
        self._idle_all: OrderedDict[_Connection, None] = OrderedDict()
        self._waiters: collections.deque[tuple[_Key, asyncio.Future[_Connection | None]]] = (
            collections.deque()
        )
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def stats(self) -> PoolStats:
        """Count connections, idle ones and live waiters."""
        waiting = sum(1 for _, fut in self._waiters if not fut.done())
        return PoolStats(connections=self._total, idle=len(self._idle_all), waiting=waiting)

    async def acquire(self, key: _Key, pool_timeout: float | None) -> _Connection | None:
        """Return an idle connection for `key`, or None with a slot reserved to connect."""
        if self.closed:
            raise RuntimeError("The transport is closed")
        loop = self._loop = asyncio.get_running_loop()
        conn = self._take_idle(key, loop.time())
        if conn is not None:
            return conn
        waiters = self._waiters
        # Timed-out or cancelled waiters stay queued until someone passes them; drop those
        # at the head so they don't make us queue behind nobody (amortised O(1)).
        while waiters and waiters[0][1].done():
            waiters.popleft()
        if not waiters:
            if self._total < self._max:
                self._total += 1
                return None
            if self._idle_all:
                # At the limit with idle connections to other hosts: recycle the oldest slot.
                victim, _ = self._idle_all.popitem(last=False)
                self._unlist_idle(victim)
                self._drop(victim)
                return None
        fut: asyncio.Future[_Connection | None] = loop.create_future()
        waiters.append((key, fut))
        timer = None
        if pool_timeout is not None:
            timer = loop.call_later(pool_timeout, _expire_waiter, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            # Granted in the same loop iteration as the cancellation: give it back.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                granted = fut.result()
                if granted is None:
                    self.free_slot()
                else:
                    self.release(granted)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def add(self, conn: _Connection) -> None:
        """Track a newly connected connection (its slot was reserved by `acquire`)."""
        self._live.add(conn)

    def release(self, conn: _Connection) -> None:
        """Take back a connection that finished a response and may be reused."""
        if self.closed or not conn.is_alive():
            self.discard(conn)
            return
        conn.reused = True
        waiters = self._waiters
        while waiters:
            key, fut = waiters.popleft()
            if fut.done():
                continue
            if key == conn.key:
                fut.set_result(conn)
            else:
                # FIFO across keys: the first waiter wants another host, so this
                # connection's slot becomes theirs.
                self._drop(conn)
                fut.set_result(None)
            return
        conn.in_pool = True
        conn.idle_since = self._loop.time() if self._loop else 0.0
        self._idle.setdefault(conn.key, OrderedDict())[conn] = None
        self._idle_all[conn] = None
        self._schedule_sweep()

    def discard(self, conn: _Connection) -> None:
        """Close a connection that must not be reused and free its slot."""
        self._drop(conn)
        self.free_slot()

    def free_slot(self) -> None:
        """Give a slot to the first live waiter, or return it to the pool."""
        if self.closed:
            return  # close() already zeroed the count
        waiters = self._waiters
        while waiters:
            _, fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._total -= 1

    def lost_idle(self, conn: _Connection) -> None:
        """Forget an idle connection the server closed."""
        if conn.in_pool:
            self._idle_all.pop(conn, None)
            self._unlist_idle(conn)
            self._live.discard(conn)
            self.free_slot()

    def close(self) -> None:
        """Close every connection and fail every waiter."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("The transport is closed"))
        for conn in list(self._live):
            conn.in_pool = False
            conn.abort()
        self._live.clear()
        self._idle.clear()
        self._idle_all.clear()
        self._total = 0

    def _drop(self, conn: _Connection) -> None:
        """Close a connection and stop tracking it, keeping its slot counted."""
        if not conn.closed:
            conn.abort()
        self._live.discard(conn)

    def _take_idle(self, key: _Key, now: float) -> _Connection | None:
        """Pop the newest usable idle connection for `key`, closing dead ones on the way."""
        idle = self._idle.get(key)
        while idle:
            conn, _ = idle.popitem()
            del self._idle_all[conn]
            conn.in_pool = False
            expired = self._expiry is not None and now - conn.idle_since >= self._expiry
            if not expired and conn.is_alive():
                return conn
            self.discard(conn)
        return None

    def _unlist_idle(self, conn: _Connection) -> None:
        """Remove an idle connection from its key's list (`_idle_all` is the caller's)."""
        conn.in_pool = False
        idle = self._idle.get(conn.key)
        if idle is not None:
            idle.pop(conn, None)
            if not idle:
                del self._idle[conn.key]

    def _schedule_sweep(self) -> None:
        """Arm one timer for the oldest idle connection's expiry."""
        if self._sweeper is not None or self._expiry is None or not self._idle_all:
            return
        oldest = next(iter(self._idle_all))
        assert self._loop is not None
        self._sweeper = self._loop.call_at(oldest.idle_since + self._expiry, self._sweep)

    def _sweep(self) -> None:
        """Close idle connections past their expiry, oldest first."""
        self._sweeper = None
        assert self._loop is not None and self._expiry is not None
        now = self._loop.time()
        while self._idle_all:
            conn = next(iter(self._idle_all))
            if now - conn.idle_since < self._expiry - 0.001:
                break
            del self._idle_all[conn]
            self._unlist_idle(conn)
            self.discard(conn)
        self._schedule_sweep()


def _expire_waiter(fut: asyncio.Future[_Connection | None]) -> None:
    """Fail a pool waiter whose pool timeout ran out."""
    if not fut.done():
        fut.set_exception(httpx.PoolTimeout("Timed out waiting for a connection from the pool"))


class _TunnelProtocol(asyncio.Protocol):
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


def _basic_auth(username: str, password: str) -> bytes:
    """Build a Basic credentials value (RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode())
    return b"Basic " + token


def _authority(host: str, port: int) -> str:
    """Format host:port, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        self._pool = _Pool(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
        self._proxy: httpx.URL | None = None
        self._proxy_key = ""
        self._proxy_auth: tuple[str, str] | None = None
        self._proxy_header: bytes | None = None
        if proxy is not None:
            url = httpx.URL(proxy)
            if url.scheme not in _DEFAULT_PORTS:
                raise ValueError(f"Unsupported proxy scheme: {url.scheme!r}")
            self._proxy = url
            self._proxy_key = str(url.copy_with(username=None, password=None))
            if proxy_auth is not None:
                # Stored apart from the URL by the gateway; the explicit pair wins.
                self._proxy_auth = proxy_auth
            elif url.username or url.password:
                self._proxy_auth = (url.username, url.password)
            if self._proxy_auth is not None and url.scheme in ("http", "https"):
                self._proxy_header = _basic_auth(*self._proxy_auth)

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
        key: _Key = (scheme, host, port, self._proxy_key)
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
                            raise _StaleConnection from conn._error
                        raise conn._error
                    await conn.wait()
            except _StaleConnection as exc:
                conn.finish_response()
                pool.discard(conn)
                # A kept-alive connection closed under us before any answer: replay if
                # nothing was written (any method) or if the request is safe to repeat.
                unsent = exc.__cause__ is None
                can_replay = replayable and (unsent or method in _IDEMPOTENT)
                if can_replay and attempt <= _MAX_STALE_RETRIES:
                    continue
                raise (exc.__cause__ or _read_error(None)) from None
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
            stream=_ResponseStream(conn, pool),
            extensions={"http_version": conn._version, "reason_phrase": conn._reason},
        )

    async def aclose(self) -> None:
        """Close every connection, idle or busy, and fail pool waiters."""
        self._pool.close()

    async def _send(
        self, conn: _Connection, request: httpx.Request, write_timeout: float | None
    ) -> None:
        """Write the request head and body, framed as httpx's headers say."""
        if conn.closed:
            raise _StaleConnection  # noticed before the first byte: safe to replay
        head = self._request_head(conn, request)
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            body = b"".join(stream)
            if chunked and body:
                body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
            elif chunked:
                body = b"0\r\n\r\n"
            if len(body) <= _COALESCE_LIMIT:
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

    def _request_head(self, conn: _Connection, request: httpx.Request) -> bytes:
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

    async def _connect(self, key: _Key, connect_timeout: float | None) -> _Connection:
        """Open a connection for `key`, through the proxy if there is one."""
        scheme, host, port, _ = key
        loop = asyncio.get_running_loop()
        conn = _Connection(key, loop, self._pool)
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
                        proxy.port or _DEFAULT_PORTS[proxy.scheme],
                        ssl=proxy_tls,
                        server_hostname=proxy.host if proxy_tls is not None else None,
                    )
        except TimeoutError:  # also python_socks's ProxyTimeoutError
            conn.abort()
            raise httpx.ConnectTimeout(
                f"Timed out connecting to {_authority(host, port)}"
            ) from None
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
            proxy.port or _DEFAULT_PORTS[proxy.scheme],
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
        conn: _Connection,
        loop: asyncio.AbstractEventLoop,
        proxy: httpx.URL,
        host: str,
        port: int,
    ) -> None:
        """Open a CONNECT tunnel through an HTTP(S) proxy and start TLS to host inside it."""
        proxy_tls = self._ssl if proxy.scheme == "https" else None
        tunnel = _TunnelProtocol(loop)
        raw, _ = await loop.create_connection(
            lambda: tunnel,
            proxy.host,
            proxy.port or _DEFAULT_PORTS[proxy.scheme],
            ssl=proxy_tls,
            server_hostname=proxy.host if proxy_tls is not None else None,
        )
        try:
            authority = _authority(host, port).encode("ascii")
            lines = [b"CONNECT ", authority, b" HTTP/1.1\r\nHost: ", authority, b"\r\n"]
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
