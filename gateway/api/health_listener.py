"""`GET /healthz` on a port of its own (KIRO_HEALTH_PORT), answered by threads, not the loop.

Under load the event loop of a gateway process is busy with streams, and a probe on the main
port waits its turn behind them (bench/gateway.py measured up to 0.9 s with 1,000 slow
streams). The listener answers from its own threads: the cached database probe of
`gateway.api.health` plus the serving loop's heartbeat, so that it still reports a process
whose loop stopped turning. Every worker of `manage.py serve` binds the port with
SO_REUSEPORT; the kernel spreads the probes over them.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway.api import health

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server_version = "kiro-gateway-health"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self._send(
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "Not found."}},
            )
            return
        body, status = health.health_answer(health.database_health(), health.event_loop_health())
        self._send(status, body)

    def do_HEAD(self) -> None:
        body, status = health.health_answer(health.database_health(), health.event_loop_health())
        self._send(status, body, head=True)

    def _send(self, status: int, body: dict, *, head: bool = False) -> None:
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


class HealthServer(ThreadingHTTPServer):
    allow_reuse_address = True
    allow_reuse_port = True  # every worker process binds the same port
    daemon_threads = True


def start(host: str, port: int) -> HealthServer:
    """Serve the probe on host:port from a daemon thread; return the server."""
    server = HealthServer((host, port), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="healthz-port", daemon=True)
    thread.start()
    log.info("health probe listening on %s:%s", host, server.server_address[1])
    return server


_started: HealthServer | None = None


def start_from_settings() -> HealthServer | None:
    """Start the listener once per process when KIRO_HEALTH_PORT is set."""
    global _started
    from django.conf import settings

    port = int(getattr(settings, "KIRO_HEALTH_PORT", 0) or 0)
    if not port or _started is not None:
        return _started
    _started = start(str(getattr(settings, "KIRO_HEALTH_HOST", "127.0.0.1")), port)
    return _started
