"""`manage.py serve`: the production server. N uvicorn workers share the port (client traffic
and the admin's websocket), `run_jobs` runs beside them (and, with --health-port, the health
probe's own process: `manage.py health_port`), and SIGTERM drains.

uvicorn rather than daphne: bench/gateway.py measures it ahead on this machine (first event
about as soon, 20–40 % more events per second on one process), and its supervisor runs the
workers, restarts a dead one and forwards SIGTERM. On SIGTERM each worker stops accepting
connections and lets requests in flight finish for up to `--grace` seconds; a stream cut after
that still writes its usage record (as a client disconnect), so no record is lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve the gateway with N worker processes and the background jobs (production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8990")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1)),
            help="worker processes (default: WEB_CONCURRENCY, else one per CPU)",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=float(os.environ.get("KIRO_SHUTDOWN_GRACE_SECS", "30")),
            help="seconds streams in flight may take to finish after SIGTERM",
        )
        parser.add_argument(
            "--no-jobs", action="store_true", help="do not start run_jobs beside the workers"
        )
        parser.add_argument(
            "--health-port",
            type=int,
            default=int(os.environ.get("KIRO_HEALTH_PORT", "0") or 0),
            help="also answer GET /healthz on this port, from threads off the event loop "
            "(default: KIRO_HEALTH_PORT; 0: off)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        health = None
        beat_dir = ""
        if options["health_port"]:
            # The probe's own process; the workers tell it their loops turn through heartbeat
            # files in a private folder (gateway.api.health_listener).
            beat_dir = tempfile.mkdtemp(prefix="kiro-health-")
            os.environ["KIRO_HEALTH_BEAT_DIR"] = beat_dir  # the workers read it on import
            settings.KIRO_HEALTH_BEAT_DIR = beat_dir  # one worker runs in this process
            host = os.environ.get("KIRO_HEALTH_HOST") or options["host"]
            command = [sys.executable, "manage.py", "health_port", "--host", host]
            command += ["--port", str(options["health_port"]), "--beat-dir", beat_dir]
            health = subprocess.Popen(command, cwd=settings.BASE_DIR)
        jobs = None
        if not options["no_jobs"]:
            jobs = subprocess.Popen(
                [sys.executable, "manage.py", "run_jobs"], cwd=settings.BASE_DIR
            )
        try:
            uvicorn.run(
                "kiro_site.asgi:application",
                host=options["host"],
                port=options["port"],
                workers=max(1, options["workers"]),
                lifespan="on",
                ws="websockets",
                timeout_graceful_shutdown=options["grace"],
                proxy_headers=bool(getattr(settings, "SECURE_PROXY_SSL_HEADER", None)),
                forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                log_level=os.environ.get("LOG_LEVEL", "info").lower(),
            )
        finally:
            for helper in (jobs, health):
                if helper is not None and helper.poll() is None:
                    helper.send_signal(signal.SIGTERM)
                    try:
                        helper.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        helper.kill()
            if beat_dir:
                shutil.rmtree(beat_dir, ignore_errors=True)
