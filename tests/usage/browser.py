"""Headless Chromium for the admin pages' browser tests, and daphne serving the test database."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from daphne.testing import DaphneProcess


class ChromiumPipe:
    """A Chrome DevTools Protocol session over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, url_user_data_dir: str) -> None:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            pytest.fail("chromium is not installed (make test installs it)")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:
            # Chromium reads commands on fd 3 and writes answers on fd 4; go through high
            # numbers first so that neither end clobbers the other.
            os.dup2(to_browser_r, 200)
            os.dup2(from_browser_w, 201)
            os.dup2(200, 3)
            os.dup2(201, 4)

        self.process = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={url_user_data_dir}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0

    def call(
        self, method: str, session: str | None = None, timeout: float = 20, **params: Any
    ) -> Any:
        """Send one command and return its result, skipping the events in between."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


class DaphneWithFreshPools(DaphneProcess):
    """Daphne in a forked child that keeps the test database and opens its own Postgres pool.

    The parent's pool objects are copied by fork with their sockets; using them from the child
    would interleave two processes on one connection, so the child forgets them (not closes:
    closing would hang up the parent's connections). The forked settings already name the test
    database; channels' own setup would prefix "test_" a second time on Postgres. Websocket
    consumers run sync code on asgiref's process-wide single-thread executor; if an earlier async
    test started its worker thread, the fork copied the executor but not the thread, and every
    call would wait forever, so the child gets a new executor.
    """

    def run(self) -> None:
        from asgiref.sync import SyncToAsync
        from django.db import connections

        self.setup = None
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

        for connection in connections.all():
            pools = getattr(type(connection), "_connection_pools", None)
            if pools is not None:
                pools.clear()
        super().run()
