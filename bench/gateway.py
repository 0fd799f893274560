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
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from gateway.fakekiro.client import FakeKiroClient  # noqa: E402
from gateway.fakekiro.script import Script, split_text  # noqa: E402
from gateway.kiro.transport import build_client  # noqa: E402
from gateway.protocol.eventstream import EventStreamDecoder, Message  # noqa: E402

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
ACCOUNT = "bench"
SSE_SEP = b"\n\n"
DELTA_MARK = b"event: content_block_delta"
# A chat.completion.chunk carrying text (the role chunk has `"delta":{"role"`).
CHAT_DELTA_MARK = b'"delta":{"content":'
CONTENT_EVENT = "assistantResponseEvent"
ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "stream": True,
    "messages": [{"role": "user", "content": "Write a short story about a lighthouse."}],
}
CHAT_BODY = {
    "model": ANTHROPIC_BODY["model"],
    "max_tokens": ANTHROPIC_BODY["max_tokens"],
    "stream": True,
    "messages": ANTHROPIC_BODY["messages"],
}
WORDS = "the keeper climbed the stairs at dusk and lit the lamp for ships far out at sea "


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


# --- processes and /proc -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process (all its threads) in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    """Return VmRSS of a process in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_busy() -> float:
    """Return the CPU seconds all processes on this machine have used (from /proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit here; children spawned later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Child:
    """One subprocess with its output in a log file; stopped with terminate, then kill."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200, failing early if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not answer {url}:\n{child.log_tail()}")
        time.sleep(0.1)


# --- database and gateway setup ----------------------------------------------------------

# Runs in a subprocess with the gateway's environment: create the credential (a fresh access
# token valid for ten years, so nothing refreshes during the bench) and a client key, and
# build the exact upstream request the gateway would send for ANTHROPIC_BODY, for the direct
# client.
SETUP_CODE = r"""
import datetime, json, sys
import django
django.setup()
from django.utils import timezone
from credentials import selectors, services
from credentials.models import Credential, GatewaySettings
from gateway.kiro import client as kiro_client
from gateway.protocol.convert import ConvertOptions, convert_request, encode_body
from gateway.api.resolution import custom_models

args = json.loads(sys.stdin.read())
GatewaySettings.load()
credential = Credential(auth_method="social", email="bench@example.com")
credential.set_refresh_token(args["refresh_token"])
credential.access_token = args["access_token"]
credential.expires_at = timezone.now() + datetime.timedelta(days=3650)
credential.save()
_, key = services.client_key_create(name="bench")
config = selectors.gateway_config()
access = selectors.credential_access(credential_id=credential.pk, config=config)
conversion = convert_request(
    args["body"],
    options=ConvertOptions(
        custom_models=custom_models(config),
        tool_mode=config.tool_compatibility_mode,
        endpoint=config.default_endpoint,
    ),
)
request = kiro_client.generate_request(
    access, access.access_token, encode_body(conversion.kiro_body), config
)
print(json.dumps({
    "key": key,
    "url": str(request.url),
    "headers": [[k, v] for k, v in request.headers.items() if k.lower() != "content-length"],
    "body": request.content.decode(),
}))
"""


@dataclass
class Database:
    kind: str
    url: str  # DATABASE_URL, or "" for SQLite in DATA_DIR
    admin_url: str = ""
    name: str = ""

    def describe(self, data_dir: Path) -> str:
        if self.kind == "sqlite":
            return f"SQLite (WAL) at {data_dir / 'db.sqlite3'}"
        return f"PostgreSQL {self.url}"


def create_database(kind: str) -> Database:
    if kind == "sqlite":
        return Database("sqlite", "")
    import psycopg

    admin = "postgres://postgres@127.0.0.1:5432/postgres"
    name = f"kiro_bench_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database("postgres", f"postgres://postgres@127.0.0.1:5432/{name}", admin, name)


def drop_database(db: Database) -> None:
    if db.kind != "postgres":
        return
    import psycopg

    with psycopg.connect(db.admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def gateway_env(db: Database, data_dir: Path, secret: str, fake_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="kiro_site.settings",
        DATA_DIR=str(data_dir),
        SECRET_KEY=secret,
        DEBUG="false",
        LOG_LEVEL="WARNING",
        KIRO_API_BASE_URL=fake_url,
        KIRO_SOCIAL_AUTH_BASE_URL=fake_url,
        KIRO_IDC_AUTH_BASE_URL=fake_url,
        PYTHONUNBUFFERED="1",
    )
    if db.url:
        env["DATABASE_URL"] = db.url
    return env


def run_setup(env: dict[str, str], tokens: dict[str, str]) -> dict[str, Any]:
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=180,
    )
    done = subprocess.run(
        [PY, "-c", SETUP_CODE],
        cwd=ROOT,
        env=env,
        input=json.dumps({**tokens, "body": ANTHROPIC_BODY}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"setup failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


SERVERS: dict[str, Callable[[int], list[str]]] = {
    "daphne": lambda port: [
        str(Path(PY).with_name("daphne")) if Path(PY).with_name("daphne").exists() else "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "kiro_site.asgi:application",
    ],
    "uvicorn": lambda port: [
        PY,
        "-m",
        "uvicorn",
        "kiro_site.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ],
}


def start_profiler(name: str, pid: int) -> subprocess.Popen | None:
    """With BENCH_PYSPY=<prefix>, sample the gateway with py-spy (not a dependency) into
    <prefix>-<server>.txt, collapsed stacks for flame graphs and `sort | uniq` digging."""
    prefix = os.environ.get("BENCH_PYSPY")
    spy = shutil.which("py-spy") or str(Path(PY).with_name("py-spy"))
    if not prefix or not Path(spy).exists():
        return None
    out = f"{prefix}-{name}.txt"
    command = [
        spy,
        "record",
        "--nonblocking",
        "-r",
        "500",
        "-f",
        "raw",
        "-o",
        out,
        "--pid",
        str(pid),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=30)


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def uvicorn_impl() -> str:
    """What uvicorn's `auto` picks: uvloop and httptools when importable (uvicorn/config.py)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio (uvloop not installed)"
    http = (
        f"httptools {version('httptools')}"
        if importlib.util.find_spec("httptools")
        else "h11 (httptools not installed)"
    )
    return f"loop={loop}, http={http}"


# --- the fake ----------------------------------------------------------------------------


def bench_tokens() -> dict[str, str]:
    """A fresh refresh and access token for the bench's one account."""
    return {
        "refresh_token": "aorAAAAAG" + secrets.token_urlsafe(120),
        "access_token": "aoaAAAAAG" + secrets.token_urlsafe(90),
    }


def start_fake(tmp: Path, stack: contextlib.ExitStack) -> tuple[Child, FakeKiroClient]:
    """Start the fake upstream (empty scenario) in its own process, stopped with `stack`."""
    port = free_port()
    command = [PY, "-m", "gateway.fakekiro", "--host", "127.0.0.1", "--port", str(port)]
    process = Child(
        "fakekiro", [*command, "--scenario", "empty"], dict(os.environ, PYTHONUNBUFFERED="1"), tmp
    )
    stack.callback(process.stop)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/__fake__/health", process)
    return process, FakeKiroClient(url)


def text_script(events: int, *, pace: float | None = None) -> Script:
    """`events` assistantResponseEvents of a few words each, then metering + context usage."""
    text = (WORDS * (events // 4 + 2))[: events * 9]
    script = Script.text(text, chunks=events).with_usage()
    assert len(split_text(text, events)) == events
    return script.paced(pace) if pace else script


def prepare_fake(fake: FakeKiroClient, tokens: dict[str, str], script: Script, validate: bool):
    """Forget the request log and counters, re-register the account, script sticky answers."""
    fake.reset()  # also keeps the fake's request log from growing across phases
    fake.add_account(
        ACCOUNT,
        auth="social",
        refresh_token=tokens["refresh_token"],
        access_token=tokens["access_token"],
        access_expires_in=10 * 365 * 86400,
    )
    fake.configure(validate=validate)
    fake.script(script, route="chat", account=ACCOUNT, times=None)


# --- the load client ---------------------------------------------------------------------


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


# --- phases ------------------------------------------------------------------------------


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


# --- output ------------------------------------------------------------------------------


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([title, line(header), sep, *(line(r) for r in rows)])


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
