"""'Enable overage for all' in the credential list (spec kiro-ops §8.1, §10 #134)."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from tests import factories
from tests.credentials.test_lifecycle import ensure_roles
from tests.gateway.conftest import Gateway

URL = "admin:credentials_credential_overage_all"


@pytest.fixture
def kiro(transactional_db, fake_kiro, settings) -> Gateway:
    """The fake upstream with the base URLs pointed at it, and the staff roles."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    ensure_roles()
    return Gateway(base_url="", fake=fake_kiro, key="")


def test_it_enables_capable_credentials_and_skips_the_rest(kiro, admin_client_as):
    capable, capable_account = kiro.add_credential(overage_capability="OVERAGE_CAPABLE")
    not_capable, not_capable_account = kiro.add_credential(overage_capability="NOT_OVERAGE_CAPABLE")
    upstream_enabled, _ = kiro.add_credential(overage_status="ENABLED")  # unknown to the DB
    known_enabled, known_enabled_account = kiro.add_credential()
    known_enabled.overage_status = "ENABLED"
    known_enabled.save()
    known_unavailable, _ = kiro.add_credential()
    known_unavailable.overage_capability = "NOT_AVAILABLE"
    known_unavailable.save()
    off, off_account = kiro.add_credential()
    off.enabled = False
    off.save()
    client = admin_client_as(factories.make_operator())

    response = client.post(reverse(URL), follow=True)

    assert response.status_code == 200
    assert (
        "Enabled overage on 1 credential(s); skipped 4 (2 already enabled, "
        "2 not overage-capable)" in response.content.decode()
    )
    assert kiro.fake.account(capable_account.id).overage_status == "ENABLED"
    for account in (not_capable_account, known_enabled_account, off_account):
        assert kiro.fake.account(account.id).overage_status == "DISABLED"

    preferences = kiro.fake.requests_for("preference")
    assert len(preferences) == 1
    assert json.loads(preferences[0].body)["overageConfiguration"]["overageStatus"] == "ENABLED"
    capable.refresh_from_db()
    assert capable.overage_status == "ENABLED"
    assert [e.get_change_message() for e in LogEntry.objects.all()] == [
        "Set overage ENABLED (admin, all)"
    ]
    assert LogEntry.objects.get().object_id == str(capable.pk)
    not_capable.refresh_from_db()
    assert not_capable.overage_capability == "NOT_OVERAGE_CAPABLE"  # learned from the balance
    upstream_enabled.refresh_from_db()
    assert upstream_enabled.overage_status == "ENABLED"  # learned, not switched


def test_a_failure_is_reported_per_credential(kiro, admin_client_as):
    broken, _ = kiro.add_credential()
    broken.set_refresh_token(factories.long_token())  # unknown upstream: refresh fails
    broken.save()
    client = admin_client_as(factories.make_operator())

    response = client.post(reverse(URL), follow=True)

    html = response.content.decode()
    assert "Enabled overage on 0 credential(s)" in html
    assert f"Overage not enabled for {broken}" in html
    assert kiro.fake.requests_for("preference") == []


def test_a_viewer_gets_403_and_get_is_refused(kiro, admin_client_as):
    _, account = kiro.add_credential()

    viewer = admin_client_as(factories.make_viewer())
    assert viewer.post(reverse(URL)).status_code == 403
    changelist = viewer.get(reverse("admin:credentials_credential_changelist")).content.decode()
    assert reverse(URL) not in changelist
    operator = admin_client_as(factories.make_operator())
    assert operator.get(reverse(URL)).status_code == 405
    assert (
        reverse(URL)
        in operator.get(reverse("admin:credentials_credential_changelist")).content.decode()
    )
    assert kiro.fake.account(account.id).overage_status == "DISABLED"


def test_the_clear_disabled_button_is_shown_to_operators_only(kiro, admin_client_as):
    url = reverse("admin:credentials_credential_clear_disabled")
    changelist = reverse("admin:credentials_credential_changelist")

    assert url in admin_client_as(factories.make_operator()).get(changelist).content.decode()
    assert url not in admin_client_as(factories.make_viewer()).get(changelist).content.decode()
