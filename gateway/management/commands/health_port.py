"""`manage.py health_port`: GET /healthz on a port of its own, from a process of its own.

`manage.py serve --health-port P` starts it beside the workers; see gateway.api.health_listener.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from gateway.api import health_listener


class Command(BaseCommand):
    help = "Answer GET /healthz on a port of its own (database probe + worker heartbeats)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.KIRO_HEALTH_HOST)
        parser.add_argument("--port", type=int, default=settings.KIRO_HEALTH_PORT)
        parser.add_argument(
            "--beat-dir",
            default=settings.KIRO_HEALTH_BEAT_DIR,
            help="the folder where the workers touch their heartbeat files",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["port"] or not options["beat_dir"]:
            self.stderr.write("health_port needs --port and --beat-dir (or their settings)")
            raise SystemExit(2)
        server = health_listener.start(
            options["host"],
            options["port"],
            Path(options["beat_dir"]),
            float(settings.KIRO_HEALTH_LOOP_STALL_SECS),
        )
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
        server.shutdown()
        server.server_close()
