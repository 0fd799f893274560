"""One test per row of the classification table (spec kiro-protocol §7.2, Z's rows).

Each asserts what the client receives, what the credential's state becomes, and which
upstream attempts were recorded.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from credentials.models import Credential
from gateway.fakekiro.script import Script
from tests.gateway.conftest import free_port
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 128,
    "messages": [{"role": "user", "content": "ping"}],
}


def post(gateway, body=None, *, path="/v1/messages") -> httpx.Response:
    return httpx.post(
        gateway.base_url + path, json=body or BODY, timeout=30, headers={"x-api-key": gateway.key}
    )


def attempts() -> list[tuple[int | None, str]]:
    record = UsageRecord.objects.get()
    return [(a.credential_id, a.outcome) for a in record.attempts.order_by("attempt")]


@pytest.fixture
def pair(gateway):
    """Two credentials: A (priority 0, tried first) and B (priority 1)."""
    a, account_a = gateway.add_credential(priority=0)
    b, account_b = gateway.add_credential(priority=1)
    return a, account_a, b, account_b


def fresh(credential: Credential) -> Credential:
    return Credential.objects.get(pk=credential.pk)


@pytest.mark.parametrize("fault", [Script.quota_exhausted, Script.overage_exhausted])
def test_it_disables_an_exhausted_credential_and_fails_over(gateway, pair, fault):
    a, account_a, b, _ = pair
    gateway.fake.script(fault(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert (fresh(a).enabled, fresh(a).disabled_reason) == (False, "QuotaExceeded")
    assert attempts() == [(a.pk, "quota_exhausted"), (b.pk, "success")]
    assert UsageRecord.objects.get().credential_id == b.pk


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Script.improperly_formed, "Upstream rejected the request: Improperly formed request."),
        (Script.content_length_exceeded, "Context window is full."),
        (Script.input_too_long, "Input is too long."),
        (Script.tool_use_result_mismatch, "Invalid message sequence: tool_use and tool_result"),
        (Script.tool_schema_invalid, "Invalid message sequence"),
    ],
)
def test_it_answers_an_upstream_400_with_a_400_naming_the_problem(gateway, pair, fault, message):
    a, account_a, _, _ = pair
    gateway.fake.script(fault(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert message in response.json()["error"]["message"]
    assert fresh(a).enabled and fresh(a).failure_count == 0
    assert attempts() == [(a.pk, "bad_request")]
    assert UsageRecord.objects.get().status == "rejected"


def test_it_disables_a_suspended_credential_and_fails_over(gateway, pair):
    a, account_a, b, _ = pair
    gateway.fake.script(Script.suspended(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert (fresh(a).enabled, fresh(a).disabled_reason) == (False, "Suspended")
    assert attempts() == [(a.pk, "account_suspended"), (b.pk, "success")]


def test_it_force_refreshes_once_on_an_invalid_bearer_and_retries(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.bearer_invalid(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(a.pk, "auth_failed"), (a.pk, "success")]
    assert gateway.fake.refresh_count(account=account_a.id) == 2  # first use + forced
    assert fresh(a).failure_count == 0


def test_it_counts_an_auth_failure_and_switches(gateway, pair):
    a, account_a, b, _ = pair
    gateway.fake.script(Script.fault(401, '{"message":"Unauthorized"}'), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(a.pk, "auth_failed"), (b.pk, "success")]
    assert fresh(a).total_failure_count == 1


def test_three_auth_failures_in_a_row_disable_the_credential(gateway):
    a, account_a = gateway.add_credential()
    gateway.fake.script(Script.fault(403, '{"message":"Forbidden"}'), account=account_a.id, times=3)

    statuses = [post(gateway).status_code for _ in range(3)]

    assert statuses == [502, 502, 502]
    assert (fresh(a).enabled, fresh(a).disabled_reason) == (False, "TooManyFailures")


def test_it_cools_a_throttled_credential_down_and_fails_over(gateway, pair):
    a, account_a, b, _ = pair
    gateway.fake.script(Script.throttled(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert fresh(a).enabled and fresh(a).cooldown_until is not None
    assert attempts() == [(a.pk, "account_throttled"), (b.pk, "success")]


def test_it_answers_429_with_the_cooldown_when_the_only_credential_is_throttled(gateway):
    a, account_a = gateway.add_credential()
    gateway.fake.script(Script.throttled(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 1790 <= int(response.headers["retry-after"]) <= 1800
    assert fresh(a).cooldown_until is not None


def test_it_passes_a_throttle_retry_after_to_the_client_at_once(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.throttled(retry_after=42), account=account_a.id)

    response = post(gateway)

    assert (response.status_code, response.headers["retry-after"]) == (429, "42")
    assert attempts() == [(a.pk, "account_throttled")]


def test_it_fails_fast_on_a_gateway_timeout(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.gateway_timeout(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 504
    assert attempts() == [(a.pk, "transient")]


def test_it_retries_a_5xx_on_the_same_credential(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.server_error(500), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(a.pk, "transient"), (a.pk, "success")]
    assert fresh(a).enabled and fresh(a).failure_count == 0


def test_it_answers_overloaded_when_503s_exhaust_the_budget(gateway):
    a, account_a = gateway.add_credential()
    gateway.fake.script(Script.server_error(503), account=account_a.id, times=None)

    response = post(gateway)

    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert attempts() == [(a.pk, "transient")] * 3  # 3 per credential
    assert fresh(a).enabled


def test_it_passes_a_plain_429_retry_after_to_the_client(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.rate_limited(retry_after=7), account=account_a.id)

    response = post(gateway)

    assert (response.status_code, response.headers["retry-after"]) == (429, "7")
    assert fresh(a).enabled and fresh(a).cooldown_until is None


def test_it_retries_a_plain_429_without_retry_after(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.rate_limited(), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(a.pk, "transient"), (a.pk, "success")]


def test_it_fails_at_once_on_another_4xx(gateway, pair):
    a, account_a, _, _ = pair
    gateway.fake.script(Script.fault(404, '{"message":"no such route"}'), account=account_a.id)

    response = post(gateway)

    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    assert attempts() == [(a.pk, "bad_request")]


def test_it_retries_network_errors_without_penalty_then_fails_over(gateway, pair):
    a, account_a, b, _ = pair
    a.access_token = account_a.access_token  # fresh token: no refresh through the dead proxy
    a.expires_at = timezone.now() + timedelta(hours=1)
    a.proxy_url = f"http://127.0.0.1:{free_port()}"
    # A's list known: its cold list fetch would fail through the dead proxy, leaving B the
    # only "confirmed" credential, tried first (issue 9 fetches missing lists first).
    a.available_models = list(account_a.models)
    a.models_checked_at = timezone.now()
    a.save()

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(a.pk, "network_error")] * 3 + [(b.pk, "success")]
    assert fresh(a).enabled and fresh(a).failure_count == 0


def test_it_answers_503_when_no_credential_exists(gateway):
    response = post(gateway)

    assert response.status_code == 503
    assert "No upstream credential is available" in response.json()["error"]["message"]
    assert UsageRecord.objects.get().error_type == "no_credentials"


def test_it_uses_only_the_key_groups_credentials(gateway):
    from credentials.models import ClientKey, CredentialGroup

    gateway.add_credential(priority=0)
    b, _ = gateway.add_credential(priority=1)
    team = CredentialGroup.objects.create(name="team-b")
    b.groups.add(team)
    ClientKey.objects.update(group=team)

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(b.pk, "success")]


def test_opus_skips_free_credentials(gateway):
    a, _ = gateway.add_credential(priority=0)
    b, _ = gateway.add_credential(priority=1)
    Credential.objects.filter(pk=a.pk).update(subscription_title="KIRO FREE")

    response = post(gateway, BODY | {"model": "claude-opus-4-5"})

    assert response.status_code == 200
    assert attempts() == [(b.pk, "success")]


def test_balanced_mode_prefers_the_least_used_credential(gateway):
    from credentials.models import GatewaySettings

    a, _ = gateway.add_credential(priority=0)
    b, _ = gateway.add_credential(priority=1)
    Credential.objects.filter(pk=a.pk).update(success_count=10)
    GatewaySettings.objects.update_or_create(pk=1, defaults={"load_balancing_mode": "balanced"})

    response = post(gateway)

    assert response.status_code == 200
    assert attempts() == [(b.pk, "success")]


def test_it_self_heals_a_failed_credential_on_a_later_request(gateway):
    a, _ = gateway.add_credential()
    Credential.objects.filter(pk=a.pk).update(
        enabled=False, disabled_reason="TooManyFailures", failure_count=3
    )

    response = post(gateway)

    assert response.status_code == 200
    healed = fresh(a)
    assert (healed.enabled, healed.self_heal_rounds, healed.self_heal_total) == (True, 0, 1)
    assert attempts() == [(a.pk, "success")]


def test_it_does_not_self_heal_within_the_interval(gateway):
    a, _ = gateway.add_credential()
    Credential.objects.filter(pk=a.pk).update(
        enabled=False,
        disabled_reason="TooManyFailures",
        self_heal_rounds=1,
        last_self_heal_at=timezone.now(),
        self_heal_model="claude-sonnet-4.5",
    )

    response = post(gateway)

    assert response.status_code == 503
    assert not fresh(a).enabled
