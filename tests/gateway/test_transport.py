"""LeanTransport against raw asyncio servers on 127.0.0.1 whose bytes the tests control."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.kiro.transport import LeanTransport, build_client

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUT = httpx.Timeout(5.0)


class RawServer:
    """Serve one handler per connection on 127.0.0.1 and count the connections accepted."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.tasks: set[asyncio.Task] = set()
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(
            self._on_connect, "127.0.0.1", 0, ssl=self.tls, backlog=4096
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.tasks.discard(task)
            writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one request: its head and its de-chunked body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    body = b""
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
    elif b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    return head, body


def respond(body: bytes = b"hello", *, extra: bytes = b"") -> bytes:
    """Build a content-length response."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def chunked(*pieces: bytes) -> bytes:
    """Frame pieces as an HTTP/1.1 chunked body, terminator included."""
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def keep_alive_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with its path as body."""
    while True:
        head, _ = await read_request(reader)
        writer.write(respond(head.split(b" ")[1]))


def lean_client(**kwargs: object) -> tuple[httpx.AsyncClient, LeanTransport]:
    """Build a client on a LeanTransport and hand back both."""
    transport = LeanTransport(**kwargs)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, timeout=TIMEOUT, trust_env=False), transport


# --- body framing -----------------------------------------------------------------------


async def test_it_reads_a_content_length_body():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(respond(b"x" * 10_000, extra=b"X-Mixed-Case: Yes\r\n"))
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        response = await client.get(server.url + "/")

    assert response.status_code == 200
    assert response.content == b"x" * 10_000
    assert response.headers["x-mixed-case"] == "Yes"
    assert response.http_version == "HTTP/1.1"
    assert response.reason_phrase == "OK"


async def test_it_reads_a_chunked_body_delivered_in_odd_slices():
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        b"alpha", b"b" * 300, b"gamma"
    )

    async def handler(reader, writer):
        await read_request(reader)
        for start in range(0, len(wire), 7):  # slices cut through sizes, CRLFs and data
            writer.write(wire[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0.001)
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        response = await client.get(server.url)

    assert response.content == b"alpha" + b"b" * 300 + b"gamma"


async def test_it_reads_a_close_delimited_body():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"the end")
        await writer.drain()
        writer.close()

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        response = await client.get(server.url)

    assert response.content == b"until the end"
    assert transport.stats().connections == 0


async def test_it_yields_all_pieces_of_one_read_as_one_chunk():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(chunked(b"one,", b"two,", b"three"))  # one segment, three chunks
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client, client.stream("GET", server.url) as response:
        chunks = [chunk async for chunk in response.aiter_raw()]

    assert chunks == [b"one,two,three"]


async def test_it_yields_data_as_soon_as_it_arrives():
    second_sent = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        second_sent.set()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client, client.stream("GET", server.url) as response:
        chunks = response.aiter_raw()
        first = await anext(chunks)
        first_before_second = not second_sent.is_set()
        second = await anext(chunks)

    assert (first, second) == (b"first", b"second")
    assert first_before_second


async def test_it_skips_an_interim_100_response():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + respond(b"final"))
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        response = await client.get(server.url)

    assert (response.status_code, response.content) == (200, b"final")


async def test_it_ends_a_head_response_at_its_head_and_reuses_the_connection():
    async def handler(reader, writer):
        while True:
            head, _ = await read_request(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                writer.write(respond(b"after head"))

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        head = await client.head(server.url)
        after = await client.get(server.url)

    assert (head.headers["content-length"], head.content) == ("1234", b"")
    assert after.content == b"after head"
    assert server.accepted == 1


# --- requests ---------------------------------------------------------------------------


async def test_it_sends_headers_in_order_and_case_and_a_length_body():
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader, writer):
        seen.append(await read_request(reader))
        writer.write(respond())
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        await client.post(
            server.url + "/v1/x?q=1",
            content=b"payload",
            headers=[("X-First", "1"), ("x-second", "2"), ("X-THIRD", "3")],
        )

    head, body = seen[0]
    assert head.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n")
    assert head.index(b"X-First: 1") < head.index(b"x-second: 2") < head.index(b"X-THIRD: 3")
    assert b"Content-Length: 7\r\n" in head
    assert body == b"payload"


async def test_it_sends_a_streamed_body_chunked():
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader, writer):
        seen.append(await read_request(reader))
        writer.write(respond())
        await asyncio.sleep(1)

    async def body():
        for part in (b"ab", b"", b"cde", b"f" * 70_000):
            yield part

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        await client.post(server.url, content=body())

    head, received = seen[0]
    assert b"Transfer-Encoding: chunked" in head
    assert received == b"abcde" + b"f" * 70_000


async def test_it_refuses_a_header_value_with_a_newline():
    client, _ = lean_client()
    async with RawServer(keep_alive_handler) as server, client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(server.url, headers={"X-Evil": "a\r\nInjected: 1"})


# --- connection reuse -------------------------------------------------------------------


async def test_it_serves_two_requests_on_one_kept_alive_connection():
    client, transport = lean_client()
    async with RawServer(keep_alive_handler) as server, client:
        first = await client.get(server.url + "/one")
        second = await client.get(server.url + "/two")
        stats = transport.stats()

    assert (first.content, second.content) == (b"/one", b"/two")
    assert server.accepted == 1
    assert (stats.connections, stats.idle) == (1, 1)


async def test_it_does_not_reuse_a_connection_the_server_marked_close():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(respond(extra=b"Connection: close\r\n"))
        await asyncio.sleep(1)

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        await client.get(server.url)
        await client.get(server.url)
        stats = transport.stats()

    assert server.accepted == 2
    assert stats.connections == 0


async def test_it_does_not_reuse_a_connection_the_client_marked_close():
    client, _ = lean_client()
    async with RawServer(keep_alive_handler) as server, client:
        await client.get(server.url, headers={"Connection": "close"})
        await client.get(server.url)

    assert server.accepted == 2


async def test_it_replaces_an_idle_connection_the_server_closed():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(respond())
        await writer.drain()
        writer.close()  # keep-alive advertised, then closed while idle

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        await client.get(server.url)
        await asyncio.sleep(0.1)
        idle_after_close = transport.stats().idle
        response = await client.get(server.url)

    assert response.content == b"hello"
    assert idle_after_close == 0
    assert server.accepted == 2


async def test_it_replays_a_get_when_a_reused_connection_dies_unanswered():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(respond(b"first"))
        await read_request(reader)  # the second request on this connection: hang up
        writer.transport.abort()

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        await client.get(server.url)
        response = await client.get(server.url)

    assert response.content == b"first"
    assert server.accepted == 2


async def test_it_does_not_replay_a_post_once_it_was_sent():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(respond(b"first"))
        await read_request(reader)
        writer.close()

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        await client.post(server.url, content=b"a")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(server.url, content=b"b")

    assert server.accepted == 1


async def test_it_closes_idle_connections_after_the_keepalive_expiry():
    client, transport = lean_client(keepalive_expiry=0.1)
    async with RawServer(keep_alive_handler) as server, client:
        await client.get(server.url)
        await asyncio.sleep(0.3)
        stats = transport.stats()
        await client.get(server.url)

    assert (stats.connections, stats.idle) == (0, 0)
    assert server.accepted == 2


# --- failures ---------------------------------------------------------------------------


async def test_it_raises_read_error_when_the_server_resets_mid_body():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # SO_LINGER 0: close sends RST

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        async with client.stream("GET", server.url) as response:
            with pytest.raises(httpx.ReadError):
                await response.aread()
        stats = transport.stats()

    assert stats.connections == 0


async def test_it_raises_remote_protocol_error_on_eof_mid_body():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        writer.close()

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)
        stats = transport.stats()

    assert stats.connections == 0


async def test_it_raises_remote_protocol_error_on_a_malformed_response():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await asyncio.sleep(1)

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)

    assert transport.stats().connections == 0


async def test_it_raises_read_timeout_when_the_server_goes_silent():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(10)

    client, transport = lean_client()
    timeout = httpx.Timeout(5.0, read=0.2)
    async with RawServer(handler) as server, client:
        started = time.monotonic()
        async with client.stream("GET", server.url, timeout=timeout) as response:
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()
        elapsed = time.monotonic() - started
        stats = transport.stats()

    assert 0.15 < elapsed < 2
    assert stats.connections == 0


async def test_it_resets_the_read_timeout_whenever_data_arrives():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.6 s in all, never 0.2 s of silence
            await asyncio.sleep(0.1)
            writer.write(b"1\r\n.\r\n")
        writer.write(b"0\r\n\r\n")
        await asyncio.sleep(1)

    client, _ = lean_client()
    async with RawServer(handler) as server, client:
        response = await client.get(server.url, timeout=httpx.Timeout(5.0, read=0.25))

    assert response.content == b"......"


async def test_it_raises_connect_error_on_a_closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused

        client, transport = lean_client()
        async with client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")

    assert transport.stats().connections == 0


# --- pool limit and cancellation --------------------------------------------------------


async def test_it_waits_for_a_pool_slot_then_times_out():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n.\r\n")
        await asyncio.sleep(0.3)
        writer.write(b"0\r\n\r\n")
        await keep_alive_handler(reader, writer)

    client, transport = lean_client(max_connections=1)
    async with RawServer(handler) as server, client:
        held = await client.send(client.build_request("GET", server.url), stream=True)
        with pytest.raises(httpx.PoolTimeout):
            await client.get(server.url, timeout=httpx.Timeout(5.0, pool=0.1))
        waiting = asyncio.create_task(client.get(server.url + "/waited"))
        await asyncio.sleep(0.05)
        waiters = transport.stats().waiting
        await held.aread()
        await held.aclose()
        response = await asyncio.wait_for(waiting, 5)

    assert waiters == 1
    assert response.content == b"/waited"
    assert server.accepted == 1  # the waiter got the released connection


async def test_it_hands_a_slot_to_a_waiter_for_another_host():
    client, transport = lean_client(max_connections=1)
    async with (
        RawServer(keep_alive_handler) as one,
        RawServer(keep_alive_handler) as two,
        client,
    ):
        await client.get(one.url + "/a")  # leaves an idle connection to `one`
        response = await client.get(two.url + "/b")  # evicts it to stay at the limit
        stats = transport.stats()

    assert response.content == b"/b"
    assert (stats.connections, stats.idle) == (1, 1)


async def test_it_closes_the_connection_when_a_reader_is_cancelled():
    reader_waiting = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n.\r\n")
        await asyncio.sleep(10)

    client, transport = lean_client()

    async def consume(url: str) -> None:
        async with client.stream("GET", url) as response:
            async for _ in response.aiter_raw():
                reader_waiting.set()

    async with RawServer(handler) as server, client:
        task = asyncio.create_task(consume(server.url))
        await asyncio.wait_for(reader_waiting.wait(), 5)
        during = transport.stats().connections
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = transport.stats()

    assert during == 1
    assert (after.connections, after.idle, after.waiting) == (0, 0, 0)


async def test_it_frees_the_slot_when_cancelled_while_waiting_for_headers():
    async def handler(reader, writer):
        await read_request(reader)
        await asyncio.sleep(10)

    client, transport = lean_client()
    async with RawServer(handler) as server, client:
        task = asyncio.create_task(client.get(server.url))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = transport.stats()

    assert stats.connections == 0


async def test_aclose_closes_busy_and_idle_connections():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n.\r\n")
        await asyncio.sleep(10)

    client, transport = lean_client()
    async with RawServer(keep_alive_handler) as idle_server, RawServer(handler) as busy_server:
        await client.get(idle_server.url)
        busy = await client.send(client.build_request("GET", busy_server.url), stream=True)
        await transport.aclose()
        started = time.monotonic()
        with pytest.raises(httpx.ReadError):
            await busy.aread()
        elapsed = time.monotonic() - started

    assert elapsed < 1  # failed at once, not after the 5 s read timeout
    assert transport.stats().connections == 0


async def test_it_completes_1000_concurrent_streams():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            writer.write(b"4\r\ndata\r\n")
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")
        await keep_alive_handler(reader, writer)

    client = build_client(verify=ssl.create_default_context(), timeout=httpx.Timeout(20.0))

    async def one(url: str) -> bytes:
        async with client.stream("GET", url) as response:
            return b"".join([chunk async for chunk in response.aiter_raw()])

    async with RawServer(handler) as server, client:
        started = time.monotonic()
        bodies = await asyncio.wait_for(asyncio.gather(*(one(server.url) for _ in range(1000))), 20)
        elapsed = time.monotonic() - started

    assert bodies == [b"data" * 5] * 1000
    assert elapsed < 15


# --- TLS --------------------------------------------------------------------------------


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Make a self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "transport test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def server_context(tmp_path, ca: tuple, names: list[x509.GeneralName]) -> ssl.SSLContext:
    """Make a server TLS context with a leaf for `names`, signed by `ca`."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = tmp_path / "server.pem"
    key_path = tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture(scope="module")
def ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return make_ca()


@pytest.fixture
def trusting(ca) -> ssl.SSLContext:
    """Return a client context that trusts only the test CA."""
    return ssl.create_default_context(
        cadata=ca[1].public_bytes(serialization.Encoding.PEM).decode()
    )


@pytest.fixture
def tls_server_context(tmp_path, ca) -> ssl.SSLContext:
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return server_context(tmp_path, ca, names)


async def test_it_speaks_tls_to_a_server_signed_by_a_trusted_ca(tls_server_context, trusting):
    client, _ = lean_client(verify=trusting)
    async with RawServer(keep_alive_handler, tls=tls_server_context) as server, client:
        first = await client.get(server.url + "/secure")
        second = await client.get(server.url + "/again")

    assert (first.content, second.content) == (b"/secure", b"/again")
    assert server.accepted == 1


async def test_it_refuses_tls_from_an_untrusted_ca(tls_server_context):
    client, transport = lean_client(verify=ssl.create_default_context())
    async with RawServer(keep_alive_handler, tls=tls_server_context) as server, client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(server.url)

    assert transport.stats().connections == 0


async def test_it_refuses_tls_for_a_name_the_certificate_does_not_cover(tmp_path, ca, trusting):
    wrong_name = server_context(tmp_path, ca, [x509.DNSName("elsewhere.test")])
    client, _ = lean_client(verify=trusting)
    async with RawServer(keep_alive_handler, tls=wrong_name) as server, client:
        with pytest.raises(httpx.ConnectError, match="mismatch"):
            await client.get(server.url)


# --- proxies ----------------------------------------------------------------------------


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until EOF."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def splice(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """Connect to host:port (loopback only) and copy bytes both ways."""
    assert host in ("127.0.0.1", "localhost")
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class HttpProxy:
    """A CONNECT / absolute-form proxy that demands Basic credentials."""

    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode())
        self.expected = b"Proxy-Authorization: Basic " + token
        self.request_lines: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.request_lines.append(head.split(b"\r\n")[0])
        if self.expected not in head:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        method, target, _ = head.split(b"\r\n")[0].split(b" ")
        if method == b"CONNECT":
            host, port = target.decode().rsplit(":", 1)
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await splice(reader, writer, host, int(port))
        else:
            writer.write(respond(b"proxied " + target))
            await writer.drain()


async def test_it_tunnels_https_through_an_http_proxy_with_basic_auth(tls_server_context, trusting):
    proxy = HttpProxy("user", "pa:ss")
    async with (
        RawServer(keep_alive_handler, tls=tls_server_context) as target,
        RawServer(proxy) as proxy_server,
    ):
        client, _ = lean_client(
            verify=trusting, proxy=proxy_server.url, proxy_auth=("user", "pa:ss")
        )
        async with client:
            first = await client.get(f"https://localhost:{target.port}/tunnelled")
            second = await client.get(f"https://localhost:{target.port}/again")

    assert (first.content, second.content) == (b"/tunnelled", b"/again")
    assert proxy.request_lines == [f"CONNECT localhost:{target.port} HTTP/1.1".encode()]


async def test_it_tunnels_tls_inside_tls_through_an_https_proxy(tls_server_context, trusting):
    proxy = HttpProxy("user", "pw")
    async with (
        RawServer(keep_alive_handler, tls=tls_server_context) as target,
        RawServer(proxy, tls=tls_server_context) as proxy_server,
    ):
        client, _ = lean_client(verify=trusting, proxy=proxy_server.url, proxy_auth=("user", "pw"))
        async with client:
            response = await client.get(f"https://localhost:{target.port}/tls-in-tls")

    assert proxy_server.url.startswith("https://")
    assert response.content == b"/tls-in-tls"


async def test_it_takes_proxy_credentials_from_the_url(tls_server_context, trusting):
    proxy = HttpProxy("user", "secret")
    async with (
        RawServer(keep_alive_handler, tls=tls_server_context) as target,
        RawServer(proxy) as proxy_server,
    ):
        proxy_url = f"http://user:secret@127.0.0.1:{proxy_server.port}"
        client, _ = lean_client(verify=trusting, proxy=proxy_url)
        async with client:
            response = await client.get(f"https://127.0.0.1:{target.port}/url-auth")

    assert response.content == b"/url-auth"


async def test_it_raises_proxy_error_when_the_proxy_refuses_credentials(
    tls_server_context, trusting
):
    proxy = HttpProxy("user", "right")
    async with (
        RawServer(keep_alive_handler, tls=tls_server_context) as target,
        RawServer(proxy) as proxy_server,
    ):
        client, transport = lean_client(
            verify=trusting, proxy=proxy_server.url, proxy_auth=("user", "wrong")
        )
        async with client:
            with pytest.raises(httpx.ProxyError, match="407"):
                await client.get(f"https://localhost:{target.port}/")

    assert transport.stats().connections == 0


async def test_it_sends_plain_http_through_a_proxy_in_absolute_form():
    proxy = HttpProxy("user", "pw")
    async with RawServer(proxy) as proxy_server:
        client, _ = lean_client(proxy=proxy_server.url, proxy_auth=("user", "pw"))
        async with client:
            response = await client.get("http://upstream.test:8080/plain?x=1")

    assert response.content == b"proxied http://upstream.test:8080/plain?x=1"


class Socks5Proxy:
    """A SOCKS5 server (RFC 1928) with username/password auth (RFC 1929)."""

    def __init__(self, username: bytes, password: bytes) -> None:
        self.credentials = (username, password)
        self.destinations: list[tuple[str, int]] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5 or 2 not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x02")
        _, user_len = await reader.readexactly(2)
        username = await reader.readexactly(user_len)
        password = await reader.readexactly((await reader.readexactly(1))[0])
        if (username, password) != self.credentials:
            writer.write(b"\x01\x01")
            await writer.drain()
            return
        writer.write(b"\x01\x00")
        _, _, _, address_type = await reader.readexactly(4)  # CONNECT assumed
        if address_type == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif address_type == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            writer.write(b"\x05\x08\x00\x01" + bytes(6))
            return
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        self.destinations.append((host, port))
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await splice(reader, writer, host, port)


async def test_it_speaks_tls_through_a_socks5_proxy_with_credentials(tls_server_context, trusting):
    socks = Socks5Proxy(b"alice", b"s3cret")
    async with (
        RawServer(keep_alive_handler, tls=tls_server_context) as target,
        RawServer(socks) as socks_server,
    ):
        client, _ = lean_client(
            verify=trusting,
            proxy=f"socks5://127.0.0.1:{socks_server.port}",
            proxy_auth=("alice", "s3cret"),
        )
        async with client:
            response = await client.get(f"https://127.0.0.1:{target.port}/socks")

    assert response.content == b"/socks"
    assert socks.destinations == [("127.0.0.1", target.port)]


async def test_it_lets_a_socks5h_proxy_resolve_the_name(tls_server_context, trusting):
    socks = Socks5Proxy(b"alice", b"s3cret")
    async with (
        RawServer(keep_alive_handler, tls=tls_server_context) as target,
        RawServer(socks) as socks_server,
    ):
        proxy_url = f"socks5h://alice:s3cret@127.0.0.1:{socks_server.port}"
        client, _ = lean_client(verify=trusting, proxy=proxy_url)
        async with client:
            response = await client.get(f"https://localhost:{target.port}/by-name")

    assert response.content == b"/by-name"
    assert socks.destinations == [("localhost", target.port)]


async def test_it_raises_proxy_error_when_socks5_refuses_credentials(trusting):
    socks = Socks5Proxy(b"alice", b"s3cret")
    async with RawServer(socks) as socks_server:
        client, transport = lean_client(
            verify=trusting,
            proxy=f"socks5://127.0.0.1:{socks_server.port}",
            proxy_auth=("alice", "wrong"),
        )
        async with client:
            with pytest.raises(httpx.ProxyError):
                await client.get("https://127.0.0.1:9/")

    assert transport.stats().connections == 0
