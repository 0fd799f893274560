"""The admin: no secret on any page, the three roles, import/export pages, client keys."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from credentials import services
from credentials.models import ClientKey, Credential, GatewaySettings, sha256_hex
from tests.credentials.test_kiro_import_export import CONFIG, every_kind, import_files
from tests.factories import ClientKeyFactory, CredentialFactory, long_token

pytestmark = pytest.mark.django_db


def all_secrets() -> list[str]:
    """Every secret the database holds, in plaintext."""
    found: list[str] = []
    for credential in Credential.objects.all():
        found += [
            credential.refresh_token,
            credential.access_token,
            credential.client_secret,
            credential.kiro_api_key,
            credential.proxy_password,
        ]
    row = GatewaySettings.load()
    found += [
        row.api_key,
        row.admin_api_key,
        row.proxy_password,
        row.github_token,
        row.count_tokens_api_key,
    ]
    return [s for s in found if s]


def pages_of_the_admin() -> list[str]:
    """Every admin page that shows credentials, keys or settings."""
    credential = Credential.objects.get(pk=2)
    key = ClientKey.objects.get(is_system=True)
    return [
        reverse("admin:credentials_credential_changelist"),
        reverse("admin:credentials_credential_changelist") + "?q=oidc",
        reverse("admin:credentials_credential_changelist") + "?q=" + credential.refresh_token[:20],
        reverse("admin:credentials_credential_change", args=[credential.pk]),
        reverse("admin:credentials_credential_history", args=[credential.pk]),
        reverse("admin:credentials_credential_add"),
        reverse("admin:credentials_clientkey_changelist"),
        reverse("admin:credentials_clientkey_change", args=[key.pk]),
        reverse("admin:credentials_clientkey_history", args=[key.pk]),
        reverse("admin:credentials_gatewaysettings_change", args=[1]),
        reverse("admin:credentials_gatewaysettings_history", args=[1]),
        reverse("admin:credentials_credentialgroup_changelist"),
        reverse("admin:index"),
    ]


@pytest.fixture
def populated(superuser, admin_client_as):
    import_files(config=CONFIG, credentials=every_kind())
    client = admin_client_as(superuser)
    # Edit through the admin so that the history holds entries for the pages under test.
    credential = Credential.objects.get(pk=2)
    response = client.post(
        reverse("admin:credentials_credential_change", args=[2]),
        _form_data(credential) | {"refresh_token": long_token("aorNEW")},
    )
    assert response.status_code == 302, response.content[:2000]
    return client


def _form_data(credential: Credential) -> dict:
    data = {
        "name": credential.name, "auth_method": credential.auth_method,
        "provider": credential.provider, "priority": credential.priority, "endpoint": "",
        "client_id": credential.client_id, "region": credential.region, "email": "x@example.com",
    }  # fmt: skip
    return data


def test_no_secret_appears_on_any_admin_page(populated):
    secrets = [*all_secrets(), "my-team-master-key"]
    assert len(secrets) >= 10

    for url in pages_of_the_admin():
        html = populated.get(url).content.decode()
        for secret in secrets:
            assert secret not in html, f"a secret leaked on {url}"


def test_the_change_form_shows_a_masked_preview(populated):
    html = populated.get(reverse("admin:credentials_credential_change", args=[2])).content
    token = Credential.objects.get(pk=2).refresh_token

    assert f"fingerprint {sha256_hex(token)[:8]}".encode() in html
    assert b'type="password"' in html


def test_a_blank_secret_input_keeps_the_stored_secret(populated):
    before = Credential.objects.get(pk=2).refresh_token

    populated.post(
        reverse("admin:credentials_credential_change", args=[2]),
        _form_data(Credential.objects.get(pk=2)),
    )

    assert Credential.objects.get(pk=2).refresh_token == before


def test_the_admin_refuses_a_truncated_refresh_token(populated):
    response = populated.post(
        reverse("admin:credentials_credential_change", args=[2]),
        _form_data(Credential.objects.get(pk=2)) | {"refresh_token": "aor" + "x" * 40},
    )

    assert response.status_code == 200
    assert b"looks truncated" in response.content


def test_the_admin_refuses_a_duplicate_refresh_token(populated):
    other = Credential.objects.get(pk=1).refresh_token

    response = populated.post(
        reverse("admin:credentials_credential_change", args=[2]),
        _form_data(Credential.objects.get(pk=2)) | {"refresh_token": other},
    )

    assert b"already has this refresh token" in response.content


def test_filtering_on_a_secret_column_is_refused(populated):
    token = Credential.objects.get(pk=1).refresh_token
    url = reverse("admin:credentials_credential_changelist") + f"?refresh_token={token}"

    response = populated.get(url)

    assert response.status_code in (302, 400)  # Django answers a disallowed lookup with ?e=1
    assert token.encode() not in response.content


# --- actions -------------------------------------------------------------------------------


def test_the_enable_action_clears_reason_and_counters(populated):
    Credential.objects.filter(pk=6).update(failure_count=3)

    populated.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "enable", "_selected_action": [6]},
    )

    credential = Credential.objects.get(pk=6)
    assert (credential.enabled, credential.disabled_reason, credential.failure_count) == (
        True,
        "",
        0,
    )
    assert LogEntry.objects.filter(object_id="6", change_message__contains="Enabled").exists()


def test_the_disable_action_sets_reason_manual(populated):
    populated.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "disable", "_selected_action": [1]},
    )

    assert Credential.objects.get(pk=1).disabled_reason == "Manual"


def test_the_reset_action_zeroes_failures_and_reenables_a_failed_credential(populated):
    Credential.objects.filter(pk=1).update(
        enabled=False, disabled_reason="TooManyFailures", failure_count=3, total_failure_count=9
    )

    populated.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "reset_failures", "_selected_action": [1]},
    )

    credential = Credential.objects.get(pk=1)
    assert (credential.enabled, credential.failure_count, credential.total_failure_count) == (
        True,
        0,
        0,
    )


def test_export_selected_downloads_credentials_json(populated):
    response = populated.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "export_selected", "_selected_action": [1, 5]},
    )

    assert response["Content-Disposition"] == 'attachment; filename="credentials.json"'
    assert [e["id"] for e in json.loads(response.content)] == [1, 5]


def test_the_export_buttons_download_both_files(populated):
    config = populated.get(reverse("admin:credentials_kiro_export", args=["config"]))
    creds = populated.get(reverse("admin:credentials_kiro_export", args=["credentials"]))

    assert json.loads(config.content)["apiKey"] == "my-team-master-key"
    assert len(json.loads(creds.content)) == 6


# --- the import page -----------------------------------------------------------------------


def test_the_import_page_previews_then_imports_on_confirm(superuser, admin_client_as):
    client = admin_client_as(superuser)
    url = reverse("admin:credentials_kiro_import")
    upload = {
        "config": SimpleUploadedFile("config.json", json.dumps(CONFIG).encode()),
        "credentials": SimpleUploadedFile("credentials.json", json.dumps(every_kind()).encode()),
    }

    preview = client.post(url, upload)

    assert preview.status_code == 200
    assert b"Confirm import" in preview.content
    assert b"<b>6</b> credential(s) to create" in preview.content
    assert not Credential.objects.exists()
    for secret in (every_kind()[0]["refreshToken"], "my-team-master-key"):
        assert secret.encode() not in preview.content

    done = client.post(url, {"confirm": "1"})

    assert done.status_code == 302
    assert Credential.objects.count() == 6
    assert ClientKey.objects.filter(is_system=True).exists()
    assert LogEntry.objects.filter(change_message__startswith="Imported from kiro-rs").count() == 7


def test_the_import_page_shows_the_error_and_imports_nothing(superuser, admin_client_as):
    client = admin_client_as(superuser)
    bad = every_kind()
    bad[4]["endpoint"] = "web"

    response = client.post(
        reverse("admin:credentials_kiro_import"),
        {
            "credentials": SimpleUploadedFile("mine.json", json.dumps(bad).encode()),
        },
    )

    assert b"mine.json, entry 4 (id 5), field &#x27;endpoint&#x27;" in response.content
    assert not Credential.objects.exists()


# --- client keys ---------------------------------------------------------------------------


def test_creating_a_client_key_shows_the_plaintext_once(superuser, admin_client_as):
    client = admin_client_as(superuser)

    response = client.post(
        reverse("admin:credentials_clientkey_add"),
        {"name": "ci bot", "description": "", "enabled": "on"},
    )

    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('value="sk-') + len('value="')
    plaintext = html[start : html.index('"', start)]
    key = ClientKey.objects.get(name="ci bot")
    assert key.key_hash == sha256_hex(plaintext)
    assert len(plaintext) == 35
    page = client.get(reverse("admin:credentials_clientkey_change", args=[key.pk]))
    assert plaintext.encode() not in page.content


def test_rotating_a_client_key_replaces_the_secret(superuser, admin_client_as):
    client = admin_client_as(superuser)
    key = ClientKeyFactory()
    old_hash = key.key_hash

    response = client.post(reverse("admin:credentials_clientkey_rotate", args=[key.pk]))

    key.refresh_from_db()
    assert key.key_hash != old_hash
    assert key.prefix.encode() in response.content


def test_rotating_the_system_key_writes_it_back_to_api_key(superuser, admin_client_as):
    import_files(config=CONFIG)
    key = ClientKey.objects.get(is_system=True)

    plaintext = services.client_key_rotate(key=key)

    assert GatewaySettings.load().api_key == plaintext


def test_the_system_key_cannot_be_deleted(superuser, admin_client_as):
    import_files(config=CONFIG)
    key = ClientKey.objects.get(is_system=True)

    response = admin_client_as(superuser).post(
        reverse("admin:credentials_clientkey_delete", args=[key.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert ClientKey.objects.filter(pk=key.pk).exists()


def test_the_enable_and_disable_actions_switch_the_selected_keys_and_log_them(
    superuser, admin_client_as
):
    client = admin_client_as(superuser)
    key, other = ClientKeyFactory(), ClientKeyFactory()
    changelist = reverse("admin:credentials_clientkey_changelist")

    disabled = client.post(
        changelist, {"action": "disable", "_selected_action": [key.pk]}, follow=True
    )
    assert "Disabled 1 key(s)." in disabled.content.decode()
    assert not ClientKey.objects.get(pk=key.pk).enabled
    assert ClientKey.objects.get(pk=other.pk).enabled

    enabled = client.post(
        changelist, {"action": "enable", "_selected_action": [key.pk]}, follow=True
    )
    assert "Enabled 1 key(s)." in enabled.content.decode()
    assert ClientKey.objects.get(pk=key.pk).enabled
    notes = LogEntry.objects.filter(object_id=str(key.pk)).values_list("change_message", flat=True)
    assert sorted(notes) == ["Disabled (admin action)", "Enabled (admin action)"]


# --- roles ---------------------------------------------------------------------------------


def test_a_viewer_sees_everything(viewer, admin_client_as):
    import_files(config=CONFIG, credentials=every_kind())
    client = admin_client_as(viewer)

    for url in [
        reverse("admin:credentials_credential_changelist"),
        reverse("admin:credentials_credential_change", args=[1]),
        reverse("admin:credentials_clientkey_changelist"),
        reverse("admin:credentials_gatewaysettings_change", args=[1]),
        reverse("admin:usage_usagerecord_changelist"),
    ]:
        assert client.get(url).status_code == 200, url


def test_a_viewer_cannot_change_anything(viewer, admin_client_as):
    import_files(config=CONFIG, credentials=every_kind())
    client = admin_client_as(viewer)
    before = Credential.objects.get(pk=1).priority

    attempts = [
        client.post(
            reverse("admin:credentials_credential_change", args=[1]),
            _form_data(Credential.objects.get(pk=1)) | {"priority": 77},
        ),
        client.post(reverse("admin:credentials_credential_add"), {"auth_method": "social"}),
        client.post(reverse("admin:credentials_credential_delete", args=[1]), {"post": "yes"}),
        client.post(reverse("admin:credentials_clientkey_add"), {"name": "x"}),
        client.post(reverse("admin:credentials_gatewaysettings_change", args=[1]), {}),
        client.get(reverse("admin:credentials_kiro_import")),
        client.get(reverse("admin:credentials_kiro_export", args=["credentials"])),
        client.post(
            reverse("admin:credentials_clientkey_rotate", args=[ClientKey.objects.get().pk])
        ),
    ]

    assert [r.status_code for r in attempts] == [403] * len(attempts)
    disable = client.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "disable", "_selected_action": [1]},
    )
    assert disable.status_code in (200, 302)
    credential = Credential.objects.get(pk=1)
    assert (credential.priority, credential.enabled) == (before, True)


def test_an_operator_manages_credentials_and_keys(operator, admin_client_as):
    client = admin_client_as(operator)
    credential = CredentialFactory()

    client.post(
        reverse("admin:credentials_credential_changelist"),
        {"action": "disable", "_selected_action": [credential.pk]},
    )
    added = client.post(
        reverse("admin:credentials_clientkey_add"), {"name": "op key", "enabled": "on"}
    )

    assert not Credential.objects.get(pk=credential.pk).enabled
    assert added.status_code == 200 and ClientKey.objects.filter(name="op key").exists()
    assert client.get(reverse("admin:credentials_kiro_import")).status_code == 200


def test_an_operator_cannot_manage_users(operator, admin_client_as):
    client = admin_client_as(operator)

    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert (
        client.post(
            reverse("admin:auth_user_add"),
            {
                "username": "mallory",
                "password1": "x9!kdkdkdkd",
                "password2": "x9!kdkdkdkd",
            },
        ).status_code
        == 403
    )
    assert client.get(reverse("admin:auth_group_changelist")).status_code == 403


def test_a_superuser_manages_users(superuser, admin_client_as):
    response = admin_client_as(superuser).post(
        reverse("admin:auth_user_add"),
        {
            "username": "newop",
            "password1": "x9!kdkdkdkdQ",
            "password2": "x9!kdkdkdkdQ",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302


def test_an_outsider_is_sent_to_the_login_page(outsider, admin_client_as):
    response = admin_client_as(outsider).get(reverse("admin:credentials_credential_changelist"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_site_header_names_the_gateway(superuser, admin_client_as):
    assert b"kiro-gateway" in admin_client_as(superuser).get(reverse("admin:index")).content


def test_the_migrated_roles_match_the_role_definitions():
    from django.contrib.auth.models import Group

    from credentials.roles import ROLE_PERMISSIONS

    for role, wanted in ROLE_PERMISSIONS.items():
        have = {
            (p.content_type.app_label, p.codename)
            for p in Group.objects.get(name=role).permissions.all()
        }
        assert have == set(wanted), role


# --- model resolution settings (issue 9) ---------------------------------------------------


def _settings_form_data(client) -> dict:
    """The settings change form's current values, as the browser would post them back."""
    GatewaySettings.load()
    page = client.get(reverse("admin:credentials_gatewaysettings_change", args=[1]))
    form = page.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue  # an unchecked box or an empty input is not posted
        data[name] = "on" if value is True else value
    return data


def test_the_settings_page_sets_the_model_resolution(superuser, admin_client_as):
    client = admin_client_as(superuser)
    data = _settings_form_data(client)

    response = client.post(
        reverse("admin:credentials_gatewaysettings_change", args=[1]),
        data | {"model_resolution": "strict", "fallback_model": " claude-haiku-4-5 "},
    )

    assert response.status_code == 302, response.content[:2000]
    row = GatewaySettings.load()
    assert (row.model_resolution, row.fallback_model) == ("strict", "claude-haiku-4-5")


def test_the_settings_page_refuses_a_fallback_model_no_client_could_send(
    superuser, admin_client_as
):
    client = admin_client_as(superuser)
    data = _settings_form_data(client)

    response = client.post(
        reverse("admin:credentials_gatewaysettings_change", args=[1]),
        data | {"fallback_model": "claude\x07sonnet"},
    )

    assert response.status_code == 200
    assert "Not a model id" in response.content.decode()
    assert GatewaySettings.load().fallback_model == ""
