"""Settings: the secret key is generated once into DATA_DIR, readable only by its owner."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _settings_value(data_dir: Path, expr: str, **env: str) -> str:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
    }
    environment.update(DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="kiro_site.settings", **env)
    code = f"import django; django.setup(); from django.conf import settings; print({expr})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


def test_it_generates_the_secret_key_once_with_mode_0600(tmp_path):
    first = _settings_value(tmp_path, "settings.SECRET_KEY")
    second = _settings_value(tmp_path, "settings.SECRET_KEY")

    assert first == second and len(first) >= 50
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_it_tunes_sqlite_by_default(tmp_path):
    options = _settings_value(tmp_path, "settings.DATABASES['default']['OPTIONS']")

    assert "journal_mode=WAL" in options and "busy_timeout" in options
    assert "'transaction_mode': 'IMMEDIATE'" in options


def test_it_pools_postgres_connections_with_conn_max_age_zero(tmp_path):
    db = _settings_value(
        tmp_path,
        "settings.DATABASES['default']",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
    )

    assert "'pool': {" in db and "'CONN_MAX_AGE': 0" in db


def test_it_uses_redis_for_cache_and_channels_when_configured(tmp_path):
    value = _settings_value(
        tmp_path,
        "settings.CACHES['default']['BACKEND'], settings.CHANNEL_LAYERS['default']['BACKEND']",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )

    assert "RedisCache" in value and "RedisChannelLayer" in value
