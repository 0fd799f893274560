"""The operator home in headless Chromium: Chart.js draws every sparkline."""

from __future__ import annotations

import base64
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credentials.models import DisabledReason, JobLock
from tests import factories
from tests.usage.browser import ChromiumPipe, DaphneWithFreshPools
from tests.usage.factories import UsageRecordFactory
from tests.usage.test_live import ensure_roles

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.mark.timeout(120)
class ChromiumHomeTest(ChannelsLiveServerTestCase):
    """Open the admin index in headless Chromium, served by daphne."""

    host = "127.0.0.1"
    ProtocolServerProcess = DaphneWithFreshPools
    serve_static = False  # kiro_site.asgi already serves static files

    def test_the_home_draws_its_sparklines(self) -> None:
        ensure_roles()
        viewer = factories.make_viewer()
        now = timezone.now()
        for index in range(3):
            factories.CredentialFactory(
                name=f"pro {index}",
                balance={
                    "current_usage": 300 * index,
                    "usage_limit": 1000,
                    "remaining": 1000 - 300 * index,
                },
                available_models=["claude-sonnet-4.5", "claude-haiku-4.5"],
            )
        factories.CredentialFactory(cooldown_until=now + timedelta(minutes=5))
        factories.CredentialFactory(enabled=False, disabled_reason=DisabledReason.QUOTA_EXCEEDED)
        for minutes in range(0, 24 * 60, 17):
            UsageRecordFactory(
                created_at=now - timedelta(minutes=minutes), latency_ms=500 + minutes
            )
        UsageRecordFactory(created_at=now - timedelta(minutes=3), failed=True)
        JobLock.objects.create(
            name="balances", last_run_at=now, last_result="3 refreshed, 0 failed"
        )
        client = Client()
        client.force_login(viewer)

        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            browser = ChromiumPipe(profile)
            try:
                state = self._open_home(browser, client.cookies["sessionid"].value)
            finally:
                browser.close()

        assert state["rendered"] == ["true"] * 4, state
        assert state["cards"] == 3, state

    def _open_home(self, browser: ChromiumPipe, sessionid: str) -> dict[str, Any]:
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
            height=1800,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", session, url=self.live_server_url + reverse("admin:index"))
        probe = """JSON.stringify({
            rendered: Array.from(document.querySelectorAll("canvas[data-sparkline]"))
                .map(function (c) { return c.getAttribute("data-rendered"); }),
            cards: document.querySelectorAll(".home-card").length
        })"""
        deadline = time.monotonic() + 30
        while True:
            result = browser.call("Runtime.evaluate", session, expression=probe, returnByValue=True)
            state = json.loads(result["result"].get("value") or "{}")
            if state.get("rendered") == ["true"] * 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        shot = browser.call("Page.captureScreenshot", session, format="png")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "admin-home.png").write_bytes(base64.b64decode(shot["data"]))
        return state
