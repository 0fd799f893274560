"""GET /v1/models lists what the caller's credentials can serve (spec kiro-ops §3.10, item 136)."""

from __future__ import annotations

import httpx
import pytest

from credentials import services
from credentials.models import CredentialGroup
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def _models(gateway, key: str | None = None) -> httpx.Response:
    return httpx.get(
        gateway.base_url + "/v1/models", headers={"x-api-key": key or gateway.key}, timeout=10
    )


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["data"]]


def test_without_a_usable_credential_it_answers_503_and_records_it(gateway):
    response = _models(gateway)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "api_error"
    assert "No upstream credential" in response.json()["error"]["message"]
    record = UsageRecord.objects.get(endpoint="/v1/models")
    assert (record.http_status, record.error_type) == (503, "no_credentials")


def test_a_credential_with_an_unknown_model_list_may_serve_every_builtin(gateway):
    gateway.add_credential()
    ids = _ids(_models(gateway))
    assert "claude-sonnet-4-5-20250929" in ids and "claude-opus-4-5-20251101" in ids


def test_known_model_lists_filter_the_builtins_by_their_kiro_ids(gateway):
    credential, _ = gateway.add_credential()
    credential.available_models = ["claude-sonnet-4.5", "auto"]
    credential.save()
    ids = _ids(_models(gateway))
    # issue 9: the true union, i.e. the listed Kiro ids themselves as well.
    assert ids == [
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5-20250929-thinking",
        "auto",
        "claude-sonnet-4.5",
    ]


def test_a_grouped_key_sees_only_its_group_and_disabled_credentials_do_not_count(gateway):
    group = CredentialGroup.objects.create(name="team-a")
    inside, _ = gateway.add_credential()
    inside.available_models = ["claude-opus-4.5"]
    inside.save()
    inside.groups.add(group)
    outside, _ = gateway.add_credential()
    outside.available_models = ["claude-sonnet-4.5"]
    outside.save()
    key, plaintext = services.client_key_create(name="team a")
    key.group = group
    key.save()

    ids = _ids(_models(gateway, plaintext))
    assert ids == [
        "claude-opus-4-5-20251101",
        "claude-opus-4-5-20251101-thinking",
        "claude-opus-4.5",
    ]

    inside.enabled = False
    inside.save()
    assert _models(gateway, plaintext).status_code == 503
