"""Operator operations against the fake upstream: balance, token, models, model test, overage,
verify, proxy health (spec kiro-ops §7, §8.1–§8.3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from credentials import operations
from credentials.models import Credential, ProxyEntry, ProxyHealth
from gateway.fakekiro.script import Script
from tests.gateway.conftest import free_port


class _Probe(BaseHTTPRequestHandler):
    """Answers every GET with 204: both the proxy and the probe target in one server."""

    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def probe_server(settings) -> Iterator[int]:
    """A local HTTP server that plays a proxy; the probe URL is served through it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.KIRO_PROXY_PROBE_URL = f"http://127.0.0.1:{port}/generate_204"
    _Probe.seen = []
    yield port
    server.shutdown()
    server.server_close()


def usage_calls(gateway) -> int:
    return len(gateway.fake.requests_for("usage"))


# --- balance ------------------------------------------------------------------------------------


async def test_it_stores_the_balance_title_email_and_overage(gateway):
    credential, account = await _add(
        gateway, subscription_title="KIRO PRO", current_usage=150.0, usage_limit=1000.0,
        free_trial={"freeTrialStatus": "ACTIVE", "usageLimitWithPrecision": 500.0,
                    "currentUsageWithPrecision": 50.0},
        bonuses=[{"status": "ACTIVE", "usageLimit": 100.0, "currentUsage": 0.0}],
    )  # fmt: skip
    await _set(credential, email="", subscription_title="KIRO FREE")

    result = await operations.check_balance(credential_id=credential.pk)

    assert result.cached is False
    assert result.balance["usage_limit"] == 1600.0
    assert result.balance["current_usage"] == 200.0
    row = await Credential.objects.aget(pk=credential.pk)
    assert row.subscription_title == "KIRO PRO"
    assert row.email == account.email
    assert row.overage_capability == "OVERAGE_CAPABLE"
    assert row.overage_status == "DISABLED"
    assert row.balance["remaining"] == 1400.0
    assert row.balance_checked_at is not None


async def test_it_does_not_overwrite_a_known_email(gateway):
    credential, _ = await _add(gateway)
    await _set(credential, email="kept@example.com")

    await operations.check_balance(credential_id=credential.pk)

    assert (await Credential.objects.aget(pk=credential.pk)).email == "kept@example.com"


async def test_it_serves_the_balance_from_cache_for_five_minutes(gateway):
    credential, _ = await _add(gateway)
    await operations.check_balance(credential_id=credential.pk)
    calls = usage_calls(gateway)

    again = await operations.check_balance(credential_id=credential.pk)

    assert again.cached is True
    assert usage_calls(gateway) == calls


async def test_it_fetches_again_after_five_minutes(gateway):
    credential, _ = await _add(gateway)
    await operations.check_balance(credential_id=credential.pk)
    old = timezone.now() - timedelta(minutes=5, seconds=1)
    await Credential.objects.filter(pk=credential.pk).aupdate(balance_checked_at=old)
    calls = usage_calls(gateway)

    again = await operations.check_balance(credential_id=credential.pk)

    assert again.cached is False
    assert usage_calls(gateway) == calls + 1


async def test_a_failed_balance_check_raises_an_operation_error(gateway):
    credential, account = await _add(gateway)
    gateway.fake.script(Script.server_error(), route="usage", account=account.id)

    with pytest.raises(operations.OperationError, match="500"):
        await operations.check_balance(credential_id=credential.pk)


# --- token --------------------------------------------------------------------------------------


async def test_refresh_token_refreshes_even_a_fresh_token(gateway):
    credential, account = await _add(gateway)
    await operations.refresh_token(credential_id=credential.pk)
    before = gateway.fake.refresh_count(account=account.id)

    await operations.refresh_token(credential_id=credential.pk)

    assert gateway.fake.refresh_count(account=account.id) == before + 1


async def test_refresh_token_refuses_api_key_credentials(gateway):
    credential, _ = await _add(gateway, auth="api_key")

    with pytest.raises(operations.OperationError, match="API-key"):
        await operations.refresh_token(credential_id=credential.pk)


# --- models -------------------------------------------------------------------------------------


async def test_list_models_returns_token_limits_and_caches_the_ids(gateway):
    credential, _ = await _add(gateway, models=["claude-sonnet-4.5", "claude-haiku-4.5"])

    models = await operations.list_models(credential_id=credential.pk)

    assert {m.model_id for m in models} == {"claude-sonnet-4.5", "claude-haiku-4.5"}
    assert all(m.max_input_tokens and m.max_output_tokens for m in models)
    row = await Credential.objects.aget(pk=credential.pk)
    assert row.available_models == ["claude-haiku-4.5", "claude-sonnet-4.5"]


async def test_test_model_reports_text_latency_and_credits(gateway):
    credential, account = await _add(gateway)
    gateway.fake.script(
        Script.text("pong from the fake") + Script.metering(0.25), account=account.id
    )

    result = await operations.test_model(credential_id=credential.pk, model="claude-sonnet-4.5")

    assert result.ok and result.status == 200
    assert result.text == "pong from the fake"
    assert result.credits == 0.25
    assert result.latency_ms >= 0
    chat = gateway.fake.requests_for("chat")[-1]
    assert chat.problems == []


async def test_test_model_gives_502_on_an_upstream_error(gateway):
    credential, account = await _add(gateway)
    gateway.fake.script(Script.server_error(), account=account.id)

    result = await operations.test_model(credential_id=credential.pk, model="claude-sonnet-4.5")

    assert not result.ok
    assert result.status == 502
    assert "500" in result.error


async def test_test_model_gives_502_on_an_empty_reply(gateway):
    credential, account = await _add(gateway)
    gateway.fake.script(Script.empty(), account=account.id)

    result = await operations.test_model(credential_id=credential.pk, model="claude-sonnet-4.5")

    assert (result.ok, result.status, result.error) == (False, 502, "empty reply")


# --- overage ------------------------------------------------------------------------------------


async def test_overage_can_be_switched_on_where_supported(gateway):
    credential, account = await _add(gateway)

    status = await operations.set_overage(credential_id=credential.pk, enabled=True)

    assert status == "ENABLED"
    assert gateway.fake.account(account.id).overage_status == "ENABLED"
    row = await Credential.objects.aget(pk=credential.pk)
    assert row.overage_status == "ENABLED"
    assert row.balance_checked_at is None  # spec §8.1: the cache entry is invalidated


async def test_overage_is_refused_when_not_capable(gateway):
    credential, account = await _add(gateway, overage_capability="NOT_OVERAGE_CAPABLE")

    with pytest.raises(operations.OperationError, match="does not support"):
        await operations.set_overage(credential_id=credential.pk, enabled=True)

    assert gateway.fake.requests_for("preference") == []
    assert gateway.fake.account(account.id).overage_status == "DISABLED"


# --- verify -------------------------------------------------------------------------------------


async def test_verify_reports_each_credential(gateway):
    good, _ = await _add(gateway)
    bad, bad_account = await _add(gateway)
    gateway.fake.script(Script.server_error(), route="usage", account=bad_account.id, times=None)

    items = {i.credential_id: i for i in await operations.verify(credential_ids=[good.pk, bad.pk])}

    assert items[good.pk].ok
    assert not items[bad.pk].ok
    assert "500" in items[bad.pk].detail


# --- proxy health -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_working_proxy_is_healthy_with_its_latency(probe_server):
    entry = await ProxyEntry.objects.acreate(url=f"http://u:pw@127.0.0.1:{probe_server}")

    [check] = await operations.check_proxies(proxy_ids=[entry.pk])

    assert check.healthy
    row = await ProxyEntry.objects.aget(pk=entry.pk)
    assert row.health == ProxyHealth.HEALTHY
    assert row.latency_ms is not None
    assert row.last_checked_at is not None
    assert _Probe.seen == [f"http://127.0.0.1:{probe_server}/generate_204"]


@pytest.mark.django_db(transaction=True)
async def test_three_failures_in_a_row_disable_a_proxy(probe_server):
    entry = await ProxyEntry.objects.acreate(url=f"http://127.0.0.1:{free_port()}")

    for expected_disabled in (False, False, True):
        [check] = await operations.check_proxies(proxy_ids=[entry.pk])
        assert not check.healthy
        assert check.disabled is expected_disabled

    row = await ProxyEntry.objects.aget(pk=entry.pk)
    assert (row.enabled, row.auto_disabled, row.consecutive_failures) == (False, True, 3)
    assert row.health == ProxyHealth.UNHEALTHY


@pytest.mark.django_db(transaction=True)
async def test_check_all_probes_only_enabled_proxies(probe_server):
    on = await ProxyEntry.objects.acreate(url=f"http://127.0.0.1:{probe_server}")
    await ProxyEntry.objects.acreate(url=f"http://127.0.0.1:{probe_server}/x", enabled=False)

    checks = await operations.check_proxies()

    assert [c.proxy_id for c in checks] == [on.pk]


@pytest.mark.django_db(transaction=True)
async def test_a_socks4_proxy_is_reported_unhealthy_not_crashing(probe_server):
    entry = await ProxyEntry.objects.acreate(url="socks4://127.0.0.1:1080")

    [check] = await operations.check_proxies(proxy_ids=[entry.pk])

    assert not check.healthy
    assert "socks4" in check.detail


# --- helpers ------------------------------------------------------------------------------------


async def _add(gateway, **values):
    from asgiref.sync import sync_to_async

    return await sync_to_async(gateway.add_credential)(**values)


async def _set(credential: Credential, **values) -> None:
    await Credential.objects.filter(pk=credential.pk).aupdate(**values)


def test_probe_url_is_read_at_call_time(settings):
    settings.KIRO_PROXY_PROBE_URL = "http://example.invalid/probe"

    assert operations.probe_url() == "http://example.invalid/probe"
