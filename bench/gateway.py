"""Benchmark the whole gateway process against the fake upstream, next to the physical limit.

Run: .venv/bin/python bench/gateway.py [--db sqlite|postgres] [--servers daphne,uvicorn] [--quick]
                                     [--only ttfe,tput,slow]
(BENCH_PYSPY=<prefix> also samples each server with py-spy, if it is installed.)

Starts the fake Kiro upstream (`python -m gateway.fakekiro`) and, one after the other, the
gateway under each ASGI server, each in its own process with a fresh database. The load client
runs here, on asyncio with the gateway's own lean transport (`gateway.kiro.transport.build_client`).
Every phase runs once with the client talking straight to the fake (the limit: no proxy at all)
and once through each server:

1. time to first event: one client, sequential requests, 20-event streams; on `/v1/messages`,
   and (one more row per server) the same prompt streamed through `/v1/chat/completions`;
2. throughput: 50 concurrent streams of 200 events for a fixed time; events/s and CPU per
   event of the gateway process (utime + stime from /proc/<pid>/stat), the fake and the client;
3. 1,000 slow streams (40 events 500 ms apart, opened over 10 s): completed, errors, the
   gateway's VmRSS at peak against its idle baseline, the gaps between events, and GET
   /healthz polled every 250 ms on the main port and on the health port (`manage.py
   health_port`, the probe's own process, as `serve --health-port` runs it).

Events are what the client receives: SSE events (counted by their blank-line separators)
from the gateway, event-stream frames (decoded with `EventStreamDecoder`) from the fake.
First-event times and gaps use content events only (`content_block_delta` /
`assistantResponseEvent`). The three processes and the client share this machine's cores, so
ratios travel and absolute numbers do not (PERF-NOTES).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# The project first (its `gateway` package, not this file), then this folder's modules, which
# a script's folder on the path gives, but runpy.run_path does not.
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from harness import (  # noqa: E402
    ANTHROPIC_BODY,
    PY,
    SERVERS,
    Child,
    bench_tokens,
    cpu_seconds,
    create_database,
    drop_database,
    free_port,
    gateway_env,
    machine_busy,
    prepare_fake,
    raise_fd_limit,
    run_setup,
    self_cpu,
    start_fake,
    start_profiler,
    stop_profiler,
    table,
    text_script,
    uvicorn_impl,
    version,
    wait_http,
)
from loadclient import CHAT_DELTA_MARK, Target  # noqa: E402
from phases import FULL, QUICK, Outcome, Plan, check_valid, run_variant  # noqa: E402

CHAT_BODY = {
    "model": ANTHROPIC_BODY["model"],
    "max_tokens": ANTHROPIC_BODY["max_tokens"],
    "stream": True,
    "messages": ANTHROPIC_BODY["messages"],
}


# --- output ------------------------------------------------------------------------------


def f1(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.1f}"


def f2(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.2f}"


def ratio(x: float, base: float, digits: int) -> str:
    if not base or x != x or base != base:
        return "-"
    return f"{x / base:.{digits}f}x"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(plan: Plan, outcomes: dict[str, Outcome]) -> str:
    direct = outcomes.get("direct")
    parts = []

    rows = []
    for name, out in outcomes.items():
        t = out.ttfe
        if t is None:
            rows.append([name, out.failure or "-", *["-"] * 8])
            continue
        base = direct.ttfe if direct and direct.ttfe else None
        added = t.p50 - base.p50 if base and name != "direct" else None
        rows.append(
            [
                name,
                f"{t.n - t.errors}/{t.n}",
                f2(t.p50),
                f2(t.p99),
                f2(t.total_p50),
                "-" if added is None or added != added else f"+{added:.2f}",
                "-" if not base or name == "direct" else ratio(t.p50, base.p50, 1),
                "-" if t.cpu_per_request is None else f"{t.cpu_per_request * 1000:.1f}",
                "-" if added is None else verdict(added <= 2.0),
                t.note,
            ]
        )
    parts.append(
        table(
            f"1. Time to first event: one client, sequential, {plan.ttfe_events}-event streams "
            f"({plan.ttfe_requests} requests after {plan.ttfe_warmup} warm-up)",
            [
                "variant",
                "ok",
                "TTFE p50 ms",
                "TTFE p99 ms",
                "last event p50 ms",
                "added p50 ms",
                "x direct",
                "gateway CPU ms/req",
                "goal: added <= 2 ms",
                "errors",
            ],
            rows,
        )
    )

    rows = []
    for name, out in outcomes.items():
        t = out.tput
        if t is None:
            if out.failure or "tput" not in plan.phases:
                rows.append([name, out.failure or "-", *["-"] * 8])
            continue  # the chat rows measure the time to first event only
        base = direct.tput if direct and direct.tput else None
        per = 1e6 / t.events if t.events else float("nan")
        proxy_util = t.proxy_cpu / t.wall * 100 if t.proxy_cpu is not None else None
        rows.append(
            [
                name,
                f"{t.streams - t.errors}/{t.streams}",
                f"{t.events:,}",
                f"{t.rate:,.0f}",
                "-" if not base or name == "direct" else ratio(t.rate, base.rate, 2),
                "-" if t.proxy_cpu is None else f"{t.proxy_cpu * per:.1f} ({proxy_util:.0f}%)",
                f"{t.fake_cpu * per:.1f} ({t.fake_cpu / t.wall * 100:.0f}%)",
                f"{t.client_cpu * per:.1f} ({t.client_cpu / t.wall * 100:.0f}%)",
                "-" if name == "direct" else verdict(t.rate >= 30_000),
                t.note,
            ]
        )
    parts.append(
        table(
            f"2. Throughput: {plan.tput_streams} concurrent streams of {plan.tput_events} events "
            f"for {plan.tput_seconds:.0f} s (CPU: µs per event delivered, and % of one core)",
            [
                "variant",
                "streams ok",
                "events",
                "events/s",
                "x direct",
                "gateway CPU µs/ev",
                "fake CPU µs/ev",
                "client CPU µs/ev",
                "goal: >= 30,000/s",
                "errors",
            ],
            rows,
        )
    )

    rows = []
    for name, out in outcomes.items():
        s = out.slow
        if s is None:
            if out.failure or "slow" not in plan.phases:
                rows.append([name, out.failure or "-", *["-"] * 14])
            continue
        per_stream = (
            (s.rss_peak - s.rss_idle) / s.opened
            if s.rss_peak is not None and s.rss_idle is not None
            else None
        )
        rows.append(
            [
                name,
                f"{s.completed}/{s.opened}",
                str(s.errors),
                "-" if s.rss_idle is None else f"{s.rss_idle / 1024:.1f}",
                "-" if s.rss_peak is None else f"{s.rss_peak / 1024:.1f}",
                f1(per_stream),
                f1(s.gap_p50),
                f1(s.gap_p99),
                f1(s.gap_max),
                f1(s.first_p99),
                f1(s.health_p50),
                f1(s.health_max),
                f1(s.port_p50),
                f1(s.port_max),
                "-"
                if per_stream is None
                else verdict(
                    s.completed == s.opened
                    and s.errors == 0
                    and per_stream <= 60
                    and s.port_max <= 100
                ),
                s.note,
            ]
        )
    parts.append(
        table(
            f"3. Slow streams: {plan.slow_streams:,} concurrent, {plan.slow_events} events "
            f"{plan.slow_pace * 1000:.0f} ms apart, opened over {plan.slow_open_over:.0f} s "
            f"(RSS = gateway VmRSS; gaps between consecutive content events at the client)",
            [
                "variant",
                "completed",
                "errors",
                "RSS idle MB",
                "RSS peak MB",
                "KB/stream",
                "gap p50 ms",
                "gap p99 ms",
                "gap max ms",
                "TTFE p99 ms",
                "healthz p50 ms",
                "healthz max ms",
                "health port p50 ms",
                "health port max ms",
                "goal: all, 0 err, <= 60 KB, health port <= 100 ms",
                "errors",
            ],
            rows,
        )
    )
    return "\n\n".join(parts)


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--quick", action="store_true", help="smaller counts, ~1 minute")
    parser.add_argument(
        "--only", default="", help="comma-separated phases to run: ttfe,tput,slow (default all)"
    )
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; choose from {', '.join(SERVERS)}")
    plan = QUICK if args.quick else FULL
    if args.only:
        plan = dataclasses.replace(plan, phases=tuple(p.strip() for p in args.only.split(",")))
    nofile = raise_fd_limit()
    began = time.monotonic()
    busy0 = machine_busy()
    load0 = os.getloadavg()[0]

    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="kiro-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        tokens = bench_tokens()
        fake_proc, fake = start_fake(tmp, stack)
        fake_url = fake.base_url

        db = create_database(args.db)
        stack.callback(drop_database, db)
        data_dir = tmp / "data"
        data_dir.mkdir()
        env = gateway_env(db, data_dir, secrets.token_urlsafe(50), fake_url)
        print("setting up the database (migrate, credential, client key) ...", file=sys.stderr)
        prepare_fake(fake, tokens, text_script(5), validate=True)
        setup = run_setup(env, tokens)

        direct = Target(
            "direct",
            setup["url"],
            [(k, v) for k, v in setup["headers"]],
            setup["body"].encode(),
            sse=False,
            pid=None,
        )
        outcomes: dict[str, Outcome] = {}
        checks: dict[str, str] = {}
        checks["direct"] = asyncio.run(check_valid(direct, fake, tokens))
        print("measuring direct ...", file=sys.stderr)
        outcomes["direct"] = asyncio.run(run_variant(direct, plan, fake, fake_proc.pid, tokens))

        for name in servers:
            port = free_port()
            # The health port as `manage.py serve --health-port` runs it: a process of its own,
            # told by the worker's heartbeat file that its loop turns.
            health_port = free_port()
            beats = tmp / f"beats-{name}"
            beats.mkdir()
            child = Child(
                name, SERVERS[name](port), {**env, "KIRO_HEALTH_BEAT_DIR": str(beats)}, tmp
            )
            prober = Child(
                f"{name}-health",
                [
                    PY,
                    "manage.py",
                    "health_port",
                    "--port",
                    str(health_port),
                    "--beat-dir",
                    str(beats),
                ],
                env,
                tmp,
            )
            spy: subprocess.Popen | None = None
            try:
                wait_http(f"http://127.0.0.1:{port}/healthz", child)
                spy = start_profiler(name, child.pid)
                target = Target(
                    name,
                    f"http://127.0.0.1:{port}/v1/messages",
                    [
                        ("x-api-key", setup["key"]),
                        ("anthropic-version", "2023-06-01"),
                        ("content-type", "application/json"),
                    ],
                    json.dumps(ANTHROPIC_BODY).encode(),
                    sse=True,
                    pid=child.pid,
                    health_url=f"http://127.0.0.1:{health_port}/healthz",
                )
                checks[name] = asyncio.run(check_valid(target, fake, tokens))
                if checks[name] != "ok":
                    print(f"{name}: {checks[name]}\n{child.log_tail()}", file=sys.stderr)
                print(f"measuring {name} (pid {child.pid}) ...", file=sys.stderr)
                outcomes[name] = asyncio.run(run_variant(target, plan, fake, fake_proc.pid, tokens))
                if not child.alive():
                    outcomes[name].failure = "server exited"
                if "ttfe" in plan.phases:
                    chat = dataclasses.replace(
                        target,
                        name=f"{name} chat",
                        url=f"http://127.0.0.1:{port}/v1/chat/completions",
                        headers=[
                            ("authorization", f"Bearer {setup['key']}"),
                            ("content-type", "application/json"),
                        ],
                        body=json.dumps(CHAT_BODY).encode(),
                        mark=CHAT_DELTA_MARK,
                        exact=False,
                    )
                    print(f"measuring {chat.name} ...", file=sys.stderr)
                    only_ttfe = dataclasses.replace(plan, phases=("ttfe",))
                    outcomes[chat.name] = asyncio.run(
                        run_variant(chat, only_ttfe, fake, fake_proc.pid, tokens)
                    )
            except Exception as exc:  # report the others even if one server fails
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                outcomes[name] = Outcome(failure=f"{type(exc).__name__}: {first_line}"[:120])
                print(f"{name} failed: {exc}\n{child.log_tail()}", file=sys.stderr)
            finally:
                stop_profiler(spy)
                child.stop()
                prober.stop()

        # CPU used by anything other than this bench and its children: other work on the
        # box skews every figure, so say how much there was.
        ours = self_cpu() + cpu_seconds(fake_proc.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours += children.ru_utime + children.ru_stime
        wall = time.monotonic() - began
        foreign = max(0.0, machine_busy() - busy0 - ours) / (wall * (os.cpu_count() or 1))
        header = [
            f"kiro-gateway bench/gateway.py ({'quick' if args.quick else 'full'} run, "
            f"{time.monotonic() - began:.0f} s)",
            f"database: {db.describe(data_dir)}",
            f"python {platform.python_version()}, Django {version('django')}, "
            f"{os.cpu_count()} CPUs, Linux {platform.release()}, RLIMIT_NOFILE {nofile}",
            f"other load on the box: {foreign * 100:.0f}% of all CPUs used by other processes "
            f"during the run; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end"
            + ("  << NOISY: figures are skewed" if foreign > 0.05 else ""),
            f"daphne {version('daphne')} (Twisted {version('twisted')}, asyncio reactor); "
            f"uvicorn {version('uvicorn')} ({uvicorn_impl()})",
            f"client: asyncio + gateway.kiro.transport (httptools {version('httptools')}), "
            f"in this process; fake: h11 server, own process, one write per frame, "
            f"strict request validation OFF during measurements (saves fake CPU)",
            "request validated once with strict validation ON: "
            + ", ".join(f"{k} {v}" for k, v in checks.items()),
        ]
        print("\n".join(header))
        print()
        print(report(plan, outcomes))
        for name, out in outcomes.items():
            if out.failure:
                print(f"\n{name} failed: {out.failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
