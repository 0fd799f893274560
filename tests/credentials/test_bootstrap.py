"""First start: migrate, settings row, a superuser printed once; secrets at rest."""

from __future__ import annotations

import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from credentials import crypto
from credentials.models import Credential, GatewaySettings
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db


def test_the_first_start_creates_admin_and_prints_the_password_once(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first, second = io.StringIO(), io.StringIO()

    call_command("bootstrap", stdout=first)
    call_command("bootstrap", stdout=second)

    password = first.getvalue().split("password: ")[1].split()[0]
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    assert second.getvalue() == ""
    saved = tmp_path / "first-run.txt"
    assert f"password: {password}" in saved.read_text()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert GatewaySettings.objects.count() == 1


def test_rotation_reencrypts_secrets_with_the_new_key(settings):
    credential = CredentialFactory()
    token = credential.refresh_token
    old_key = crypto.derive_key(settings.SECRET_KEY).decode()
    new_key = crypto.new_key()
    settings.KIRO_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("rotate_encryption", stdout=io.StringIO())
    settings.KIRO_ENCRYPTION_KEYS = [new_key]

    assert Credential.objects.get(pk=credential.pk).refresh_token == token


def test_a_secret_written_under_another_key_fails_loudly(settings):
    credential = CredentialFactory()
    settings.KIRO_ENCRYPTION_KEYS = [crypto.new_key()]

    with pytest.raises(crypto.DecryptionError, match="was the key changed without rotation"):
        Credential.objects.get(pk=credential.pk)


def test_secrets_are_not_stored_in_plaintext():
    credential = CredentialFactory()

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT refresh_token FROM credentials_credential WHERE id = %s", [credential.pk]
        )
        stored = cursor.fetchone()[0]

    assert credential.refresh_token not in stored
    assert crypto.decrypt(stored) == credential.refresh_token
