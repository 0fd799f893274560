"""Run the background jobs (balances, proxy health, retention) beside the server."""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Run background jobs until SIGTERM/SIGINT; safe to run on several hosts at once "
        "(each job is leased in the database)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run each due job once and exit")

    def handle(self, *args: object, **options: object) -> None:
        from credentials import jobs, tracing

        tracing.configure()  # token refreshes of the jobs are traced too

        if options["once"]:
            results = asyncio.run(jobs.run_once())
            for name, result in results.items():
                self.stdout.write(f"{name}: {result}")
            if not results:
                self.stdout.write("no job was due")
            return
        asyncio.run(jobs.serve())
