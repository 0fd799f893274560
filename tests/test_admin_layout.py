"""The admin at 1280×800 in Chromium: titles clear of their object tools, nothing too wide.

Each page is opened with a few rows of every kind, measured in the page (tests/browser.py) and
saved as a full-page screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page

from credentials.models import DisabledReason, ProxyEntry, ProxyHealth
from tests import browser, factories
from tests.usage.factories import UpstreamAttemptFactory, UsageRecordFactory
from usage.models import UsageStatus

PAGES = {
    "home": "admin:index",
    "credentials": "admin:credentials_credential_changelist",
    "usage-records": "admin:usage_usagerecord_changelist",
    "client-keys": "admin:credentials_clientkey_changelist",
    "proxy-pool": "admin:credentials_proxyentry_changelist",
    "attempts": "admin:usage_upstreamattempt_changelist",
}
CHANGELISTS = [name for name in PAGES if name != "home"]


@pytest.fixture
def admin_rows(transactional_db: None) -> None:
    """Write a few rows of each kind, in the states the lists show differently."""
    now = timezone.now()
    team = factories.CredentialGroupFactory(name="team-north")
    active = factories.CredentialFactory(
        name="primary account with a long operator label",
        subscription_title="KIRO PRO+",
        success_count=1520,
        last_used_at=now - timedelta(minutes=3),
    )
    active.groups.add(team)
    factories.CredentialFactory(cooldown_until=now + timedelta(minutes=10), failure_count=2)
    factories.CredentialFactory(enabled=False, disabled_reason=DisabledReason.QUOTA_EXCEEDED)
    factories.CredentialFactory(
        enabled=False, disabled_reason=DisabledReason.TOO_MANY_REFRESH_FAILURES, idc=True
    )
    factories.CredentialFactory(api_key=True, proxy_url="http://pool-a.example:3128")
    key = factories.ClientKeyFactory(name="ci runner", group=team, rpm_limit=60)
    factories.ClientKeyFactory(name="laptop", enabled=False)
    served = UsageRecordFactory(credential=active, client_key=key)
    UsageRecordFactory(failed=True, client_key=key, model_requested="claude-opus-4-1")
    UsageRecordFactory(status=UsageStatus.INTERRUPTED, credential=active, stream=False)
    UpstreamAttemptFactory(usage_record=served, credential=active)
    ProxyEntry.objects.create(
        url="http://user:secret@pool-a.example:3128",
        label="pool a",
        health=ProxyHealth.HEALTHY,
        latency_ms=120,
        last_checked_at=now,
    )
    ProxyEntry.objects.create(
        url="http://pool-b.example:3128",
        health=ProxyHealth.UNHEALTHY,
        consecutive_failures=4,
        auto_disabled=True,
        enabled=False,
    )


def open_admin_page(page: Page, name: str, request: pytest.FixtureRequest) -> Page:
    """Load one admin page, check it is the page asked for, and save its screenshot."""
    response = page.goto(reverse(PAGES[name]), wait_until="load")
    assert response is not None and response.status == 200, (name, response)
    assert "/login/" not in page.url, f"not signed in: {page.url}"
    if name in CHANGELISTS:
        page.wait_for_selector("table#result_list tbody tr")
    browser.screenshot(page, request.node.originalname, name)
    return page


@pytest.mark.parametrize("name", PAGES)
def test_the_title_is_clear_of_the_object_tools(
    name: str, admin_rows: None, admin_page: Page, request: pytest.FixtureRequest
) -> None:
    browser.assert_title_clear_of_tools(open_admin_page(admin_page, name, request))


@pytest.mark.parametrize("name", PAGES)
def test_the_page_fits_1280_pixels(
    name: str, admin_rows: None, admin_page: Page, request: pytest.FixtureRequest
) -> None:
    page = open_admin_page(admin_page, name, request)
    measure = browser.assert_fits_the_viewport(page)
    assert measure["result_list"] == (name in CHANGELISTS), measure


def test_the_home_draws_its_sparklines(
    admin_rows: None, admin_page: Page, request: pytest.FixtureRequest
) -> None:
    page = open_admin_page(admin_page, "home", request)
    page.wait_for_function(
        """() => {
            const all = document.querySelectorAll("canvas[data-sparkline]");
            return all.length === 4 && Array.from(all).every(
                (c) => c.getAttribute("data-rendered") === "true");
        }"""
    )
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll("canvas[data-sparkline]")).map(
            (c) => c.width > 0 && c.height > 0)"""
    )
    assert drawn == [True] * 4


@pytest.mark.timeout(120)
class DashboardLayoutTest(ChannelsLiveServerTestCase):
    """The usage dashboard at 1280×800, served by daphne as in production (its live feed)."""

    host = "127.0.0.1"
    ProtocolServerProcess = browser.DaphneWithFreshPools
    serve_static = False  # kiro_site.asgi already serves static files

    def setUp(self) -> None:
        super().setUp()
        for minutes in (5, 65, 130):
            UsageRecordFactory(created_at=timezone.now() - timedelta(minutes=minutes))
        UsageRecordFactory(failed=True, created_at=timezone.now() - timedelta(minutes=70))
        self.sessionid = browser.session_cookie(factories.make_superuser())

    @contextlib.contextmanager
    def dashboard(self) -> Iterator[Page]:
        """Open the dashboard once its three charts are drawn, and save its screenshot."""
        with browser.chromium() as chromium:
            page = browser.signed_in_page(chromium, self.live_server_url, self.sessionid)
            response = page.goto(reverse("admin:usage_usagerecord_dashboard"), wait_until="load")
            assert response is not None and response.status == 200, response
            page.wait_for_function(
                """() => document.querySelectorAll('canvas[data-chart][data-rendered="true"]')
                    .length === 3"""
            )
            browser.screenshot(page, self._testMethodName, "dashboard")
            yield page

    def test_the_dashboard_title_is_clear_of_the_object_tools(self) -> None:
        with self.dashboard() as page:
            browser.assert_title_clear_of_tools(page)

    def test_the_dashboard_fits_1280_pixels(self) -> None:
        with self.dashboard() as page:
            measure = browser.assert_fits_the_viewport(page)
        assert measure["tables"], "the dashboard's breakdown tables were not measured"
