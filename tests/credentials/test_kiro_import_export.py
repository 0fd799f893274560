"""kiro-rs config.json / credentials.json import and export (spec kiro-ops §1, §2)."""

from __future__ import annotations

import io
import json
import stat

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from credentials import services
from credentials.kiro_files import KiroFileError
from credentials.models import ClientKey, Credential, GatewaySettings, sha256_hex
from tests.factories import long_token

pytestmark = pytest.mark.django_db

SOCIAL_TOKEN = long_token("aorSOCIAL")
IDC_TOKEN = long_token("aorIDC")
ENTERPRISE_TOKEN = long_token("aorENT")
ENTRA_TOKEN = "0.AXo" + long_token("entra")
EXHAUSTED_TOKEN = long_token("aorQUOTA")


def every_kind() -> list[dict]:
    """The composed example of spec kiro-ops §2.9, with realistic token lengths."""
    return [
        {
            "id": 1,
            "refreshToken": SOCIAL_TOKEN,
            "accessToken": "aoaAAAAAsocialaccess",
            "expiresAt": "2026-09-01T08:00:00Z",
            "authMethod": "social",
            "provider": "Github",
            "priority": 0,
            "machineId": "3f1c" + "0" * 56 + "9ab0",
            "email": "dev1@example.com",
            "disabled": False,
            "groups": ["team-a"],
        },
        {
            "id": 2,
            "refreshToken": IDC_TOKEN,
            "expiresAt": "2026-09-01T08:00:00Z",
            "authMethod": "idc",
            "provider": "BuilderId",
            "clientId": "oidc-client-id",
            "clientSecret": "oidc-client-secret",
            "priority": 1,
            "region": "us-east-1",
            "disabled": False,
        },
        {
            "id": 3,
            "refreshToken": ENTERPRISE_TOKEN,
            "authMethod": "idc",
            "provider": "Enterprise",
            "startUrl": "https://acme.awsapps.com/start",
            "clientId": "oidc-client-id-2",
            "clientSecret": "oidc-client-secret-2",
            "authRegion": "eu-central-1",
            "apiRegion": "us-east-1",
            "priority": 2,
            "proxyUrl": "socks5://user:pass@10.0.0.9:1080",
            "disabled": False,
        },
        {
            "id": 4,
            "refreshToken": ENTRA_TOKEN,
            "accessToken": "eyJ0eXAiaccess",
            "expiresAt": "2026-09-01T08:00:00.123456789+00:00",
            "authMethod": "external_idp",
            "provider": "AzureAD",
            "clientId": "11111111-2222-3333-4444-555555555555",
            "tokenEndpoint": "https://login.microsoftonline.com/contoso/oauth2/v2.0/token",
            "issuerUrl": "https://login.microsoftonline.com/contoso/v2.0",
            "scopes": "openid profile offline_access api://kiro/.default",
            "priority": 3,
            "disabled": False,
        },
        {
            "id": 5,
            "kiroApiKey": "ksk_0123456789abcdef",
            "authMethod": "api_key",
            "endpoint": "cli",
            "priority": 4,
            "proxyUrl": "direct",
            "disabled": False,
        },
        {
            "id": 6,
            "refreshToken": EXHAUSTED_TOKEN,
            "authMethod": "social",
            "priority": 9,
            "disabled": True,
            "disabledReason": "QuotaExceeded",
            "sourceChannel": "reseller-B",
            "createdAt": "2026-08-01T10:00:00+00:00",
            "selfHealConsecutiveRounds": 2,
            "selfHealTotalCount": 7,
            "lastSelfHealAt": "2026-08-02T11:00:00.5+00:00",
            "selfHealModel": "claude-sonnet-4.5",
            "futureKey": {"nested": [1, 2, 3]},
            "email": None,
        },
    ]


CONFIG = {
    "host": "0.0.0.0",
    "port": 8990,
    "region": "us-east-1",
    "apiKey": "my-team-master-key",
    "adminApiKey": "sk-admin-change-me",
    "tlsBackend": "rustls",
    "proxyUrl": "socks5://10.0.0.5:1080",
    "proxyUsername": "gw",
    "proxyPassword": "gw-proxy-pass-7c1e",
    "loadBalancingMode": "balanced",
    "accountThrottleFailover": True,
    "accountThrottleCooldownSecs": 900,
    "accountRpmLimitEnabled": True,
    "accountRpmLimit": 30,
    "selfHealEnabled": True,
    "selfHealMinIntervalSecs": 300,
    "selfHealMaxConsecutiveRounds": 5,
    "traceEnabled": True,
    "traceRetentionDays": 14,
    "usageLogRetentionDays": 31,
    "defaultEndpoint": "ide",
    "customModels": [
        {
            "id": "team-opus",
            "backendId": "claude-opus-4.8",
            "displayName": "Team Opus",
            "contextWindow": 1000000,
            "supportsReasoning": True,
        }
    ],
    "someFutureKey": 1,
}


def import_files(config: dict | None = None, credentials: object = None) -> services.ImportPlan:
    plan = services.kiro_import_plan(
        config_text=None if config is None else json.dumps(config),
        credentials_text=None if credentials is None else json.dumps(credentials),
    )
    return services.kiro_import_apply(plan=plan)


def test_it_round_trips_every_credential_kind_as_equal_json():
    import_files(credentials=every_kind())

    assert services.kiro_export_credentials() == every_kind()


def test_it_round_trips_a_single_object_file_as_a_one_element_array():
    single = every_kind()[1]

    plan = import_files(credentials=single)

    assert plan.single_object
    assert services.kiro_export_credentials() == [single]


def test_it_keeps_unknown_keys_and_writes_them_back():
    import_files(credentials=every_kind())

    exported = {e["id"]: e for e in services.kiro_export_credentials()}

    assert exported[6]["futureKey"] == {"nested": [1, 2, 3]}
    assert Credential.objects.get(pk=6).kiro_extra["unknown"] == {
        "futureKey": {"nested": [1, 2, 3]}
    }


def test_it_stores_secrets_encrypted_at_rest():
    import_files(credentials=every_kind())

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT refresh_token, access_token, client_secret FROM "
            "credentials_credential WHERE id = 2"
        )
        raw = " ".join(str(v) for v in cursor.fetchone())

    assert IDC_TOKEN not in raw and "oidc-client-secret" not in raw
    assert raw.startswith("fernet:")
    assert Credential.objects.get(pk=2).refresh_token == IDC_TOKEN


def test_it_updates_in_place_on_reimport():
    import_files(credentials=every_kind())
    changed = every_kind()
    changed[0]["email"] = "renamed@example.com"

    plan = import_files(credentials=changed)

    assert (plan.created, plan.updated) == (0, 6)
    assert Credential.objects.count() == 6
    assert Credential.objects.get(pk=1).email == "renamed@example.com"


def test_it_matches_id_less_entries_by_token_on_reimport():
    entries = [{"refreshToken": SOCIAL_TOKEN, "authMethod": "social"}]
    import_files(credentials=entries)

    plan = import_files(credentials=entries)

    assert Credential.objects.count() == 1
    assert plan.items[0].action == "update"


def test_it_imports_nothing_when_one_entry_is_bad():
    entries = every_kind()
    entries[3]["refreshToken"] = "short"

    with pytest.raises(KiroFileError) as caught:
        import_files(config=CONFIG, credentials=entries)

    assert str(caught.value) == (
        "credentials.json, entry 3 (id 4), field 'refreshToken': looks truncated: "
        "shorter than 100 characters"
    )
    assert Credential.objects.count() == 0
    assert not ClientKey.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"refreshToken": SOCIAL_TOKEN[:60] + "..." + SOCIAL_TOKEN[60:]},
            "refreshToken",
            "looks truncated: contains '...'",
        ),
        ({"priority": -1}, "priority", "expected a non-negative integer, got -1"),
        ({"disabled": "no"}, "disabled", "expected true or false, got 'no'"),
        ({"expiresAt": "tomorrow"}, "expiresAt", "expected an RFC 3339 timestamp"),
        ({"endpoint": "web"}, "endpoint", "unknown endpoint 'web'; expected ide or cli"),
        ({"groups": "team-a"}, "groups", "expected a list of group names"),
    ],
)
def test_it_names_file_entry_and_field_of_a_bad_value(change, field, message):
    entries = every_kind()
    entries[0].update(change)

    with pytest.raises(KiroFileError) as caught:
        import_files(credentials=entries)

    assert caught.value.file == "credentials.json"
    assert caught.value.entry == "entry 0 (id 1)"
    assert caught.value.field == field
    assert message in caught.value.reason


def test_it_rejects_duplicate_ids():
    entries = every_kind()
    entries[1]["id"] = 1

    with pytest.raises(KiroFileError, match="duplicate credential id 1"):
        import_files(credentials=entries)


def test_it_rejects_an_external_idp_endpoint_off_the_allow_list():
    entries = every_kind()
    entries[3]["tokenEndpoint"] = "https://evil.example.com/token"

    with pytest.raises(KiroFileError, match="tokenEndpoint"):
        import_files(credentials=entries)


def test_it_rejects_invalid_json_naming_the_file():
    with pytest.raises(KiroFileError, match=r"^credentials.json: not valid JSON"):
        services.kiro_import_plan(config_text=None, credentials_text="[{")


def test_it_treats_an_empty_credentials_file_as_no_credentials():
    plan = services.kiro_import_plan(config_text=None, credentials_text="  \n")

    assert plan.items == []


# --- normalisations that change a value (listed in the README) ---------------------------


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("builder-id", "idc"),
        ("IAM", "idc"),
        ("apikey", "api_key"),
        ("AzureAD", "external_idp"),
        ("entra", "external_idp"),
    ],
)
def test_it_normalises_auth_method_aliases(declared, canonical):
    entry = {
        "id": 9,
        "authMethod": declared,
        "refreshToken": ENTRA_TOKEN,
        "clientId": "c",
        "clientSecret": "s",
        "kiroApiKey": "ksk_x",
    }
    if canonical == "external_idp":
        entry["tokenEndpoint"] = "https://login.microsoftonline.com/t/oauth2/v2.0/token"

    import_files(credentials=[entry])

    assert services.kiro_export_credentials()[0]["authMethod"] == canonical


def test_it_classifies_a_credential_with_a_token_endpoint_as_external_idp():
    entry = every_kind()[3] | {"authMethod": "social"}

    import_files(credentials=[entry])

    assert Credential.objects.get(pk=4).auth_method == "external_idp"


def test_it_infers_a_missing_auth_method_and_writes_it_out():
    entry = {"id": 2, "refreshToken": IDC_TOKEN, "clientId": "c", "clientSecret": "s"}

    import_files(credentials=[entry])

    assert services.kiro_export_credentials() == [entry | {"authMethod": "idc", "disabled": False}]


def test_it_assigns_ids_after_the_highest_one():
    entries = [every_kind()[0], {"refreshToken": IDC_TOKEN, "authMethod": "social"}]

    plan = import_files(credentials=entries)

    assert [item.credential_id for item in plan.items] == [1, 2]
    assert "id_assigned" in plan.items[1].rules


def test_it_disables_an_api_key_credential_without_a_key():
    import_files(credentials=[{"id": 7, "authMethod": "api_key"}])

    credential = Credential.objects.get(pk=7)
    assert (credential.enabled, credential.disabled_reason) == (False, "InvalidConfig")
    assert services.kiro_export_credentials()[0]["disabledReason"] == "InvalidConfig"


def test_it_turns_an_unknown_disabled_reason_into_manual():
    entry = every_kind()[5] | {"disabledReason": "Aliens"}

    import_files(credentials=[entry])

    assert Credential.objects.get(pk=6).disabled_reason == "Manual"


def test_it_trims_group_names_and_drops_empty_ones():
    entry = every_kind()[0] | {"groups": [" team-a ", "", "b"]}

    import_files(credentials=[entry])

    assert services.kiro_export_credentials()[0]["groups"] == ["team-a", "b"]


def test_it_rewrites_a_timestamp_only_when_its_value_changes():
    import_files(credentials=every_kind())
    credential = Credential.objects.get(pk=4)
    credential.expires_at = credential.expires_at.replace(year=2027)
    credential.save()

    exported = {e["id"]: e for e in services.kiro_export_credentials()}

    assert exported[4]["expiresAt"] == "2027-09-01T08:00:00.123456+00:00"
    assert exported[1]["expiresAt"] == "2026-09-01T08:00:00Z"


# --- config.json --------------------------------------------------------------------------


def test_it_lands_every_config_field_in_gateway_settings():
    import_files(config=CONFIG)

    row = GatewaySettings.load()
    assert row.load_balancing_mode == "balanced"
    assert row.account_throttle_cooldown_secs == 900
    assert row.account_rpm_limit_enabled is True
    assert row.trace_retention_days == 14
    assert row.proxy_password == "gw-proxy-pass-7c1e"
    assert row.custom_models[0]["backendId"] == "claude-opus-4.8"


def test_it_exports_config_with_z_key_order_and_nulls_for_unset_optionals():
    import_files(config=CONFIG)

    exported = services.kiro_export_config()

    assert list(exported)[:5] == ["host", "port", "region", "kiroVersion", "machineId"]
    assert "authRegion" not in exported
    assert exported["machineId"] is None and exported["githubToken"] is None
    assert {k: exported[k] for k in CONFIG} == CONFIG
    assert list(exported)[-1] == "someFutureKey"  # unknown keys after the known ones


def test_a_full_config_and_credentials_round_trip_as_equal_json_unknown_keys_included():
    import_files(config=CONFIG, credentials=every_kind())
    config = services.kiro_export_config() | {"keyOfANewerKiroRs": {"on": True}}
    credentials = services.kiro_export_credentials()

    import_files(config=config, credentials=credentials)

    assert services.kiro_export_config() == config
    assert services.kiro_export_credentials() == credentials == every_kind()


def test_it_makes_config_api_key_the_system_client_key():
    import_files(config=CONFIG)

    key = ClientKey.objects.get(is_system=True)
    assert key.key_hash == sha256_hex("my-team-master-key")
    assert key.enabled


def test_it_reenables_the_system_key_when_api_key_changes_and_keeps_its_name():
    import_files(config=CONFIG)
    ClientKey.objects.filter(is_system=True).update(enabled=False, name="ops master")

    import_files(config=CONFIG | {"apiKey": "rotated-master-key"})

    key = ClientKey.objects.get(is_system=True)
    assert (key.name, key.enabled) == ("ops master", True)
    assert key.key_hash == sha256_hex("rotated-master-key")
    assert ClientKey.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"loadBalancingMode": "random"}, "loadBalancingMode"),
        ({"accountRpmLimit": 0}, "accountRpmLimit"),
        ({"port": "8990"}, "port"),
        ({"customModels": [{"id": "x"}]}, "backendId"),
    ],
)
def test_it_rejects_a_bad_config_value_naming_the_field(change, field):
    with pytest.raises(KiroFileError) as caught:
        import_files(config=CONFIG | change)

    assert caught.value.field == field
    assert caught.value.file == "config.json"


def test_new_credentials_after_an_import_get_fresh_ids():
    import_files(credentials=every_kind())

    fresh = Credential.objects.create(auth_method="social", refresh_token=long_token())

    assert fresh.pk > 6


# --- management commands ------------------------------------------------------------------


def test_the_commands_round_trip_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "credentials.json").write_text(json.dumps(every_kind()))

    call_command(
        "import_kiro",
        config=tmp_path / "config.json",
        credentials=tmp_path / "credentials.json",
        stdout=io.StringIO(),
    )
    call_command(
        "export_kiro",
        config=tmp_path / "out-config.json",
        credentials=tmp_path / "out-credentials.json",
        stdout=io.StringIO(),
    )

    out = tmp_path / "out-credentials.json"
    assert json.loads(out.read_text()) == every_kind()
    text = out.read_text()
    assert text.startswith('[\n  {\n    "id": 1,\n    "accessToken": ')  # Z's key order
    assert not text.endswith("\n")  # serde_json pretty output: no trailing newline
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads((tmp_path / "out-config.json").read_text())["apiKey"] == "my-team-master-key"


def test_the_import_command_fails_naming_the_file_and_imports_nothing(tmp_path):
    bad = every_kind()
    bad[2]["clientSecret"] = 42
    path = tmp_path / "creds.json"
    path.write_text(json.dumps(bad))

    with pytest.raises(CommandError) as caught:
        call_command("import_kiro", credentials=path, stdout=io.StringIO())

    assert f"{path}, entry 2 (id 3), field 'clientSecret'" in str(caught.value)
    assert Credential.objects.count() == 0


def test_the_model_resolution_settings_stay_out_of_config_json():
    import_files(config=CONFIG)
    GatewaySettings.objects.update(model_resolution="strict", fallback_model="claude-haiku-4.5")

    exported = services.kiro_export_config()
    import_files(config=CONFIG)

    assert {k: exported[k] for k in CONFIG if k != "someFutureKey"} == {
        k: v for k, v in CONFIG.items() if k != "someFutureKey"
    }
    assert not {"modelResolution", "fallbackModel"} & set(exported)
    row = GatewaySettings.load()  # gateway-only knobs: a config.json import keeps them
    assert (row.model_resolution, row.fallback_model) == ("strict", "claude-haiku-4.5")
