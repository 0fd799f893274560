"""The HTTP layer: malformed requests, keep-alive and shutdown."""

from __future__ import annotations

import socket

import httpx
import pytest

from gateway.fakekiro.server import FakeKiroThread
from tests.fakekiro.builders import TIMEOUT


def _raw(fake: FakeKiroThread, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_it_answers_a_malformed_request_with_400(fake_kiro: FakeKiroThread) -> None:
    answer = _raw(fake_kiro, b"NOT HTTP AT ALL\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 ")


def test_it_closes_after_a_connection_close_request(fake_kiro: FakeKiroThread) -> None:
    answer = _raw(
        fake_kiro,
        b"GET /__fake__/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"ok":true}')


def test_it_serves_pipelined_requests_on_one_connection(fake_kiro: FakeKiroThread) -> None:
    one = b"GET /__fake__/health HTTP/1.1\r\nhost: x\r\n\r\n"
    last = b"GET /__fake__/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"

    answer = _raw(fake_kiro, one + one + last)

    assert answer.count(b"HTTP/1.1 200 OK") == 3


def test_it_stops_and_frees_its_port() -> None:
    with FakeKiroThread() as fake:
        port = fake.port
        assert httpx.get(f"{fake.base_url}/__fake__/health", timeout=TIMEOUT).status_code == 200

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/__fake__/health", timeout=1)
