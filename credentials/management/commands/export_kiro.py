"""Export kiro-rs config.json and/or credentials.json (they contain secrets; mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from credentials import services
from credentials.kiro_files import dump_json


class Command(BaseCommand):
    help = "Export kiro-rs config.json and credentials.json (written 0600: they hold secrets)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", type=Path, help="where to write config.json")
        parser.add_argument("--credentials", type=Path, help="where to write credentials.json")
        parser.add_argument("--ids", help="comma-separated credential ids (default: all)")

    def handle(self, *args: object, **options: object) -> None:
        config: Path | None = options["config"]  # type: ignore[assignment]
        creds: Path | None = options["credentials"]  # type: ignore[assignment]
        if config is None and creds is None:
            raise CommandError("give --config and/or --credentials")
        ids = None
        if options["ids"]:
            try:
                ids = [int(part) for part in str(options["ids"]).split(",") if part.strip()]
            except ValueError:
                raise CommandError("--ids takes comma-separated numbers") from None
        if config is not None:
            _write(config, dump_json(services.kiro_export_config()))
            self.stdout.write(f"Wrote {config}")
        if creds is not None:
            entries = services.kiro_export_credentials(credential_ids=ids)
            _write(creds, dump_json(entries))
            self.stdout.write(f"Wrote {creds} ({len(entries)} credentials)")


def _write(path: Path, text: str) -> None:
    """Write atomically (temp file, then rename), readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
