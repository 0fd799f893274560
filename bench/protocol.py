"""Benchmark the Kiro -> Anthropic stream path: decode + parse + translate, on one core.

Run: .venv/bin/python bench/protocol.py [--profile]

Two workloads: 10,000 small text events (plus a tool call and the trailing metering /
context / metadata events), and one ~2 MB text in a few hundred events. Upstream bytes are fed
in 1-4 KiB chunks, as an HTTP read would deliver them; each chunk's events are translated as
one `feed()`, the way the gateway writes one SSE chunk per upstream read (PERF-NOTES).
The bar: >= 100,000 events/s for decode + translate with small text events.
"""

from __future__ import annotations

import cProfile
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.protocol.anthropic_stream import StreamTranslator
from gateway.protocol.events import KiroEvent, parse_message
from gateway.protocol.eventstream import EventStreamDecoder, Message, encode_event
from gateway.protocol.translate import TranslateOptions

REPEATS = 7
WORDS = (
    "the",
    "model",
    "streams",
    "short",
    "deltas,",
    "usually",
    "a",
    "word",
    "or",
    "two",
    "at",
    "time.\n",
    "Üñïçødé",
    "代码",
)


def small_events_stream(count: int = 10_000) -> bytes:
    """Return `count` upstream frames: short text deltas, one tool call, trailing events."""
    rng = random.Random(7)
    frames = []
    text_events = count - 6
    for i in range(text_events):
        if i == text_events // 2:
            frames.append(
                encode_event(
                    "toolUseEvent",
                    {"name": "get_weather", "toolUseId": "tooluse_1", "input": '{"city":'},
                )
            )
            frames.append(
                encode_event(
                    "toolUseEvent",
                    {
                        "name": "get_weather",
                        "toolUseId": "tooluse_1",
                        "input": '"Paris"}',
                        "stop": True,
                    },
                )
            )
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        frames.append(encode_event("assistantResponseEvent", {"content": " " + words}))
    frames.append(encode_event("meteringEvent", {"unit": "credit", "usage": 0.0169}))
    frames.append(encode_event("contextUsageEvent", {"contextUsagePercentage": 12.5}))
    frames.append(
        encode_event(
            "metadataEvent",
            {"tokenUsage": {"uncachedInputTokens": 101, "outputTokens": 23}},
        )
    )
    frames.append(encode_event("meteringEvent", {"unit": "credit", "usage": 0.002}))
    return b"".join(frames)


def long_text_stream(total: int = 2_000_000, events: int = 300) -> bytes:
    """Return about `total` bytes of text in `events` assistantResponseEvents."""
    line = "Some long generated prose, with code `x < y` and a newline.\n"
    size = total // events
    piece = (line * (size // len(line) + 1))[:size]
    frames = [encode_event("assistantResponseEvent", {"content": piece}) for _ in range(events)]
    frames.append(encode_event("contextUsageEvent", {"contextUsagePercentage": 40.0}))
    return b"".join(frames)


def chunks(data: bytes, seed: int = 1) -> list[bytes]:
    """Cut bytes into 1-4 KiB reads."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1024, 4096)
        out.append(data[i : i + n])
        i += n
    return out


def options() -> TranslateOptions:
    return TranslateOptions(
        model="claude-sonnet-4-5-20250929",
        message_id="msg_0123456789abcdef0123456789abcdef",
        input_tokens=1200,
        declared_tools=frozenset({"get_weather"}),
    )


def run_full(reads: list[bytes]) -> int:
    """Decode, parse and translate every read; return the SSE bytes produced."""
    decoder = EventStreamDecoder()
    translator = StreamTranslator(options())
    size = len(translator.start())
    for read in reads:
        events = [
            event
            for item in decoder.feed(read)
            if type(item) is Message and (event := parse_message(item)) is not None
        ]
        size += len(translator.feed(events))
    size += len(translator.finish())
    return size


def run_decode(reads: list[bytes]) -> int:
    decoder = EventStreamDecoder()
    return sum(len(decoder.feed(read)) for read in reads)


def parsed_batches(reads: list[bytes]) -> list[list[KiroEvent]]:
    decoder = EventStreamDecoder()
    batches = []
    for read in reads:
        batch = []
        for item in decoder.feed(read):
            if type(item) is Message and (event := parse_message(item)) is not None:
                batch.append(event)
        batches.append(batch)
    return batches


def run_translate(batches: list[list[KiroEvent]]) -> int:
    translator = StreamTranslator(options())
    size = len(translator.start())
    for batch in batches:
        size += len(translator.feed(batch))
    return size + len(translator.finish())


def best(fn: Callable[[], object]) -> float:
    """Return the best CPU time of REPEATS runs.

    CPU time, not wall time: the shared 2-core machines run other test suites meanwhile.
    """
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def report(name: str, frames: int, upstream: int, seconds: float) -> None:
    print(
        f"  {name:<34} {frames / seconds:>12,.0f} events/s {upstream / seconds / 1e6:>9.1f} MB/s"
        f"   ({seconds * 1e3:.1f} ms)"
    )


def bench(title: str, data: bytes) -> None:
    reads = chunks(data)
    frames = run_decode(reads)
    batches = parsed_batches(reads)
    print(f"{title}: {frames:,} frames, {len(data) / 1e6:.2f} MB upstream, {len(reads)} reads")
    report("decode + parse + translate", frames, len(data), best(lambda: run_full(reads)))
    report("decode only", frames, len(data), best(lambda: run_decode(reads)))
    decoder = EventStreamDecoder()
    messages = [item for read in reads for item in decoder.feed(read) if type(item) is Message]
    report("parse_message only", frames, len(data), best(lambda: [*map(parse_message, messages)]))
    report(
        "translate only (parsed events)", frames, len(data), best(lambda: run_translate(batches))
    )


def main() -> None:
    small = small_events_stream()
    long = long_text_stream()
    if "--profile" in sys.argv:
        reads = chunks(small)
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [run_full(reads) for _ in range(3)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    bench("small text events", small)
    bench("long text (~2 MB)", long)


if __name__ == "__main__":
    main()
