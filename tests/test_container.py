"""The container, checked as far as this machine can without a container engine: the
Dockerfile passes hadolint (in `make lint`), its entrypoint prepares a fresh DATA_DIR when run
directly, and compose.yaml has the services a deployment needs. The image itself is not built
here (README: Production)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def test_the_entrypoint_prepares_a_fresh_data_dir_then_runs_the_command(tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DATA_DIR": str(data), "PYTHON": sys.executable}

    done = subprocess.run(
        [str(ENTRYPOINT), "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "System check identified no issues" in done.stdout
    for name in ("db.sqlite3", "secret_key", "first-run.txt"):
        path = data / name
        assert path.is_file(), name
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, name


def test_the_dockerfile_runs_unprivileged_with_a_data_volume_and_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()

    assert text.startswith("# ") and "FROM python:3.11-slim" in text
    assert "USER 10001:10001" in text
    assert 'VOLUME ["/data"]' in text
    assert "HEALTHCHECK" in text and "/healthz" in text and "KIRO_HEALTH_PORT" in text
    assert "KIRO_HEALTH_PORT=8992" in text and "EXPOSE 8990 8992" in text
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text


def test_compose_runs_postgres_redis_replicas_and_the_job_runner():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]

    assert set(services) == {"postgres", "redis", "setup", "gateway", "jobs", "otel-collector"}
    assert services["otel-collector"]["profiles"] == ["otel"]  # optional
    gateway, jobs, setup = services["gateway"], services["jobs"], services["setup"]
    assert gateway["command"] == ["serve", "--no-jobs"] and gateway["deploy"]["replicas"] >= 2
    assert jobs["command"] == ["run_jobs"] and setup["command"] == ["bootstrap"]
    assert jobs["healthcheck"] == {"disable": True}  # the image's probe is for the server
    assert "8992-8993:8992" in gateway["ports"]
    for service in (gateway, jobs, setup):
        env = service["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith(
            "redis://"
        )
        assert "gateway-data:/data" in service["volumes"]
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env
    for service in (gateway, jobs):
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert set(setup["depends_on"]) == {"postgres", "redis"}
    assert {"gateway-data", "postgres-data"} <= set(compose["volumes"])
