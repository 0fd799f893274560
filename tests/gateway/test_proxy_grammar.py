"""One proxy URL grammar: the credential form refuses what the transport cannot use, and a
credential whose proxy is unusable anyway (an import, an old row) fails over, never a 500."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from credentials.forms import CredentialConsoleForm
from credentials.models import Credential
from gateway.kiro.proxies import UnusableProxy
from gateway.kiro.transport import LeanTransport
from usage.models import UpstreamAttempt, UsageRecord

BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.mark.parametrize("scheme", ["http", "https", "socks5", "socks5h"])
def test_the_transport_accepts_every_scheme_of_the_grammar(scheme):
    LeanTransport(proxy=f"{scheme}://user:pw@127.0.0.1:3128")


def test_the_transport_refuses_socks4_as_the_validator_does():
    with pytest.raises(UnusableProxy, match="socks4 is not supported"):
        LeanTransport(proxy="socks4://127.0.0.1:1080")


@pytest.mark.django_db
def test_the_credential_form_refuses_socks4_with_the_same_message():
    credential = Credential.objects.create(auth_method="social", email="a@example.com")
    form = CredentialConsoleForm(instance=credential)
    data = {name: form.initial.get(name) for name in form.fields}
    data |= {"proxy_url": "socks4://10.0.0.1:1080", "priority": 0}
    bound = CredentialConsoleForm(
        {k: v for k, v in data.items() if v is not None}, instance=credential
    )

    assert not bound.is_valid()
    assert "socks4 is not supported" in str(bound.errors["proxy_url"])


def test_an_unusable_proxy_fails_over_to_the_next_credential(gateway):
    broken, _ = gateway.add_credential(priority=0)
    working, _ = gateway.add_credential(priority=1)
    # A fresh token and a known model list: the first thing that needs the proxy is the attempt.
    broken.proxy_url = "socks4://127.0.0.1:1080"
    broken.access_token = "still-valid"
    broken.expires_at = timezone.now() + timedelta(hours=1)
    broken.available_models = ["claude-sonnet-4.5"]
    broken.models_checked_at = timezone.now()
    broken.save()

    response = httpx.post(
        gateway.base_url + "/v1/messages", json=BODY, headers={"x-api-key": gateway.key}, timeout=30
    )

    assert response.status_code == 200, response.text[:300]
    record = UsageRecord.objects.get()
    assert record.credential_id == working.pk
    first = UpstreamAttempt.objects.order_by("attempt").first()
    assert (first.credential_id, first.outcome) == (broken.pk, "network_error")
    assert "socks4 is not supported" in first.error_snippet
    broken.refresh_from_db()
    assert broken.enabled and broken.failure_count == 0
