"""Batch import of credential arrays and KAM exports in the admin (spec kiro-ops §10 #118–#123)."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from credentials.batch_import import parse_batch
from credentials.models import AuthMethod, Credential
from tests import factories
from tests.credentials.test_lifecycle import ensure_roles
from tests.factories import CredentialFactory, long_token
from tests.gateway.conftest import Gateway

URL = "admin:credentials_credential_batch_import"


@pytest.fixture
def kiro(transactional_db, fake_kiro, settings) -> Gateway:
    """The fake upstream with the base URLs pointed at it, and the staff roles."""
    for name in ("KIRO_API_BASE_URL", "KIRO_SOCIAL_AUTH_BASE_URL", "KIRO_IDC_AUTH_BASE_URL"):
        setattr(settings, name, fake_kiro.base_url)
    ensure_roles()
    return Gateway(base_url="", fake=fake_kiro, key="")


@pytest.fixture
def as_role(kiro, admin_client_as):
    def client(role: str):
        make = {"operator": factories.make_operator, "viewer": factories.make_viewer}[role]
        return admin_client_as(make())

    return client


def kam_account(email: str, refresh: str | None = None, **credentials) -> dict:
    """A Kiro Account Manager account with nested credentials."""
    return {
        "id": "0b3c9a56-1f7e-4c1e-9d7a-2f1e6b1d0c11",
        "email": email,
        "idp": "Github",
        "credentials": {
            "accessToken": "aoa" + "x" * 40,
            "csrfToken": "",
            "refreshToken": refresh or long_token(),
            "expiresAt": 1_900_000_000_000,
            "authMethod": "social",
            "provider": "Github",
            **credentials,
        },
        "subscription": {"type": "Free", "title": "KIRO FREE"},
        "status": "active",
        "createdAt": 1_700_000_000_000,
    }


def kam_export(*accounts: dict) -> str:
    return json.dumps({"version": "1.8.3", "exportedAt": 0, "accounts": list(accounts)})


def post(client, text: str = "", files: list[tuple[str, str]] = (), **flags):
    data = {"text": text, **{k: "1" for k, v in flags.items() if v}}
    if files:
        data["files"] = [SimpleUploadedFile(n, t.encode(), "application/json") for n, t in files]
    return client.post(reverse(URL), data)


def outcomes(response) -> list[tuple[int, str, str, str]]:
    return [(o.index, o.label, o.outcome, o.detail) for o in response.context["outcomes"]]


# --- parsing (pure) ------------------------------------------------------------------------------


def test_an_array_of_credentials_infers_the_auth_method():
    social, idc, api = long_token(), long_token(), "ksk_" + "a" * 40
    items = parse_batch(
        [
            (
                "creds.json",
                json.dumps(
                    [
                        {"refreshToken": social, "authMethod": "idc", "email": "a@example.com"},
                        {"refreshToken": idc, "clientId": "c", "clientSecret": "s"},
                        {"kiroApiKey": api},
                        {"refreshToken": long_token(), "clientId": "only-id"},
                    ]
                ),
            )
        ]
    )

    assert [i.values.get("auth_method") for i in items[:3]] == ["social", "idc", "api_key"]
    assert items[0].label == "a@example.com" and items[0].values["refresh_token"] == social
    assert "clientSecret" in items[3].problem


def test_kam_nested_flat_and_single_layouts_are_accepted():
    nested = kam_export(kam_account("n@example.com"))
    flat = json.dumps([kam_account("f1@example.com"), kam_account("f2@example.com")])
    single = json.dumps(kam_account("s@example.com", clientId="cid", clientSecret="sec"))

    items = parse_batch([("a.json", nested), ("b.json", flat), ("c.json", single)])

    assert [(i.index, i.source, i.label) for i in items] == [
        (1, "a.json", "n@example.com"),
        (2, "b.json", "f1@example.com"),
        (3, "b.json", "f2@example.com"),
        (4, "c.json", "s@example.com"),
    ]
    assert not any(i.problem for i in items)
    assert items[3].values["auth_method"] == "idc"  # both client fields: inferred over "social"
    assert items[0].values["provider"] == "Github"
    assert items[0].values["expires_at"].year == 2030
    assert items[0].values["kiro_created_at"].year == 2023


def test_truncated_tokens_and_bad_json_are_invalid_items():
    items = parse_batch(
        [
            ("a.json", json.dumps([{"refreshToken": "aor" + "x" * 20}])),
            ("b.json", json.dumps([{"refreshToken": long_token()[:120] + "..."}])),
            ("c.json", "{not json"),
        ]
    )

    assert ["truncated" in items[0].problem, "truncated" in items[1].problem] == [True, True]
    assert items[2].problem.startswith("not valid JSON")


# --- the admin page ------------------------------------------------------------------------------


def test_a_viewer_gets_403_and_the_button_is_only_for_operators(kiro, as_role):
    viewer = as_role("viewer")
    assert viewer.get(reverse(URL)).status_code == 403
    assert post(viewer, json.dumps([{"refreshToken": long_token()}])).status_code == 403
    assert Credential.objects.count() == 0
    changelist = reverse("admin:credentials_credential_changelist")
    assert reverse(URL) not in viewer.get(changelist).content.decode()
    assert reverse(URL) in as_role("operator").get(changelist).content.decode()


def test_an_operator_imports_an_array_and_each_creation_is_logged(kiro, as_role):
    tokens = [long_token(), long_token()]
    text = json.dumps(
        [
            {"refreshToken": tokens[0], "email": "one@example.com", "groups": ["team"]},
            {"refreshToken": tokens[1], "clientId": "cid", "clientSecret": "csecret-value"},
        ]
    )

    response = post(as_role("operator"), text)

    assert response.status_code == 200
    assert [o[2] for o in outcomes(response)] == ["imported", "imported"]
    assert response.context["summary"] == "2 item(s): 2 imported"
    one = Credential.objects.get(email="one@example.com")
    assert one.refresh_token == tokens[0] and one.auth_method == AuthMethod.SOCIAL
    assert [g.name for g in one.groups.all()] == ["team"]
    assert Credential.objects.exclude(pk=one.pk).get().auth_method == AuthMethod.IDC
    logged = LogEntry.objects.filter(action_flag=ADDITION)
    assert sorted(int(e.object_id) for e in logged) == sorted(
        Credential.objects.values_list("pk", flat=True)
    )


def test_several_files_are_merged_with_pasted_json(kiro, as_role):
    response = post(
        as_role("operator"),
        json.dumps([{"refreshToken": long_token(), "email": "pasted@example.com"}]),
        files=[
            ("one.json", kam_export(kam_account("k1@example.com"))),
            ("two.json", json.dumps([kam_account("k2@example.com")])),
        ],
    )

    assert [(o[0], o[1], o[2]) for o in outcomes(response)] == [
        (1, "pasted@example.com", "imported"),
        (2, "k1@example.com", "imported"),
        (3, "k2@example.com", "imported"),
    ]
    assert Credential.objects.count() == 3


def test_duplicates_of_existing_credentials_and_within_the_batch_are_skipped(kiro, as_role):
    existing = CredentialFactory()
    api_key = CredentialFactory(api_key=True)
    repeated = long_token()
    text = json.dumps(
        [
            {"refreshToken": existing.refresh_token},
            {"kiroApiKey": api_key.kiro_api_key},
            {"refreshToken": repeated, "email": "first@example.com"},
            {"refreshToken": repeated, "email": "second@example.com"},
        ]
    )

    response = post(as_role("operator"), text)

    rows = outcomes(response)
    assert [r[2] for r in rows] == ["duplicate", "duplicate", "imported", "duplicate"]
    assert "existing credential" in rows[0][3] and "item 3" in rows[3][3]
    assert Credential.objects.count() == 3


def test_a_truncated_refresh_token_is_rejected(kiro, as_role):
    response = post(as_role("operator"), json.dumps([{"refreshToken": "aorAAAA..."}]))

    [(_, _, outcome, detail)] = outcomes(response)
    assert outcome == "invalid" and "truncated" in detail
    assert Credential.objects.count() == 0


def test_errored_kam_accounts_are_skipped_unless_included(kiro, as_role):
    broken = {**kam_account("broken@example.com"), "status": "error"}
    text = kam_export(kam_account("fine@example.com"), broken)
    client = as_role("operator")

    response = post(client, text)

    assert [(o[1], o[2]) for o in outcomes(response)] == [
        ("fine@example.com", "imported"),
        ("broken@example.com", "skipped"),
    ]
    Credential.objects.all().delete()
    response = post(client, text, include_errored=True)
    assert [o[2] for o in outcomes(response)] == ["imported", "imported"]


def test_verify_keeps_working_accounts_and_deletes_failures(kiro, as_role):
    account = kiro.fake.add_account(auth="social")
    text = json.dumps(
        [
            {"refreshToken": account.refresh_token, "email": "good@example.com"},
            {"refreshToken": long_token(), "email": "unknown@example.com"},
        ]
    )

    response = post(as_role("operator"), text, verify=True)

    rows = outcomes(response)
    assert [(r[1], r[2]) for r in rows] == [
        ("good@example.com", "verified"),
        ("unknown@example.com", "verify-failed"),
    ]
    assert rows[1][3].endswith("(deleted)")
    assert list(Credential.objects.values_list("email", flat=True)) == ["good@example.com"]
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 1
    assert "1 verified, 1 verify-failed" in response.context["summary"]


def test_no_secret_appears_on_the_result_page(kiro, as_role):
    account = kam_account(
        "secret@example.com", clientId="cid-123", clientSecret="client-secret-" + "z" * 40
    )
    truncated = "aorTRUNCATED" + "q" * 30
    response = post(
        as_role("operator"),
        kam_export(account, {**kam_account("dup@example.com"), "credentials": {}}),
        files=[("x.json", json.dumps([{"refreshToken": truncated}]))],
    )

    html = response.content.decode()
    assert "secret@example.com" in html
    for secret in (
        account["credentials"]["refreshToken"],
        account["credentials"]["accessToken"],
        account["credentials"]["clientSecret"],
        truncated,
    ):
        assert secret not in html


def test_imported_credentials_without_a_proxy_get_a_random_pool_proxy(kiro, as_role):
    """Checklist item 123: only enabled, not unhealthy pool proxies are handed out; a
    credential that brings its own proxy keeps it."""
    from credentials.models import ProxyEntry, ProxyHealth

    ProxyEntry.objects.create(url="http://pool-a.example:3128")
    ProxyEntry.objects.create(url="http://pool-b.example:3128")
    ProxyEntry.objects.create(url="http://off.example:3128", enabled=False)
    ProxyEntry.objects.create(url="http://sick.example:3128", health=ProxyHealth.UNHEALTHY)
    own = "socks5h://own.example:1080"
    text = json.dumps(
        [{"refreshToken": long_token(), "email": f"{n}@example.com"} for n in range(6)]
        + [{"refreshToken": long_token(), "email": "own@example.com", "proxyUrl": own}]
    )

    post(as_role("operator"), text)

    pool = {"http://pool-a.example:3128", "http://pool-b.example:3128"}
    given = set(
        Credential.objects.exclude(email="own@example.com").values_list("proxy_url", flat=True)
    )
    assert given <= pool and given
    assert Credential.objects.get(email="own@example.com").proxy_url == own


def test_without_a_pool_imported_credentials_stay_direct(kiro, as_role):
    post(as_role("operator"), json.dumps([{"refreshToken": long_token()}]))

    assert Credential.objects.get().proxy_url == ""
