"""Region precedence and machine ids (spec kiro-protocol §1.1, §9.1)."""

from __future__ import annotations

import pytest

from credentials import selectors
from credentials.models import GatewaySettings
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db


def access_for(credential, **config_values):
    GatewaySettings.objects.update_or_create(pk=1, defaults=config_values)
    return selectors.credential_access(
        credential_id=credential.pk, config=selectors.gateway_config()
    )


def test_the_auth_region_prefers_the_credential_then_its_legacy_region_then_config():
    assert (
        access_for(CredentialFactory(auth_region="eu-west-1", region="ap-south-1")).auth_region
        == "eu-west-1"
    )
    assert access_for(CredentialFactory(region="ap-south-1")).auth_region == "ap-south-1"
    assert access_for(CredentialFactory(), auth_region="eu-central-1").auth_region == (
        "eu-central-1"
    )
    assert access_for(CredentialFactory(), region="us-west-2", auth_region="").auth_region == (
        "us-west-2"
    )


def test_the_api_region_ignores_the_credentials_legacy_region():
    assert access_for(CredentialFactory(api_region="eu-west-1")).api_region == "eu-west-1"
    assert (
        access_for(
            CredentialFactory(region="ap-south-1"), region="us-east-1", api_region=""
        ).api_region
        == "us-east-1"
    )
    assert access_for(CredentialFactory(), api_region="eu-central-1").api_region == ("eu-central-1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "2582956e-cc88-4669-b546-07adbffcb894",
            "2582956ecc884669b54607adbffcb8942582956ecc884669b54607adbffcb894",
        ),
        ("A" * 64, "a" * 64),
        ("not-a-machine-id", None),
    ],
)
def test_machine_ids_are_normalised(value, expected):
    assert selectors.normalise_machine_id(value) == expected


def test_machine_ids_derive_from_the_api_key_or_refresh_token():
    api = CredentialFactory(api_key=True, kiro_api_key="ksk_test_api_key")
    oauth = CredentialFactory(refresh_token="test_refresh_token")

    assert selectors.machine_id_for(api, "") == (
        "d3f3c2cd67d9c65674969954ec20d69fdf023a2c9c2a61246285cb08ba999872"
    )
    assert selectors.machine_id_for(oauth, "") == (
        "d8f9e744094de07e7773b722f04e18417ab6ea08442df337812cd632e1c92e40"
    )
    assert selectors.machine_id_for(oauth, "2582956e-cc88-4669-b546-07adbffcb894").startswith(
        "2582956ecc88"
    )
