"""`GET /healthz` on a port of its own (KIRO_HEALTH_PORT), served by a process of its own.

Under load a worker's event loop is busy with streams, and a probe on the main port waits its
turn behind them; a thread inside the worker would still share its GIL and its garbage
collector's pauses. `manage.py serve` therefore starts this listener as a separate process
(`manage.py health_port`). It answers from its own threads with its own cached database
probe (`gateway.api.health`) and the workers' heartbeats (one file per worker in the beat
folder, touched by each worker's loop), so that a worker whose loop stopped turning still
shows: 503 when none beats or one has stalled for KIRO_HEALTH_LOOP_STALL_SECS.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gateway.api import health

log = logging.getLogger(__name__)


class HealthServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], beat_dir: Path, stall_secs: float) -> None:
        super().__init__(address, _Handler)
        self.beat_dir = beat_dir
        self.stall_secs = stall_secs

    def answer(self) -> tuple[dict[str, object], int]:
        workers = health.workers_health(self.beat_dir, self.stall_secs)
        return health.health_answer(health.database_health(), workers)


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    server_version = "kiro-gateway-health"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            error = {"type": "not_found_error", "message": "Only /healthz is served here."}
            self._send({"type": "error", "error": error}, 404)
            return
        body, status = self.server.answer()
        self._send(body, status)

    def do_HEAD(self) -> None:
        body, status = self.server.answer()
        self._send(body, status, head=True)

    def _send(self, body: dict, status: int, *, head: bool = False) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a probe every few seconds per balancer: not worth a log line


def start(host: str, port: int, beat_dir: Path, stall_secs: float) -> HealthServer:
    """Serve the probe on host:port from a daemon thread (port 0: any free one)."""
    server = HealthServer((host, port), beat_dir, stall_secs)
    thread = threading.Thread(target=server.serve_forever, name="healthz-port", daemon=True)
    thread.start()
    log.info("health probe listening on %s:%s", host, server.server_address[1])
    return server
