"""Benchmark stock httpx against `build_client()` (LeanTransport) on local streaming responses.

Run: .venv/bin/python bench/transport.py [--quick]

A separate process serves chunked responses on 127.0.0.1, writing each ~100-byte chunk with
its own `write()`, so this process's CPU time is the client's alone. Two workloads:

- throughput: 50 concurrent streams x 2,000 chunks, as fast as the server writes them;
  reports chunks/s and MB/s (server chunks), client CPU per server chunk, and how many chunks
  the client's `aiter_raw()` yielded (LeanTransport yields one per socket read).
- paced: 100 streams x 200 chunks, 20 ms apart, so that nearly every read carries one chunk
  (token-paced upstream); reports client CPU per chunk, the figure PERF-NOTES compares.
- held: 1,000 concurrent slow streams, 20 chunks 50 ms apart each, must all complete.

Both clients get max_connections=2000 (PERF-NOTES: the default 100 queues the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from gateway.kiro.transport import build_client

CHUNK = b"data: " + b"x" * 92 + b"\n\n"  # 100 bytes, an SSE-sized event
FRAME = b"%x\r\n%b\r\n" % (len(CHUNK), CHUNK)
REPEATS = 3


# --- server (child process) ---------------------------------------------------------------


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer GET /?n=&delay= requests with n chunks, each written on its own."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            query = parse_qs(urlsplit(head.split(b" ")[1].decode()).query)
            count = int(query["n"][0])
            delay = float(query.get("delay", ["0"])[0])
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(count):
                writer.write(FRAME)
                if delay:
                    await asyncio.sleep(delay)
                elif i % 16 == 15:
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass  # client gone, or shutdown
    finally:
        writer.transport.abort()


async def _serve() -> None:
    """Serve until stdin closes; print the port first."""
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


# --- clients ------------------------------------------------------------------------------


def stock_client() -> httpx.AsyncClient:
    """Build httpx's default client, sized like the gateway's."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits, trust_env=False)


def lean_client() -> httpx.AsyncClient:
    """Build the gateway's client on LeanTransport."""
    return build_client(verify=ssl.create_default_context(), timeout=httpx.Timeout(30.0))


async def _stream(client: httpx.AsyncClient, url: str) -> tuple[int, int]:
    """Read one response; return (bytes, chunks yielded)."""
    size = chunks = 0
    async with client.stream("GET", url) as response:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            chunks += 1
    return size, chunks


async def throughput(
    make: Callable[[], httpx.AsyncClient], url: str, streams: int, n: int, repeats: int
) -> tuple[float, float, int, int]:
    """Run `streams` concurrent streams of `n` chunks; return the fastest of `repeats`."""
    best = None
    async with make() as client:
        await _stream(client, url.split("?")[0] + "?n=10")  # warm up: connect, lazy imports
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(_stream(client, url) for _ in range(streams)))
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            total_bytes = sum(r[0] for r in results)
            yielded = sum(r[1] for r in results)
            assert total_bytes == streams * n * len(CHUNK), total_bytes
            run = (wall, cpu, total_bytes, yielded)
            if best is None or run[0] < best[0]:
                best = run
    assert best is not None
    return best


async def held(
    make: Callable[[], httpx.AsyncClient], base: str, streams: int, n: int
) -> tuple[int, int, float, str]:
    """Hold `streams` slow streams at once; return (completed, errors, wall, first error)."""
    url = f"{base}/?n={n}&delay=0.05"
    async with make() as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_stream(client, url) for _ in range(streams)), return_exceptions=True
        )
        wall = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    completed = sum(1 for r in results if not isinstance(r, BaseException) and r[0] == n * 100)
    first = f"{type(errors[0]).__name__}: {errors[0]}" if errors else ""
    return completed, len(errors), wall, first


async def main(quick: bool) -> None:
    """Start the server, run both workloads for both clients, print tables."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        workloads = (
            ("throughput", *((10, 500) if quick else (50, 2000)), 0.0, REPEATS),
            ("paced", *((50, 50) if quick else (100, 200)), 0.02, 1),
        )
        for title, streams, n, delay, repeats in workloads:
            print(f"{title}: {streams} concurrent streams x {n:,} chunks of {len(CHUNK)} B", end="")
            print(f", {delay * 1000:.0f} ms apart" if delay else ", back to back", end="")
            print(f" (best of {repeats}; CPU = client process, per chunk the server wrote)\n")
            print(
                f"{'client':<22} {'chunks/s':>10} {'MB/s':>7} {'CPU/chunk':>10} "
                f"{'yielded':>9} {'CPU/yield':>10}"
            )
            url = f"{base}/?n={n}&delay={delay}"
            for name, make in (("stock httpx", stock_client), ("LeanTransport", lean_client)):
                wall, cpu, total, yielded = await throughput(make, url, streams, n, repeats)
                chunks = streams * n
                print(
                    f"{name:<22} {chunks / wall:>10,.0f} {total / wall / 1e6:>7.1f} "
                    f"{cpu / chunks * 1e6:>8.2f}µs {yielded:>9,} {cpu / yielded * 1e6:>8.2f}µs"
                )
            print()
        held_streams = 200 if quick else 1000
        print(f"held: {held_streams:,} concurrent streams x 20 chunks, 50 ms apart\n")
        print(f"{'client':<22} {'completed':>10} {'errors':>7} {'wall':>7}")
        for name, make in (("stock httpx", stock_client), ("LeanTransport", lean_client)):
            completed, errors, wall, first = await held(make, base, held_streams, 20)
            print(f"{name:<22} {completed:>10,} {errors:>7,} {wall:>6.1f}s {first}")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for a smoke test")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(_serve() if args.serve else main(args.quick))
