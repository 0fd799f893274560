"""Credential operations in the admin against the fake upstream, for the three roles
(spec kiro-ops §8.1–§8.3, §10 #113, #122–#138)."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from credentials import roles
from credentials.models import Credential, CredentialGroup, DisabledReason
from gateway.fakekiro.script import Script
from tests import factories
from tests.gateway.conftest import Gateway

CHANGELIST = "admin:credentials_credential_changelist"


def ensure_roles() -> None:
    """Recreate the staff roles (a transactional test flushes what the migration made)."""
    for name, wanted in roles.ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            [
                Permission.objects.get(content_type__app_label=app, codename=codename)
                for app, codename in wanted
            ]
        )


@pytest.fixture
def kiro(transactional_db, fake_kiro, settings) -> Gateway:
    """The fake upstream with the base URLs pointed at it (no gateway server needed)."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    ensure_roles()
    return Gateway(base_url="", fake=fake_kiro, key="")


@pytest.fixture
def as_role(kiro, admin_client_as):
    def client(role: str):
        user = {
            "superuser": factories.make_superuser,
            "operator": factories.make_operator,
            "viewer": factories.make_viewer,
        }[role]()
        return admin_client_as(user)

    return client


def run_action(client, action: str, credentials: list[Credential], **extra):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, ACTION_CHECKBOX_NAME: [c.pk for c in credentials], **extra},
        follow=True,
    )


def history(credential: Credential) -> list[str]:
    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(credential.pk))]


# --- balance ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "superuser"])
def test_staff_who_may_change_can_check_a_balance(kiro, as_role, role):
    credential, _ = kiro.add_credential(current_usage=500.0, usage_limit=1000.0)

    response = run_action(as_role(role), "check_balance", [credential])

    assert "500 / 1,000 used (50%)" in response.content.decode()
    credential.refresh_from_db()
    assert credential.balance["remaining"] == 500.0
    assert "Checked the balance (admin)" in history(credential)


def test_the_list_shows_balance_and_overage_from_the_cache_without_calling_upstream(kiro, as_role):
    credential, _ = kiro.add_credential(current_usage=250.0, usage_limit=1000.0)
    client = as_role("viewer")
    run_action(as_role("operator"), "check_balance", [credential])
    calls = len(kiro.fake.requests)

    html = client.get(reverse(CHANGELIST)).content.decode()

    assert "250 / 1,000 (25%)" in html
    assert "disabled" in html  # overage column
    assert len(kiro.fake.requests) == calls
    credential.refresh_from_db()
    assert credential.access_token not in html


def test_a_viewer_cannot_run_operations(kiro, as_role):
    credential, _ = kiro.add_credential()
    client = as_role("viewer")

    response = run_action(client, "check_balance", [credential])

    assert response.status_code == 200
    assert "Checked" not in response.content.decode()
    assert kiro.fake.requests_for("usage") == []
    assert LogEntry.objects.count() == 0
    for name in ("refresh_token", "balance", "models", "test_model"):
        url = reverse(f"admin:credentials_credential_{name}", args=[credential.pk])
        assert client.post(url).status_code == 403
    overage = reverse("admin:credentials_credential_overage", args=[credential.pk, "on"])
    assert client.post(overage).status_code == 403
    assert client.get(reverse("admin:credentials_credential_clear_disabled")).status_code == 403


def test_the_balance_button_reports_the_cached_value_within_five_minutes(kiro, as_role):
    credential, _ = kiro.add_credential()
    client = as_role("operator")
    url = reverse("admin:credentials_credential_balance", args=[credential.pk])
    client.post(url)

    response = client.post(url, follow=True)

    assert "(cached)" in response.content.decode()
    assert len(kiro.fake.requests_for("usage")) == 1


# --- token, models, model test --------------------------------------------------------------


def test_refresh_token_now_forces_a_refresh(kiro, as_role):
    credential, account = kiro.add_credential()
    client = as_role("operator")

    response = client.post(
        reverse("admin:credentials_credential_refresh_token", args=[credential.pk]), follow=True
    )

    assert "token refreshed" in response.content.decode()
    assert kiro.fake.refresh_count(account=account.id) == 1
    assert "Refreshed the token (admin)" in history(credential)


def test_refresh_token_failure_is_reported(kiro, as_role):
    credential, account = kiro.add_credential()
    kiro.fake.script(Script.server_error(), route="refresh", account=account.id)

    response = run_action(as_role("operator"), "refresh_token_now", [credential])

    assert "token refresh failed" in response.content.decode()


def test_the_models_page_lists_models_with_token_limits(kiro, as_role):
    credential, _ = kiro.add_credential(models=["claude-sonnet-4.5"])

    response = as_role("operator").get(
        reverse("admin:credentials_credential_models", args=[credential.pk])
    )

    html = response.content.decode()
    assert "claude-sonnet-4.5" in html
    assert "<td>" in html and "1 model(s)" in html


def test_a_model_test_shows_reply_latency_and_credits(kiro, as_role):
    credential, account = kiro.add_credential(models=["claude-sonnet-4.5"])
    client = as_role("operator")
    url = reverse("admin:credentials_credential_test_model", args=[credential.pk])
    assert 'value="claude-sonnet-4.5"' in client.get(url).content.decode()
    kiro.fake.script(Script.text("hello operator") + Script.metering(0.5), account=account.id)

    response = client.post(url, {"model": "claude-sonnet-4.5"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "hello operator" in html
    assert "0.5" in html and " ms" in html
    assert any(m.startswith("Tested model claude-sonnet-4.5: ok") for m in history(credential))


def test_a_failing_model_test_answers_502_with_the_error(kiro, as_role):
    credential, account = kiro.add_credential(models=["claude-sonnet-4.5"])
    client = as_role("superuser")
    url = reverse("admin:credentials_credential_test_model", args=[credential.pk])
    client.get(url)
    kiro.fake.script(Script.server_error(), account=account.id)

    response = client.post(url, {"model": "claude-sonnet-4.5"})

    assert response.status_code == 502
    assert "upstream answered 500" in response.content.decode()


# --- overage ------------------------------------------------------------------------------------


def test_overage_can_be_turned_on_from_the_change_page(kiro, as_role):
    credential, account = kiro.add_credential()
    client = as_role("operator")
    client.post(reverse("admin:credentials_credential_balance", args=[credential.pk]))
    page = client.get(reverse("admin:credentials_credential_change", args=[credential.pk]))
    on = reverse("admin:credentials_credential_overage", args=[credential.pk, "on"])
    assert on in page.content.decode()

    client.post(on)

    assert kiro.fake.account(account.id).overage_status == "ENABLED"
    assert Credential.objects.get(pk=credential.pk).overage_status == "ENABLED"
    assert "Set overage ENABLED (admin)" in history(credential)


def test_overage_is_refused_for_plans_without_it(kiro, as_role):
    credential, _ = kiro.add_credential(overage_capability="NOT_OVERAGE_CAPABLE")

    response = run_action(as_role("operator"), "overage_on", [credential])

    assert "does not support overage" in response.content.decode()
    assert kiro.fake.requests_for("preference") == []
    assert Credential.objects.get(pk=credential.pk).overage_status != "ENABLED"


# --- bulk operations ----------------------------------------------------------------------------


def test_bulk_verify_reports_each_credential_and_can_delete_the_failures(kiro, as_role):
    good, _ = kiro.add_credential()
    bad, bad_account = kiro.add_credential()
    kiro.fake.script(Script.server_error(), route="usage", account=bad_account.id, times=None)
    client = as_role("operator")

    response = run_action(client, "bulk_verify", [good, bad])

    html = response.content.decode()
    assert html.count(">ok<") == 1 and html.count(">failed<") == 1
    assert "Delete the 1 failed credential(s)" in html

    run_action(client, "bulk_verify", [bad], delete_failures="1")

    assert list(Credential.objects.values_list("pk", flat=True)) == [good.pk]


def test_clear_disabled_asks_then_deletes_only_disabled_credentials(kiro, as_role):
    kept, _ = kiro.add_credential()
    gone, _ = kiro.add_credential()
    Credential.objects.filter(pk=gone.pk).update(enabled=False, disabled_reason="Manual")
    client = as_role("operator")
    url = reverse("admin:credentials_credential_clear_disabled")

    confirm = client.get(url).content.decode()
    assert str(gone) in confirm and "Yes, delete them" in confirm
    assert Credential.objects.count() == 2

    client.post(url)

    assert list(Credential.objects.values_list("pk", flat=True)) == [kept.pk]


def test_disable_exceeded_uses_the_cached_balance(kiro, as_role):
    spent = factories.CredentialFactory(balance={"remaining": -3.0, "usage_percentage": 100.3})
    full = factories.CredentialFactory(balance={"remaining": 0.0, "usage_percentage": 100.0})
    fine = factories.CredentialFactory(balance={"remaining": 40.0, "usage_percentage": 60.0})
    unknown = factories.CredentialFactory(balance=None)

    run_action(as_role("operator"), "disable_exceeded", [spent, full, fine, unknown])

    states = dict(Credential.objects.values_list("pk", "disabled_reason"))
    assert states[spent.pk] == states[full.pk] == DisabledReason.QUOTA_EXCEEDED
    assert states[fine.pk] == states[unknown.pk] == ""


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("replace", {"new"}), ("append", {"old", "keep", "new"}), ("remove", {"keep"})],
)
def test_groups_can_be_edited_in_bulk(kiro, as_role, mode, expected):
    credential = factories.CredentialFactory()
    credential.groups.set(
        [
            factories.CredentialGroupFactory(name="old"),
            factories.CredentialGroupFactory(name="keep"),
        ]
    )
    client = as_role("operator")
    form = run_action(client, "edit_groups", [credential])
    assert "Replace the groups with these" in form.content.decode()

    run_action(
        client,
        "edit_groups",
        [credential],
        apply="1",
        mode=mode,
        groups="old, new" if mode != "replace" else "new",
    )

    names = set(credential.groups.values_list("name", flat=True))
    if mode == "remove":
        assert names == {"keep"}
    else:
        assert names == expected
    assert CredentialGroup.objects.filter(name="new").exists() is (mode != "remove")
