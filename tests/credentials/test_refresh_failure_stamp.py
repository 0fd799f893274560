"""A failed token refresh is stamped on the credential (the operator home lists them)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from credentials import services
from credentials.models import Credential
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db


def test_a_failed_refresh_stamps_the_credential() -> None:
    credential = CredentialFactory()
    before = timezone.now()

    services.credential_refresh_failed(credential_id=credential.pk, owner="t", invalid_grant=False)

    stored = Credential.objects.get(pk=credential.pk)
    assert stored.last_refresh_failure_at >= before
    assert (stored.refresh_failure_count, stored.enabled) == (1, True)


def test_an_invalid_grant_stamps_the_credential_it_disables() -> None:
    credential = CredentialFactory()

    services.credential_refresh_failed(credential_id=credential.pk, owner="t", invalid_grant=True)

    stored = Credential.objects.get(pk=credential.pk)
    assert stored.last_refresh_failure_at is not None
    assert (stored.enabled, stored.disabled_reason) == (False, "InvalidRefreshToken")


def test_a_successful_refresh_keeps_the_stamp_of_the_last_failure() -> None:
    credential = CredentialFactory()
    services.credential_refresh_failed(credential_id=credential.pk, owner="t", invalid_grant=False)
    failed_at = Credential.objects.get(pk=credential.pk).last_refresh_failure_at

    services.credential_refresh_commit(
        credential_id=credential.pk,
        owner="t",
        access_token="aoa-new",
        expires_at=None,
        refresh_token=None,
        profile_arn=None,
    )

    stored = Credential.objects.get(pk=credential.pk)
    assert (stored.refresh_failure_count, stored.last_refresh_failure_at) == (0, failed_at)
