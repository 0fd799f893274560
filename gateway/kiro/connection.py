"""One HTTP/1.1 connection to Kiro: an `asyncio.Protocol` fed to `httptools` (llhttp, in C).

Part of the lean transport (`gateway.kiro.transport`): this module writes requests and parses
responses as bytes arrive; `gateway.kiro.pool` keeps connections alive between requests and
`gateway.kiro.proxy` opens tunnels. The transport's docstring explains why it exists and which
httpx exception each failure raises.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import httptools
import httpx

if TYPE_CHECKING:
    pass

# (scheme, host, port, proxy URL or ""): connections are pooled per key.
PoolKey = tuple[str, str, int, str]

# Pause reading from the socket when the consumer lags this far behind, resume below the
# low mark: a stalled client must not make us buffer an unbounded upstream body.
HIGH_WATER: Final = 1024 * 1024
LOW_WATER: Final = 256 * 1024
# Below this size the head and the body go out in one write (one segment, one syscall).
COALESCE_LIMIT: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Counters of one transport's pool."""

    connections: int  # open connections plus slots reserved by connects in progress
    idle: int
    waiting: int


class StaleConnection(Exception):
    """Signal that a pooled connection died before the request was sent or answered."""


def read_error(exc: BaseException | None) -> httpx.TransportError:
    """Map how a connection ended mid-response to the httpx exception callers expect."""
    if exc is None:
        return httpx.RemoteProtocolError("Server disconnected before the response was complete")
    return httpx.ReadError(str(exc) or type(exc).__name__)


class Connection(asyncio.Protocol):
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

    def __init__(
        self, key: PoolKey, loop: asyncio.AbstractEventLoop, pool: ConnectionOwner
    ) -> None:
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
            if self._buffered > HIGH_WATER and not self._reading_paused:
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
                    httpx.ReadError("Connection closed by the client") if local else read_error(exc)
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


class ConnectionOwner(Protocol):
    """What a connection tells the pool holding it (gateway.kiro.pool.ConnectionPool)."""

    def lost_idle(self, conn: Connection) -> None: ...
