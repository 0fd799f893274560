"""The usage dashboard: its reads, who may open it, the admin filters, and the page in Chromium."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests import factories
from tests.usage.test_live import ensure_roles
from usage import dashboard
from usage.models import UsageRecord, UsageStatus

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
DASHBOARD = "admin:usage_usagerecord_dashboard"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def record(at: datetime, **values: Any) -> UsageRecord:
    defaults: dict[str, Any] = {
        "created_at": at,
        "endpoint": "messages",
        "model_requested": "claude-sonnet-4-5",
        "status": UsageStatus.SUCCESS,
        "input_tokens": 100,
        "output_tokens": 10,
        "credits": 0.5,
    }
    return UsageRecord.objects.create(**{**defaults, **values})


@pytest.fixture
def seeded(db: None) -> dict[str, Any]:
    """Seed records around NOW: two in the 11:00 hour, one at 09:59, older ones outside 24 h."""
    busy, idle = factories.CredentialFactory(name="busy"), factories.CredentialFactory()
    key = factories.ClientKeyFactory(name="ci runner")
    record(NOW.replace(hour=11, minute=5), credential=busy, client_key=key)
    record(
        NOW.replace(hour=11, minute=55),
        status=UsageStatus.ERROR,
        error_type="quota_exhausted",
        input_tokens=0,
        output_tokens=0,
        credits=0,
        credential=busy,
        client_key=key,
        model_requested="claude-opus-4-1",
    )
    record(NOW.replace(hour=9, minute=59), status=UsageStatus.INTERRUPTED, credential=idle)
    record(NOW - timedelta(hours=25), status=UsageStatus.REJECTED, error_type="rate_limited")
    record(NOW - timedelta(days=3), input_tokens=1000, output_tokens=200, credits=2.0)
    record(NOW - timedelta(days=31))  # outside every window
    record(NOW + timedelta(minutes=1))  # after `now`: not counted
    return {"busy": busy, "idle": idle, "key": key}


def by_bucket(points: list[dashboard.SeriesPoint]) -> dict[str, dashboard.SeriesPoint]:
    return {point["bucket"]: point for point in points}


def test_it_buckets_the_last_24_hours_by_hour(seeded: dict[str, Any]) -> None:
    data = dashboard.usage_dashboard(window="24h", now=NOW)
    points = by_bucket(data["series"])
    # 12:30 yesterday to 12:30 today touches 25 hours, every one present even when empty.
    assert len(data["series"]) == 25
    assert data["series"][0]["bucket"] == "2026-03-09T12:00:00+00:00"
    assert data["series"][-1]["bucket"] == "2026-03-10T12:00:00+00:00"
    eleven = points["2026-03-10T11:00:00+00:00"]
    assert (eleven["requests"], eleven["errors"], eleven["interrupted"]) == (2, 1, 0)
    assert (eleven["input_tokens"], eleven["output_tokens"], eleven["credits"]) == (100, 10, 0.5)
    nine = points["2026-03-10T09:00:00+00:00"]
    assert (nine["requests"], nine["interrupted"]) == (1, 1)
    assert points["2026-03-10T10:00:00+00:00"]["requests"] == 0
    assert data["totals"] == {
        "requests": 3,
        "errors": 1,
        "interrupted": 1,
        "input_tokens": 200,
        "output_tokens": 20,
        "cache_creation_tokens": 0,
        "cache_read_tokens": 0,
        "credits": 1.0,
    }


def test_it_buckets_the_last_7_days_by_day(seeded: dict[str, Any]) -> None:
    data = dashboard.usage_dashboard(window="7d", now=NOW)
    points = by_bucket(data["series"])
    assert len(data["series"]) == 8
    today = points["2026-03-10T00:00:00+00:00"]
    assert (today["requests"], today["errors"], today["credits"]) == (3, 1, 1.0)
    yesterday = points["2026-03-09T00:00:00+00:00"]
    assert (yesterday["requests"], yesterday["errors"]) == (1, 1)  # rejected counts as error
    three_days_ago = points["2026-03-07T00:00:00+00:00"]
    assert (three_days_ago["input_tokens"], three_days_ago["output_tokens"]) == (1000, 200)
    assert data["totals"]["requests"] == 5


def test_the_30_day_window_holds_31_daily_buckets(seeded: dict[str, Any]) -> None:
    data = dashboard.usage_dashboard(window="30d", now=NOW)
    assert len(data["series"]) == 31
    assert data["totals"]["requests"] == 5


def test_it_buckets_days_in_the_current_time_zone(db: None) -> None:
    record(datetime(2026, 3, 9, 23, 30, tzinfo=UTC))  # 00:30 on the 10th in Berlin
    record(datetime(2026, 3, 9, 22, 30, tzinfo=UTC))  # 23:30 on the 9th in Berlin
    with timezone.override("Europe/Berlin"):
        points = by_bucket(dashboard.usage_dashboard(window="7d", now=NOW)["series"])
    assert points["2026-03-10T00:00:00+01:00"]["requests"] == 1
    assert points["2026-03-09T00:00:00+01:00"]["requests"] == 1


def test_it_breaks_usage_down_by_model_credential_and_key(seeded: dict[str, Any]) -> None:
    data = dashboard.usage_dashboard(window="24h", now=NOW)
    assert [(row["label"], row["requests"]) for row in data["by_model"]] == [
        ("claude-sonnet-4-5", 2),
        ("claude-opus-4-1", 1),
    ]
    busy, idle = seeded["busy"], seeded["idle"]
    rows = data["by_credential"]
    assert [(row["id"], row["label"], row["requests"], row["errors"]) for row in rows] == [
        (busy.pk, f"#{busy.pk} busy", 2, 1),
        (idle.pk, f"#{idle.pk} {idle.email}", 1, 0),
    ]
    assert [(row["label"], row["requests"]) for row in data["by_client_key"]] == [
        ("ci runner", 2),
        ("(none)", 1),
    ]


def test_it_ranks_error_types(seeded: dict[str, Any]) -> None:
    record(NOW - timedelta(hours=2), status=UsageStatus.ERROR, error_type="rate_limited")
    record(NOW - timedelta(hours=3), status=UsageStatus.ERROR, error_type="rate_limited")
    data = dashboard.usage_dashboard(window="24h", now=NOW)
    assert data["top_errors"] == [
        {"error_type": "rate_limited", "count": 2},
        {"error_type": "quota_exhausted", "count": 1},
    ]


def test_an_unknown_window_falls_back_to_24_hours(db: None) -> None:
    assert dashboard.usage_dashboard(window="forever", now=NOW)["window"] == "24h"


# -- the page and who may see it ------------------------------------------------------------


@pytest.mark.parametrize("persona", ["superuser", "operator", "viewer"])
def test_staff_with_view_permission_see_the_dashboard(
    persona: str, db: None, request: pytest.FixtureRequest, admin_client_as: Any
) -> None:
    client = admin_client_as(request.getfixturevalue(persona))
    response = client.get(reverse(DASHBOARD), {"window": "7d"})
    assert response.status_code == 200
    assert b'id="usage-dashboard-data"' in response.content
    assert b"vendor/chart.js/chart.umd.min.js" in response.content
    assert response.context["data"]["window"] == "7d"


def test_an_outsider_is_sent_to_the_login_page(outsider: Any, admin_client_as: Any) -> None:
    response = admin_client_as(outsider).get(reverse(DASHBOARD))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_view_permission_are_refused(db: None, admin_client_as: Any) -> None:
    from django.contrib.auth.models import User

    clerk = User.objects.create_user(username="clerk", is_staff=True)
    assert admin_client_as(clerk).get(reverse(DASHBOARD)).status_code == 403


def test_the_admin_index_and_usage_list_link_to_the_dashboard(
    viewer: Any, admin_client_as: Any
) -> None:
    client = admin_client_as(viewer)
    url = reverse(DASHBOARD).encode()
    assert url in client.get(reverse("admin:index")).content
    assert url in client.get(reverse("admin:usage_usagerecord_changelist")).content


def test_the_admin_index_has_no_dashboard_link_without_permission(
    db: None, admin_client_as: Any
) -> None:
    from django.contrib.auth.models import User

    clerk = User.objects.create_user(username="clerk", is_staff=True)
    response = admin_client_as(clerk).get(reverse("admin:index"))
    assert reverse(DASHBOARD).encode() not in response.content


def test_the_page_keeps_secrets_out(
    seeded: dict[str, Any], viewer: Any, admin_client_as: Any
) -> None:
    response = admin_client_as(viewer).get(reverse(DASHBOARD), {"window": "30d"})
    busy, key = seeded["busy"], seeded["key"]
    for secret in (busy.refresh_token, busy.access_token, key.plaintext, key.key_hash):
        assert secret.encode() not in response.content


def test_the_page_escapes_client_supplied_model_names(
    db: None, viewer: Any, admin_client_as: Any
) -> None:
    record(datetime.now(UTC), model_requested="</script><script>alert(1)</script>")
    response = admin_client_as(viewer).get(reverse(DASHBOARD))
    assert b"<script>alert(1)" not in response.content


# -- usage list filters ---------------------------------------------------------------------


def changelist_ids(client: Client, **params: str) -> set[int]:
    response = client.get(reverse("admin:usage_usagerecord_changelist"), params)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_the_rule_filter_matches_whole_rule_names(viewer: Any, admin_client_as: Any) -> None:
    now = datetime.now(UTC)
    both = record(now, normalizer_rules=["fold_system_message", "drop_billing_header"])
    one = record(now, normalizer_rules=["drop_billing_header"])
    longer = record(now, normalizer_rules=["drop_billing_header_v2"])
    record(now, normalizer_rules=[])
    client = admin_client_as(viewer)
    assert changelist_ids(client, normalizer_rule="drop_billing_header") == {both.pk, one.pk}
    assert changelist_ids(client, normalizer_rule="fold_system_message") == {both.pk}
    assert changelist_ids(client, normalizer_rule="drop_billing_header_v2") == {longer.pk}


def test_the_rule_filter_offers_the_rules_seen(viewer: Any, admin_client_as: Any) -> None:
    record(datetime.now(UTC), normalizer_rules=["merge_consecutive_user", "prefill_dropped"])
    record(datetime.now(UTC), normalizer_rules=["prefill_dropped"])
    response = admin_client_as(viewer).get(reverse("admin:usage_usagerecord_changelist"))
    content = response.content.decode()
    assert "?normalizer_rule=merge_consecutive_user" in content
    assert "?normalizer_rule=prefill_dropped" in content


def test_the_list_filters_by_status_credential_key_and_error_type(
    seeded: dict[str, Any], viewer: Any, admin_client_as: Any
) -> None:
    client = admin_client_as(viewer)
    busy, key = seeded["busy"], seeded["key"]
    errored = UsageRecord.objects.get(error_type="quota_exhausted")
    assert changelist_ids(client, status="error") == {errored.pk}
    assert changelist_ids(client, error_type="quota_exhausted") == {errored.pk}
    assert changelist_ids(client, model_requested="claude-opus-4-1") == {errored.pk}
    assert len(changelist_ids(client, credential__id__exact=str(busy.pk))) == 2
    assert len(changelist_ids(client, client_key__id__exact=str(key.pk))) == 2


# -- the page in a real browser -------------------------------------------------------------


class _ChromiumPipe:
    """A Chrome DevTools Protocol session over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, url_user_data_dir: str) -> None:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            pytest.fail("chromium is not installed (make test installs it)")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:
            # Chromium reads commands on fd 3 and writes answers on fd 4; go through high
            # numbers first so that neither end clobbers the other.
            os.dup2(to_browser_r, 200)
            os.dup2(from_browser_w, 201)
            os.dup2(200, 3)
            os.dup2(201, 4)

        self.process = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={url_user_data_dir}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0

    def call(
        self, method: str, session: str | None = None, timeout: float = 20, **params: Any
    ) -> Any:
        """Send one command and return its result, skipping the events in between."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer {method}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


class _DaphneWithFreshPools(DaphneProcess):
    """Daphne in a forked child that keeps the test database and opens its own Postgres pool.

    The parent's pool objects are copied by fork with their sockets; using them from the child
    would interleave two processes on one connection, so the child forgets them (not closes:
    closing would hang up the parent's connections). The forked settings already name the test
    database; channels' own setup would prefix "test_" a second time on Postgres. Websocket
    consumers run sync code on asgiref's process-wide single-thread executor; if an earlier async
    test started its worker thread, the fork copied the executor but not the thread, and every
    call would wait forever, so the child gets a new executor.
    """

    def run(self) -> None:
        from asgiref.sync import SyncToAsync
        from django.db import connections

        self.setup = None
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

        for connection in connections.all():
            pools = getattr(type(connection), "_connection_pools", None)
            if pools is not None:
                pools.clear()
        super().run()


@pytest.mark.timeout(120)
class ChromiumDashboardTest(ChannelsLiveServerTestCase):
    """Open the dashboard in headless Chromium, served by daphne with websockets."""

    host = "127.0.0.1"
    ProtocolServerProcess = _DaphneWithFreshPools
    serve_static = False  # kiro_site.asgi already serves static files

    def test_the_dashboard_draws_its_charts_and_opens_the_live_feed(self) -> None:
        ensure_roles()
        viewer = factories.make_viewer()
        now = datetime.now(UTC)
        for minutes in (5, 65, 130, 300):
            record(now - timedelta(minutes=minutes))
        record(now - timedelta(minutes=70), status=UsageStatus.ERROR, error_type="quota_exhausted")
        client = Client()
        client.force_login(viewer)
        sessionid = client.cookies["sessionid"].value

        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            browser = _ChromiumPipe(profile)
            try:
                state = self._open_dashboard(browser, sessionid)
            finally:
                browser.close()

        assert state["rendered"] == ["true", "true", "true"], state
        assert state["live"] == "open", state
        assert state["requests"] == "5", state

    def _open_dashboard(self, browser: _ChromiumPipe, sessionid: str) -> dict[str, Any]:
        """Sign in through the cookie, load the page, wait for the charts, save a screenshot."""
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.call(
            "Network.setCookie",
            session,
            name="sessionid",
            value=sessionid,
            url=self.live_server_url,
            httpOnly=True,
        )
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=1280,
            height=1600,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", session, url=self.live_server_url + reverse(DASHBOARD))
        probe = """JSON.stringify({
            rendered: Array.from(document.querySelectorAll("canvas[data-chart]"))
                .map(function (c) { return c.getAttribute("data-rendered"); }),
            live: (document.querySelector("#usage-live table") || {getAttribute: function () {}})
                .getAttribute("data-live-state"),
            requests: (document.getElementById("total-requests") || {}).textContent
        })"""
        deadline = time.monotonic() + 30
        while True:
            result = browser.call("Runtime.evaluate", session, expression=probe, returnByValue=True)
            state = json.loads(result["result"].get("value") or "{}")
            done = state.get("rendered") == ["true"] * 3 and state.get("live") == "open"
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        shot = browser.call("Page.captureScreenshot", session, format="png")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "usage-dashboard.png").write_bytes(base64.b64decode(shot["data"]))
        return state
