"""Many concurrent slow streams complete (benchmarks drive a thousand)."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.fakekiro import FakeKiro, Script
from gateway.protocol.events import AssistantResponse
from tests.fakekiro.builders import auth_headers, events, simple_body

STREAMS = 200


async def _run() -> tuple[list[bytes], float]:
    async with FakeKiro() as fake:
        account = fake.add_account("bench")
        fake.script(Script.text("0123456789", chunks=10).paced(0.02), times=None)
        limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=limits) as client:

            async def one() -> bytes:
                response = await client.post(
                    f"{fake.base_url}/generateAssistantResponse",
                    json=simple_body(),
                    headers=auth_headers(account.access_token or ""),
                )
                response.raise_for_status()
                return response.content

            started = time.monotonic()
            bodies = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(STREAMS))), 30)
            return bodies, time.monotonic() - started


def test_it_serves_200_concurrent_slow_streams() -> None:
    bodies, elapsed = asyncio.run(_run())

    expected = [AssistantResponse(c) for c in "0123456789"]
    assert all(events(b) == expected for b in bodies)
    assert elapsed < 15  # serially this would take 200 x 0.18 s = 36 s
