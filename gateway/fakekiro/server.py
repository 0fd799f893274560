"""Run the fake upstream: in a loop (`FakeKiro`), a thread (`FakeKiroThread`), a process (`run`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from gateway.fakekiro.app import FakeKiroApp
from gateway.fakekiro.http import HttpServer
from gateway.fakekiro.script import Script
from gateway.fakekiro.state import Account, FakeState, RecordedRequest, ServeConfig


class Controls:
    """In-process control methods shared by `FakeKiro` and `FakeKiroThread`."""

    state: FakeState

    def add_account(self, account_id: str | None = None, **values: Any) -> Account:
        """Register an account (secrets generated when missing); return a snapshot."""
        return self.state.add_account(account_id, **values)

    def account(self, account_id: str) -> Account:
        """Return a snapshot of one account (current tokens, usage, ...)."""
        return self.state.account(account_id)

    def update_account(self, account_id: str, **values: Any) -> Account:
        """Change plain fields of an account."""
        return self.state.update_account(account_id, **values)

    def script(
        self,
        *scripts: Script,
        route: str = "chat",
        account: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Queue scripted answers (FIFO); `times=None` makes them sticky."""
        self.state.script(*scripts, route=route, account=account, times=times)

    def pending_scripts(self) -> int:
        """Count queued one-shot answers not served yet (assert scripts were all used)."""
        return self.state.pending_scripts()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return every recorded request, oldest first."""
        return self.state.requests()

    def requests_for(self, route: str) -> list[RecordedRequest]:
        """Return the recorded requests of one route (chat, mcp, refresh, token, usage, ...)."""
        return self.state.requests(route)

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        """Return the call counters."""
        return self.state.counters()

    def refresh_count(self, *, token: str | None = None, account: str | None = None) -> int:
        """Return how many refresh calls presented `token` or targeted `account`."""
        return self.state.refresh_count(token=token, account=account)

    def expire_access_tokens(self, account_id: str | None = None) -> int:
        """Expire issued access tokens (one account's, or all)."""
        return self.state.expire_access_tokens(account_id)

    def configure(self, **changes: Any) -> ServeConfig:
        """Change delivery settings: validate, slicing, pace, transfer, reset_grace, ..."""
        return self.state.configure(**changes)

    def approve_device(self, user_code: str | None = None, **account_values: Any) -> int:
        """Approve pending device-code logins."""
        return self.state.approve_device(user_code, **account_values)

    def reset(self) -> None:
        """Forget all accounts, scripts, requests and counters."""
        self.state.reset()


class FakeKiro(Controls):
    """The fake upstream bound to one port on `host`, running in the current event loop."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, state: FakeState | None = None
    ) -> None:
        self.state = state or FakeState()
        self.http = HttpServer(FakeKiroApp(self.state), host, port)
        self.host = host

    @property
    def port(self) -> int:
        """Return the bound port (after start)."""
        return self.http.port

    @property
    def base_url(self) -> str:
        """Return `http://host:port`, usable for every upstream base-URL setting."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeKiro:
        """Bind and start serving."""
        await self.http.start()
        return self

    async def stop(self) -> None:
        """Stop serving and drop open connections."""
        await self.http.stop()

    async def __aenter__(self) -> FakeKiro:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FakeKiroThread(Controls):
    """Run a `FakeKiro` in a background thread with its own loop, for sync tests."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, state: FakeState | None = None
    ) -> None:
        self.fake = FakeKiro(host, port, state=state)
        self.state = self.fake.state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """Return the bound port."""
        return self.fake.port

    @property
    def base_url(self) -> str:
        """Return `http://host:port`."""
        return self.fake.base_url

    def start(self, timeout: float = 10.0) -> FakeKiroThread:
        """Start the loop thread and wait until the socket is bound."""
        self._thread = threading.Thread(target=self._main, name="fakekiro", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("fake kiro did not start in time")
        if self._error is not None:
            raise RuntimeError("fake kiro failed to start") from self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.fake.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.fake.stop())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._thread = None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop thread and return its result."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return future.result(10)

    def __enter__(self) -> FakeKiroThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


# --- scenarios and the process entry point -------------------------------------------------

DEMO_REFRESH_TOKEN = "aorAAAAAG-demo-" + "r" * 120
DEMO_ACCESS_TOKEN = "aoaAAAAAG-demo-access-token"
DEMO_API_KEY = "ksk_demo_0123456789abcdef0123456789abcdef"


def _scenario_default(state: FakeState) -> None:
    state.add_account(
        "demo-social",
        auth="social",
        refresh_token=DEMO_REFRESH_TOKEN,
        access_token=DEMO_ACCESS_TOKEN,
        access_expires_in=10 * 365 * 86400,
    )
    state.add_account(
        "demo-idc",
        auth="idc",
        refresh_token=DEMO_REFRESH_TOKEN.replace("demo", "idc0"),
        client_id="demo-client-id",
        client_secret="demo-client-secret",
    )
    state.add_account("demo-api-key", auth="api_key", api_key=DEMO_API_KEY)


def _scenario_slow(state: FakeState) -> None:
    _scenario_default(state)
    state.configure(pace=0.05)


def _scenario_sliced(state: FakeState) -> None:
    _scenario_default(state)
    state.configure(slicing={"mode": "random", "size": 1, "max_size": 7, "seed": 1})


def _scenario_flaky(state: FakeState) -> None:
    _scenario_default(state)
    state.script(Script.server_error(500), Script.rate_limited(), route="chat")


def _scenario_quota(state: FakeState) -> None:
    _scenario_default(state)
    state.script(Script.quota_exhausted(), route="chat", account="demo-social", times=None)


SCENARIOS: dict[str, Callable[[FakeState], None]] = {
    "default": _scenario_default,
    "slow": _scenario_slow,
    "sliced": _scenario_sliced,
    "flaky": _scenario_flaky,
    "quota": _scenario_quota,
    "empty": lambda state: None,
}


async def serve(host: str = "127.0.0.1", port: int = 8990, *, scenario: str = "default") -> None:
    """Serve until cancelled or interrupted, after applying a named scenario."""
    fake = FakeKiro(host, port)
    SCENARIOS[scenario](fake.state)
    await fake.start()
    summary = {
        "base_url": fake.base_url,
        "scenario": scenario,
        "accounts": [fake.state.account(a).to_json() for a in list(fake.state.accounts)],
    }
    print(json.dumps(summary, indent=2), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def run(host: str = "127.0.0.1", port: int = 8990, *, scenario: str = "default") -> None:
    """Block serving the fake on host:port (the management command calls this)."""
    if scenario not in SCENARIOS:
        raise SystemExit(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, scenario=scenario))


def main(argv: list[str] | None = None) -> None:
    """Parse `python -m gateway.fakekiro` arguments and run."""
    import argparse

    parser = argparse.ArgumentParser(prog="fakekiro", description="Fake Kiro upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8990)
    parser.add_argument("--scenario", default="default", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    run(args.host, args.port, scenario=args.scenario)
