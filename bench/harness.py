"""The machinery of the whole-gateway benchmarks (bench/gateway.py, bench/scale.py).

Processes and their readings from /proc, the database and the gateway's setup in it, the ASGI
servers' command lines, the fake upstream, and the markdown tables the benchmarks print.
Imported by the benchmark scripts, which put the project and this folder on `sys.path`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.fakekiro.client import FakeKiroClient
from gateway.fakekiro.script import Script, split_text

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
ACCOUNT = "bench"
ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "stream": True,
    "messages": [{"role": "user", "content": "Write a short story about a lighthouse."}],
}
WORDS = "the keeper climbed the stairs at dusk and lit the lamp for ships far out at sea "


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
