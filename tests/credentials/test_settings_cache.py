"""The per-process copy of the settings row (selectors.gateway_config, KIRO_SETTINGS_CACHE_SECS)."""

from __future__ import annotations

import pytest

from credentials import selectors, services
from credentials.models import GatewaySettings

pytestmark = pytest.mark.django_db


def _set_mode_behind_the_cache(mode: str) -> None:
    # A queryset UPDATE sends no signal: what another process's write looks like from here.
    GatewaySettings.objects.filter(pk=GatewaySettings.singleton_id).update(load_balancing_mode=mode)


def test_the_row_is_reused_until_the_ttl_runs_out(settings, monkeypatch):
    settings.KIRO_SETTINGS_CACHE_SECS = 2.0
    clock = [1000.0]
    monkeypatch.setattr(selectors.time, "monotonic", lambda: clock[0])
    assert selectors.gateway_config().load_balancing_mode == "priority"

    _set_mode_behind_the_cache("balanced")
    clock[0] += 1.5
    assert selectors.gateway_config().load_balancing_mode == "priority"
    clock[0] += 1.0
    assert selectors.gateway_config().load_balancing_mode == "balanced"


def test_a_save_in_this_process_applies_at_once(settings):
    settings.KIRO_SETTINGS_CACHE_SECS = 60.0
    assert selectors.gateway_config().load_balancing_mode == "priority"
    row = GatewaySettings.load()
    row.load_balancing_mode = "balanced"
    row.save()
    assert selectors.gateway_config().load_balancing_mode == "balanced"


def test_a_ttl_of_zero_reads_the_row_every_time(settings):
    settings.KIRO_SETTINGS_CACHE_SECS = 0
    selectors.gateway_config()
    _set_mode_behind_the_cache("balanced")
    assert selectors.gateway_config().load_balancing_mode == "balanced"


def test_moving_the_current_credential_updates_the_copy(settings):
    settings.KIRO_SETTINGS_CACHE_SECS = 60.0
    assert selectors.gateway_config().current_credential_id is None
    services.pool_set_current(credential_id=7)
    assert selectors.gateway_config().current_credential_id == 7
    assert GatewaySettings.load().current_credential_id == 7
