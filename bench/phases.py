"""The phases of bench/gateway.py (time to first event, throughput, slow streams), their plans
and results; bench/scale.py runs the throughput phase too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass

from harness import PY, cpu_seconds, prepare_fake, rss_kb, self_cpu, text_script
from loadclient import StreamResult, Target, errors_summary, new_client, one_stream, pct

from gateway.fakekiro.client import FakeKiroClient


@dataclass(frozen=True)
class Plan:
    """Counts and time bounds of one run."""

    ttfe_warmup: int
    ttfe_requests: int
    ttfe_events: int
    tput_streams: int
    tput_events: int
    tput_seconds: float
    slow_streams: int
    slow_events: int
    slow_pace: float
    slow_open_over: float
    phases: tuple[str, ...] = ("ttfe", "tput", "slow")

    @property
    def slow_duration(self) -> float:
        # One write per frame, `pace` apart: the text frames plus metering + context usage.
        return (self.slow_events + 1) * self.slow_pace


FULL = Plan(
    ttfe_warmup=20,
    ttfe_requests=200,
    ttfe_events=20,
    tput_streams=50,
    tput_events=200,
    tput_seconds=6.0,
    slow_streams=1000,
    slow_events=40,
    slow_pace=0.5,
    slow_open_over=10.0,
)
QUICK = Plan(
    ttfe_warmup=5,
    ttfe_requests=50,
    ttfe_events=20,
    tput_streams=50,
    tput_events=200,
    tput_seconds=2.0,
    slow_streams=200,
    slow_events=10,
    slow_pace=0.5,
    slow_open_over=3.0,
)


@dataclass
class Ttfe:
    p50: float
    p99: float
    total_p50: float
    n: int
    errors: int
    cpu_per_request: float | None  # gateway CPU seconds per request, None for direct
    note: str = ""


async def phase_ttfe(target: Target, plan: Plan) -> Ttfe:
    async with new_client(16) as client:
        for _ in range(plan.ttfe_warmup):
            await one_stream(client, target, plan.ttfe_events)
        results = []
        cpu0 = cpu_seconds(target.pid) if target.pid else 0.0
        async with asyncio.timeout(120):
            for _ in range(plan.ttfe_requests):
                results.append(await one_stream(client, target, plan.ttfe_events))
        cpu1 = cpu_seconds(target.pid) if target.pid else 0.0
    good = [r for r in results if r.ok and r.first is not None]
    firsts = [r.first for r in good if r.first is not None]
    return Ttfe(
        p50=pct(firsts, 50) * 1000,
        p99=pct(firsts, 99) * 1000,
        total_p50=pct([r.total for r in good], 50) * 1000,
        n=len(results),
        errors=len(results) - len(good),
        cpu_per_request=(cpu1 - cpu0) / len(results) if target.pid and results else None,
        note=errors_summary(results),
    )


@dataclass
class Throughput:
    events: int
    content: int
    streams: int
    errors: int
    wall: float
    proxy_cpu: float | None
    fake_cpu: float
    client_cpu: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.wall if self.wall else 0.0


async def phase_throughput(target: Target, plan: Plan, fake_pid: int) -> Throughput:
    async with new_client(plan.tput_streams * 2) as client:
        # Warm-up: one round of every concurrent stream (connections, imports, allocators).
        await asyncio.gather(
            *(one_stream(client, target, plan.tput_events) for _ in range(plan.tput_streams))
        )
        results: list[StreamResult] = []
        deadline = time.perf_counter() + plan.tput_seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                results.append(await one_stream(client, target, plan.tput_events))

        proxy0 = cpu_seconds(target.pid) if target.pid else 0.0
        fake0, client0 = cpu_seconds(fake_pid), self_cpu()
        started = time.perf_counter()
        async with asyncio.timeout(plan.tput_seconds + 60):
            await asyncio.gather(*(worker() for _ in range(plan.tput_streams)))
        wall = time.perf_counter() - started
        proxy1 = cpu_seconds(target.pid) if target.pid else 0.0
        fake1, client1 = cpu_seconds(fake_pid), self_cpu()
    return Throughput(
        events=sum(r.events for r in results),
        content=sum(r.content for r in results),
        streams=len(results),
        errors=sum(not r.ok for r in results),
        wall=wall,
        proxy_cpu=(proxy1 - proxy0) if target.pid else None,
        fake_cpu=fake1 - fake0,
        client_cpu=client1 - client0,
        note=errors_summary(results),
    )


@dataclass
class Slow:
    opened: int
    completed: int
    errors: int
    rss_idle: int | None
    rss_peak: int | None
    gap_p50: float
    gap_p99: float
    gap_max: float
    first_p99: float
    note: str = ""
    health_p50: float = float("nan")  # GET /healthz while the streams run (gateways only)
    health_max: float = float("nan")
    port_p50: float = float("nan")  # the same on the health port (answered off the loop)
    port_max: float = float("nan")


# The probe runs in a process of its own, as a load balancer does: timed on this process's
# loop, busy with 1,000 streams, it would measure the client's own lag.
PROBE_CODE = r"""
import json, sys, threading, time, urllib.request
url, stop, out = sys.argv[1], threading.Event(), []
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    started = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=10).read()
        out.append(time.perf_counter() - started)
    except OSError:
        pass
    stop.wait(0.25)
print(json.dumps(out))
"""


async def poll_health(url: str, stop: asyncio.Event) -> list[float]:
    """Time GET `url` every 250 ms until `stop`, from another process, as a load balancer's
    probe would."""
    prober = await asyncio.create_subprocess_exec(
        PY,
        "-c",
        PROBE_CODE,
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    await stop.wait()
    out, _ = await prober.communicate(b"")
    return json.loads(out or b"[]")


async def phase_slow(target: Target, plan: Plan) -> Slow:
    n = plan.slow_streams
    await asyncio.sleep(1.0)  # let the previous phase's connections wind down
    rss_idle = rss_kb(target.pid) if target.pid else None
    peak = rss_idle or 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            if target.pid:
                peak = max(peak, rss_kb(target.pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    # A patient client (60 s without a byte) so that a slow gateway shows as a late first
    # event rather than as errors; real SDK clients wait minutes.
    async with new_client(n * 2 + 16, read=60.0) as client:
        sampler = asyncio.create_task(sample())
        origin = target.url.split("/v1/", 1)[0].split("/cc/", 1)[0]
        health = asyncio.create_task(poll_health(origin + "/healthz", stop)) if target.pid else None
        port = (
            asyncio.create_task(poll_health(target.health_url, stop)) if target.health_url else None
        )
        step = plan.slow_open_over / n

        async def delayed(i: int) -> StreamResult:
            await asyncio.sleep(i * step)
            return await one_stream(client, target, plan.slow_events, gaps=True)

        tasks = [asyncio.create_task(delayed(i)) for i in range(n)]
        bound = plan.slow_open_over + plan.slow_duration + 60
        done, pending = await asyncio.wait(tasks, timeout=bound)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        stop.set()
        await sampler
        probes = await health if health is not None else []
        port_probes = await port if port is not None else []
    results = [t.result() for t in done]
    results += [StreamResult(error=f"not done after {bound:.0f} s") for _ in pending]
    gaps = [g for r in results for g in r.gaps]
    firsts = [r.first for r in results if r.first is not None]
    completed = sum(r.ok for r in results)
    return Slow(
        opened=n,
        completed=completed,
        errors=n - completed,
        rss_idle=rss_idle,
        rss_peak=peak if target.pid else None,
        gap_p50=pct(gaps, 50) * 1000,
        gap_p99=pct(gaps, 99) * 1000,
        gap_max=max(gaps, default=float("nan")) * 1000,
        first_p99=pct(firsts, 99) * 1000,
        note=errors_summary(results),
        health_p50=pct(probes, 50) * 1000 if probes else float("nan"),
        health_max=max(probes) * 1000 if probes else float("nan"),
        port_p50=pct(port_probes, 50) * 1000 if port_probes else float("nan"),
        port_max=max(port_probes) * 1000 if port_probes else float("nan"),
    )


@dataclass
class Outcome:
    ttfe: Ttfe | None = None
    tput: Throughput | None = None
    slow: Slow | None = None
    failure: str = ""


async def run_variant(
    target: Target, plan: Plan, fake: FakeKiroClient, fake_pid: int, tokens: dict[str, str]
) -> Outcome:
    out = Outcome()
    stamp = time.perf_counter()
    if "ttfe" in plan.phases:
        prepare_fake(fake, tokens, text_script(plan.ttfe_events), validate=False)
        out.ttfe = await phase_ttfe(target, plan)
    if "tput" in plan.phases:
        prepare_fake(fake, tokens, text_script(plan.tput_events), validate=False)
        out.tput = await phase_throughput(target, plan, fake_pid)
    if "slow" in plan.phases:
        events, pace = plan.slow_events, plan.slow_pace
        prepare_fake(fake, tokens, text_script(events, pace=pace), validate=False)
        out.slow = await phase_slow(target, plan)
    print(f"  {target.name}: done in {time.perf_counter() - stamp:.0f} s", file=sys.stderr)
    return out


async def check_valid(target: Target, fake: FakeKiroClient, tokens: dict[str, str]) -> str:
    """Send one request with the fake's strict validation on; return its verdict."""
    prepare_fake(fake, tokens, text_script(5), validate=True)
    async with new_client(4) as client:
        result = await one_stream(client, target, 5)
    chats = fake.requests("chat")
    problems = [p for r in chats for p in r["problems"]]
    if result.ok and chats and not problems:
        return "ok"
    return (
        f"FAILED ({result.error or 'no error'} {result.detail!r}; "
        f"fake problems: {problems or 'none'})"
    )
