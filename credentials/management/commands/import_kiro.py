"""Import kiro-rs config.json and/or credentials.json in one transaction."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from credentials import services
from credentials.kiro_files import KiroFileError


class Command(BaseCommand):
    help = "Import kiro-rs config.json and credentials.json (all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", type=Path, help="path to config.json")
        parser.add_argument("--credentials", type=Path, help="path to credentials.json")
        parser.add_argument("--dry-run", action="store_true", help="show the plan, write nothing")

    def handle(self, *args: object, **options: object) -> None:
        config: Path | None = options["config"]  # type: ignore[assignment]
        creds: Path | None = options["credentials"]  # type: ignore[assignment]
        if config is None and creds is None:
            raise CommandError("give --config and/or --credentials")
        try:
            plan = services.kiro_import_plan(
                config_text=_read(config),
                credentials_text=_read(creds),
                config_name=str(config) if config else "config.json",
                credentials_name=str(creds) if creds else "credentials.json",
            )
        except KiroFileError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        for item in plan.items:
            rules = f" [{', '.join(item.rules)}]" if item.rules else ""
            state = "enabled" if item.enabled else "disabled"
            self.stdout.write(
                f"  {item.action:6} #{item.credential_id} {item.auth_method} {state}"
                f" {item.label}{rules}"
            )
        summary = f"{plan.created} to create, {plan.updated} to update"
        if plan.settings_values is not None:
            summary += f", {len(plan.settings_values)} settings"
        if plan.system_key:
            summary += ", system client key from apiKey"
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {summary}; nothing written.")
            return
        services.kiro_import_apply(plan=plan)
        self.stdout.write(self.style.SUCCESS(f"Imported: {summary}."))


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"nothing imported: {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"nothing imported: {path}: not UTF-8 text") from None
