"""How the gateway scales with processes: 1, 2 and 4 `manage.py serve` workers side by side.

Run: .venv/bin/python bench/scale.py [--workers 1,2,4] [--seconds 5] [--db postgres|sqlite]

Starts the fake Kiro upstream and, for each worker count in turn, `manage.py serve --workers N
--no-jobs` (uvicorn workers on one port, the production command) on one fresh Postgres
database and one Redis database of its own (REDIS_URL, flushed), as a production deployment
runs. For each it measures, from a load client in this process:

1. short requests: non-streamed `/v1/messages` with a five-word answer, 64 clients for a
   fixed time: requests/s, latency p50 / p99, errors, and the gateway's CPU per request
   (all its worker processes, from /proc);
2. events: 50 concurrent streams of 200 events for a fixed time: SSE events/s received.

The fake, the client and the workers share this machine's cores (`nproc`), so more workers
than cores add no capacity here: the figures show where the curve flattens on this box, and
the ratio between columns is what travels (PERF-NOTES).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# The project first (its `gateway` package, not bench/gateway.py), then this folder's modules,
# which a script's folder on the path gives, but runpy.run_path does not.
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import harness  # noqa: E402
import httpx  # noqa: E402
from loadclient import Target, new_client, pct  # noqa: E402
from phases import QUICK, phase_throughput  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"  # the bench's own Redis database, flushed
SHORT_CLIENTS = 64
STREAMS = 50
STREAM_EVENTS = 200


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn's workers and their children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in descendants(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += harness.cpu_seconds(p)
    return total


@dataclass
class Short:
    requests: int
    errors: int
    wall: float
    p50: float
    p99: float
    cpu_per_request: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall if self.wall else 0.0


async def phase_short(url: str, key: str, seconds: float, pid: int) -> Short:
    body = json.dumps({**harness.ANTHROPIC_BODY, "stream": False}).encode()
    headers = [
        ("x-api-key", key),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ]
    latencies: list[float] = []
    errors = 0
    async with new_client(SHORT_CLIENTS * 2) as client:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await client.post(url, headers=headers, content=body)
                ok = response.status_code == 200
            except (httpx.HTTPError, OSError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

        await asyncio.gather(*(one() for _ in range(SHORT_CLIENTS)))  # warm-up
        latencies.clear()
        errors = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one()

        cpu0 = tree_cpu(pid)
        started = time.perf_counter()
        async with asyncio.timeout(seconds + 60):
            await asyncio.gather(*(worker() for _ in range(SHORT_CLIENTS)))
        wall = time.perf_counter() - started
        cpu = tree_cpu(pid) - cpu0
    done = len(latencies)
    return Short(
        requests=done,
        errors=errors,
        wall=wall,
        p50=pct(latencies, 50) * 1000,
        p99=pct(latencies, 99) * 1000,
        cpu_per_request=cpu / done * 1000 if done else float("nan"),
    )


def flush_redis() -> None:
    import redis

    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    server.flushdb()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    harness.raise_fd_limit()
    began = time.monotonic()
    busy0 = harness.machine_busy()
    results: dict[int, tuple[Short | None, object | None, str]] = {}

    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="kiro-scale-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        tokens = harness.bench_tokens()
        fake_proc, fake = harness.start_fake(tmp, stack)
        fake_url = fake.base_url

        db = harness.create_database(args.db)
        stack.callback(harness.drop_database, db)
        data_dir = tmp / "data"
        data_dir.mkdir()
        env = harness.gateway_env(db, data_dir, secrets.token_urlsafe(50), fake_url)
        env.update(REDIS_URL=REDIS_URL, WEB_CONCURRENCY="1")
        flush_redis()
        stack.callback(flush_redis)
        print("setting up the database (migrate, credential, client key) ...", file=sys.stderr)
        harness.prepare_fake(fake, tokens, harness.text_script(5), validate=True)
        setup = harness.run_setup(env, tokens)
        plan = dataclasses.replace(
            QUICK,
            tput_streams=STREAMS,
            tput_events=STREAM_EVENTS,
            tput_seconds=args.seconds,
            phases=("tput",),
        )

        for n in counts:
            port = harness.free_port()
            command = [harness.PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
            child = harness.Child(
                f"serve-{n}", [*command, "--workers", str(n), "--no-jobs"], env, tmp
            )
            try:
                harness.wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout=60)
                url = f"http://127.0.0.1:{port}/v1/messages"
                print(f"measuring {n} worker(s) ...", file=sys.stderr)
                harness.prepare_fake(fake, tokens, harness.text_script(5), validate=False)
                short = asyncio.run(phase_short(url, setup["key"], args.seconds, child.pid))
                harness.prepare_fake(
                    fake, tokens, harness.text_script(STREAM_EVENTS), validate=False
                )
                target = Target(
                    f"{n}",
                    url,
                    [
                        ("x-api-key", setup["key"]),
                        ("anthropic-version", "2023-06-01"),
                        ("content-type", "application/json"),
                    ],
                    json.dumps(harness.ANTHROPIC_BODY).encode(),
                    sse=True,
                    pid=child.pid,
                )
                tput = asyncio.run(phase_throughput(target, plan, fake_proc.pid))
                tput.proxy_cpu = None  # measured per tree in the short phase only
                results[n] = (short, tput, "")
            except Exception as exc:  # report the other counts even if one fails
                results[n] = (None, None, f"{type(exc).__name__}: {exc}"[:160])
                print(f"{n} workers failed: {exc}\n{child.log_tail()}", file=sys.stderr)
            finally:
                child.stop()

        wall = time.monotonic() - began
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped by now
        ours = harness.self_cpu() + harness.cpu_seconds(fake_proc.pid)
        ours += children.ru_utime + children.ru_stime
        foreign = max(0.0, harness.machine_busy() - busy0 - ours) / (wall * (os.cpu_count() or 1))
        print(
            f"kiro-gateway bench/scale.py ({wall:.0f} s): manage.py serve (uvicorn "
            f"{harness.version('uvicorn')}) on {db.describe(data_dir)} + Redis, "
            f"{os.cpu_count()} CPUs shared by the fake, the client and the workers"
        )
        print(
            f"other load on the box: {foreign * 100:.0f}% of all CPUs used by other processes "
            "(the Postgres and Redis servers included)"
            + ("  << NOISY: figures are skewed" if foreign > 0.05 else "")
        )
        print()
        rows = []
        base_rate = base_events = None
        for n in counts:
            short, tput, failure = results[n]
            if short is None or tput is None:
                rows.append([str(n), failure, "", "", "", "", "", ""])
                continue
            base_rate = base_rate or short.rate
            base_events = base_events or tput.rate
            rows.append(
                [
                    str(n),
                    f"{short.rate:.0f} ({short.rate / base_rate:.2f}x)",
                    f"{short.p50:.1f} / {short.p99:.1f}",
                    f"{short.cpu_per_request:.2f}",
                    str(short.errors),
                    f"{tput.rate:,.0f} ({tput.rate / base_events:.2f}x)",
                    str(tput.streams),
                    str(tput.errors),
                ]
            )
        print(
            harness.table(
                f"short requests ({SHORT_CLIENTS} clients) and events ({STREAMS} streams of "
                f"{STREAM_EVENTS}), {args.seconds:g} s each",
                [
                    "workers",
                    "requests/s",
                    "latency p50/p99 ms",
                    "CPU ms/req",
                    "errors",
                    "events/s",
                    "streams",
                    "errors",
                ],
                rows,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
