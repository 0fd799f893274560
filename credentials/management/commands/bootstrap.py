"""Prepare a fresh install: migrate, create the settings row, and the first superuser once."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from credentials.models import GatewaySettings

FIRST_RUN_FILE = "first-run.txt"


class Command(BaseCommand):
    help = "Migrate if needed; on the very first start create superuser 'admin' and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: object) -> None:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            call_command("migrate", interactive=False, verbosity=1)
        GatewaySettings.load()

        username = str(options["username"])
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return  # not the first start: nothing to do, and never print a password again
        password = secrets.token_urlsafe(18)
        users.create_superuser(username=username, email="", password=password)
        path = settings.DATA_DIR / FIRST_RUN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"admin url: /admin/\nusername: {username}\npassword: {password}\n")
        line = "=" * 64
        self.stdout.write(
            f"{line}\n First start: created superuser\n"
            f"   username: {username}\n   password: {password}\n"
            f" (also saved, readable only by you, in {path})\n{line}"
        )
