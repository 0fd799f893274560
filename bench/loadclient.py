"""The benchmarks' load client: a streamed request read to its end, its events counted and timed.

Runs on asyncio with the gateway's own lean transport (`gateway.kiro.transport.build_client`):
SSE events from the gateway, event-stream frames (decoded with `EventStreamDecoder`) from the
fake. Also the figures drawn from its results: percentiles and a summary of the errors.
"""

from __future__ import annotations

import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from gateway.kiro.transport import build_client
from gateway.protocol.eventstream import EventStreamDecoder, Message

SSE_SEP = b"\n\n"
DELTA_MARK = b"event: content_block_delta"
# A chat.completion.chunk carrying text (the role chunk has `"delta":{"role"`).
CHAT_DELTA_MARK = b'"delta":{"content":'
CONTENT_EVENT = "assistantResponseEvent"


@dataclass(frozen=True)
class Target:
    """Where one variant sends its requests and how its answer is counted."""

    name: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    sse: bool  # True: the gateway's SSE; False: the fake's event stream
    pid: int | None  # the proxy process, None for direct
    mark: bytes = DELTA_MARK  # what starts a content event in the gateway's SSE
    health_url: str = ""  # the gateway's health port (KIRO_HEALTH_PORT), "" for direct
    # False: a complete stream counts however many content events it has (a gateway that
    # sends the answer in one piece still gets a time to first event, its whole latency).
    exact: bool = True


@dataclass
class StreamResult:
    ok: bool = False
    error: str = ""
    events: int = 0
    content: int = 0
    first: float | None = None  # seconds from send to the first content event
    total: float = 0.0
    gaps: list[float] = field(default_factory=list)
    detail: str = ""  # the start of an error answer's body


async def one_stream(
    client: httpx.AsyncClient, target: Target, expect: int, *, gaps: bool = False
) -> StreamResult:
    """Send one request, read the stream to its end, count events and time them."""
    result = StreamResult()
    started = time.perf_counter()
    last: float | None = None
    try:
        async with client.stream(
            "POST", target.url, headers=target.headers, content=target.body
        ) as response:
            if response.status_code != 200:
                result.detail = (await response.aread())[:300].decode("utf-8", "replace")
                result.error = f"HTTP {response.status_code}"
                return result
            if target.sse:
                carry = b""
                ends_nl = False
                async for chunk in response.aiter_raw():
                    now = time.perf_counter()
                    result.events += chunk.count(SSE_SEP) + (ends_nl and chunk[:1] == b"\n")
                    ends_nl = chunk[-1:] == b"\n"
                    window = carry + chunk
                    n = window.count(target.mark)
                    carry = window[-(len(target.mark) - 1) :]
                    if n:
                        if result.first is None:
                            result.first = now - started
                        elif gaps and last is not None:
                            result.gaps.append(now - last)
                        if gaps:
                            result.gaps.extend([0.0] * (n - 1))
                        last = now
                        result.content += n
            else:
                decoder = EventStreamDecoder()
                async for chunk in response.aiter_raw():
                    now = time.perf_counter()
                    n = 0
                    for item in decoder.feed(chunk):
                        if type(item) is Message:
                            result.events += 1
                            if item.event_type == CONTENT_EVENT:
                                n += 1
                    if n:
                        if result.first is None:
                            result.first = now - started
                        elif gaps and last is not None:
                            result.gaps.append(now - last)
                        if gaps:
                            result.gaps.extend([0.0] * (n - 1))
                        last = now
                        result.content += n
    except (httpx.HTTPError, OSError) as exc:
        result.error = type(exc).__name__
        return result
    result.total = time.perf_counter() - started
    result.ok = result.content == expect if target.exact else result.content > 0
    if not result.ok:
        result.error = f"incomplete ({result.content}/{expect} content events)"
    return result


def new_client(limit: int, *, read: float = 30.0) -> httpx.AsyncClient:
    return build_client(
        verify=ssl.create_default_context(),
        timeout=httpx.Timeout(connect=15.0, read=read, write=15.0, pool=30.0),
        max_connections=limit,
    )


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def errors_summary(results: list[StreamResult]) -> str:
    counts = Counter(r.error for r in results if not r.ok)
    return ", ".join(f"{n}x {e}" for e, n in counts.most_common(4))
