"""A small asyncio HTTP/1.1 server on h11 that controls exactly how response bytes hit the socket.

h11 parses requests and frames responses (keep-alive, chunked or content-length); the server
writes each framed piece itself, so a response body can be cut into arbitrary writes, paced,
or cut off with a TCP reset. One coroutine per connection, no per-connection buffers beyond
asyncio's own, so a thousand idle-ish slow streams cost little.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11

from gateway.fakekiro.steps import Abort, Action, Sleep, Write

MAX_BODY = 64 * 1024 * 1024
_REASONS = {524: "A Timeout Occurred"}


@dataclass(slots=True)
class Request:
    """A fully received HTTP request."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the last value of a header (case-insensitive), or None."""
        name = name.lower()
        value = None
        for k, v in self.headers:
            if k == name:
                value = v
        return value


@dataclass(slots=True)
class Response:
    """What to answer: a plain body, or a list of socket actions for a streamed body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    actions: Sequence[Action] | None = None
    transfer: str = "length"  # "length" | "chunked"
    first_byte_delay: float = 0.0
    reset_grace: float = 0.02
    on_complete: Callable[[], None] | None = None


Handler = Callable[[Request], Awaitable[Response]]


def reason_phrase(status: int) -> bytes:
    """Return the reason phrase for a status (also for non-standard ones like 524)."""
    if status in _REASONS:
        return _REASONS[status].encode()
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class HttpServer:
    """Serve `handler` over HTTP/1.1 on one listening socket."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.requested_port, backlog=4096, limit=1 << 16
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting and abort every open connection."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        aborted = False
        try:
            aborted = await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
            aborted = True
        except Exception:  # a fake must never take the loop down; cut the connection instead
            writer.transport.abort()
            aborted = True
        finally:
            self._connections.discard(task)
            if not aborted:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve requests on one connection until it closes; return True if it was aborted."""
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request = await self._read_request(conn, reader)
            except h11.RemoteProtocolError as exc:
                await self._send_simple(conn, writer, exc.error_status_hint, b"bad request\n")
                return False
            if request is None:
                return False
            try:
                response = await self.handler(request)
            except Exception as exc:  # a bug in the fake: answer 500 with the reason
                response = Response(
                    500, [("content-type", "text/plain")], f"fakekiro error: {exc!r}\n".encode()
                )
            keep_going = await self._write_response(conn, writer, response)
            if keep_going is None:
                return True
            if not keep_going or conn.our_state is not h11.DONE:
                return False
            # Drain an unread request body so the next cycle can start.
            while conn.their_state is h11.SEND_BODY:
                if await self._next_event(conn, reader) is None:
                    return False
            if conn.their_state is not h11.DONE:
                return False
            conn.start_next_cycle()

    async def _next_event(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> object | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(1 << 16)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            return event

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> Request | None:
        event = await self._next_event(conn, reader)
        if not isinstance(event, h11.Request):
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            part = await self._next_event(conn, reader)
            if part is None:
                return None
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > MAX_BODY:
                    raise h11.RemoteProtocolError("body too large", error_status_hint=413)
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                break
        target = event.target.decode("latin-1")
        split = urlsplit(target)
        return Request(
            method=event.method.decode("ascii"),
            target=target,
            path=split.path or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers],
            body=b"".join(chunks),
        )

    async def _send_simple(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: bytes
    ) -> None:
        with contextlib.suppress(Exception):
            writer.write(
                conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[("content-length", str(len(body))), ("connection", "close")],
                        reason=reason_phrase(status),
                    )
                )
                + conn.send(h11.Data(data=body))
                + conn.send(h11.EndOfMessage())
            )
            await writer.drain()

    async def _write_response(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response
    ) -> bool | None:
        """Write one response; return whether to keep the connection, None if aborted."""
        if response.first_byte_delay:
            await asyncio.sleep(response.first_byte_delay)
        headers = [
            (k, v)
            for k, v in response.headers
            if k.lower() not in ("content-length", "transfer-encoding")
        ]
        actions = response.actions
        if actions is None:
            actions = [Write(response.body)] if response.body else []
        if response.transfer == "chunked" and response.actions is not None:
            headers.append(("transfer-encoding", "chunked"))
        else:
            total = sum(len(a.data) for a in actions if isinstance(a, Write))
            headers.append(("content-length", str(total)))
        head = conn.send(
            h11.Response(
                status_code=response.status, headers=headers, reason=reason_phrase(response.status)
            )
        )
        writer.write(head)
        # A response that runs to its end counts as complete just before its last bytes go out,
        # so that a client which has read the whole response already sees its effect.
        writes = [i for i, a in enumerate(actions) if isinstance(a, Write) and a.data]
        last = writes[-1] if writes else -1
        completes = not any(isinstance(a, Abort) for a in actions)
        if completes and last < 0 and response.on_complete is not None:
            response.on_complete()
        for index, action in enumerate(actions):
            if isinstance(action, Write):
                if not action.data:
                    continue
                if completes and index == last and response.on_complete is not None:
                    response.on_complete()
                writer.write(conn.send(h11.Data(data=action.data)))
                await writer.drain()
            elif isinstance(action, Sleep):
                await writer.drain()
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Abort):
                await writer.drain()
                if response.reset_grace:
                    await asyncio.sleep(response.reset_grace)
                self._abort(writer, rst=action.rst)
                return None
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        return conn.our_state is h11.DONE

    @staticmethod
    def _abort(writer: asyncio.StreamWriter, *, rst: bool) -> None:
        """Cut the connection: RST (SO_LINGER 0 + abort) or a plain FIN."""
        sock = writer.get_extra_info("socket")
        if rst and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.transport.close()
