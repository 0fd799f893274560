"""Export usage records as kiro.rs JSONL log lines (spec kiro-ops §5.1) or as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from usage import jsonl
from usage.selectors import usage_rows

FORMATS = ("jsonl", "csv")


def _parse_day(value: object, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise CommandError(f"{option} must be a date like 2026-11-01, not {value!r}") from None


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


class Command(BaseCommand):
    help = (
        "Write usage records as JSONL lines identical to the kiro.rs usage log, or as CSV. "
        "Dates are local days (TIME_ZONE), both ends inclusive."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="first local day, YYYY-MM-DD")
        parser.add_argument("--until", help="last local day, YYYY-MM-DD (default: no end)")
        parser.add_argument("--format", default="jsonl", help="jsonl (default) or csv")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args: object, **options: Any) -> None:
        since = _parse_day(options["since"], "--since")
        until = _parse_day(options.get("until"), "--until")
        fmt = str(options.get("format") or "jsonl").lower()
        if fmt not in FORMATS:
            raise CommandError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if since is None:
            raise CommandError("--since is required (YYYY-MM-DD)")
        if until is not None and until < since:
            raise CommandError(f"--until ({until}) is before --since ({since})")
        rows = usage_rows(
            since=_local_midnight(since),
            until=_local_midnight(until + timedelta(days=1)) if until else None,
        )
        with self._open(options.get("output")) as out:
            if fmt == "jsonl":
                for entry in rows:
                    out.write(jsonl.dump_line(entry))
            else:
                writer = csv.DictWriter(out, fieldnames=jsonl.LINE_FIELDS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)

    @contextmanager
    def _open(self, output: str | None) -> Iterator[IO[str]]:
        if not output or output == "-":
            # Every line already ends with "\n", so OutputWrapper adds nothing to it.
            yield self.stdout
            return
        try:
            handle = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        with handle:
            yield handle
