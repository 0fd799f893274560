"""Serve the fake Kiro upstream: `manage.py fakekiro --port 8991 --scenario default`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gateway.fakekiro.server import SCENARIOS, run


class Command(BaseCommand):
    help = "Serve a fake Kiro upstream (API, auth and OIDC hosts on one port) for tests and demos."

    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8991)
        parser.add_argument("--scenario", default="default", choices=sorted(SCENARIOS))

    def handle(self, *args: Any, **options: Any) -> None:
        run(options["host"], options["port"], scenario=options["scenario"])
