"""Production hardening: `check --deploy` is clean behind TLS, HSTS and the HTTPS redirect are
on there (the health probe exempt), and DATA_DIR is private to the gateway's user."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[1]


def manage(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment |= {"DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "kiro_site.settings"}
    environment |= env
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "BEHIND_TLS_PROXY": "true",
    "ALLOWED_HOSTS": "gw.example.com",
    "DEBUG": "false",
}


def test_check_deploy_is_clean_behind_tls(tmp_path):
    done = manage(tmp_path, "check", "--deploy", **PRODUCTION, SECRET_KEY=secrets.token_urlsafe(60))

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout


def test_data_dir_files_are_private_to_the_gateway_user(tmp_path):
    data = tmp_path / "fresh"

    done = manage(data, "migrate", "--noinput", "-v", "0")

    assert done.returncode == 0, done.stderr
    for path in (data, data / "db.sqlite3", data / "secret_key"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


@pytest.mark.django_db
@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_REDIRECT_EXEMPT=[r"^healthz$"],
    SECURE_HSTS_SECONDS=31_536_000,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
)
def test_behind_tls_plain_http_is_redirected_but_the_health_probe_is_not():
    client = Client()

    assert client.get("/admin/login/").status_code == 301  # the API itself has no middleware
    assert client.get("/healthz").status_code == 200
    secure = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_the_sqlite_wal_is_private_too(tmp_path):
    data = tmp_path / "wal"
    assert manage(data, "migrate", "--noinput", "-v", "0").returncode == 0
    # A write while the connection stays open leaves the WAL file beside the database.
    script = (
        "import os, stat\n"
        "from credentials.models import GatewaySettings\n"
        "GatewaySettings.load().save()\n"
        "wal = os.path.join(os.environ['DATA_DIR'], 'db.sqlite3-wal')\n"
        "print(os.path.exists(wal), "
        "oct(stat.S_IMODE(os.stat(wal).st_mode)) if os.path.exists(wal) else '-')\n"
    )

    done = manage(data, "shell", "-c", script)

    assert done.returncode == 0, done.stderr
    exists, mode = done.stdout.split()[-2:]
    assert exists == "True" and mode == "0o600"
