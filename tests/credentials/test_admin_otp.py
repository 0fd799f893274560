"""The optional TOTP second factor of staff (django-otp, ADMIN_OTP_REQUIRED=true)."""

from __future__ import annotations

import time

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.admin import OTPAdminSite
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db
PASSWORD = "right-horse-battery-staple"


@pytest.fixture
def required(monkeypatch):
    """What kiro_site/urls.py does with ADMIN_OTP_REQUIRED=true."""
    monkeypatch.setattr(admin.site, "__class__", OTPAdminSite)


@pytest.fixture
def device():
    user = get_user_model().objects.create_user(
        "ops", password=PASSWORD, is_staff=True, is_superuser=True
    )
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def sign_in(client: Client, **fields: str):
    return client.post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD, **fields}
    )


def test_with_the_factor_required_a_password_alone_is_not_enough(required, device):
    client = Client()

    sign_in(client, otp_device=device.persistent_id, otp_token="000000")

    assert client.get("/admin/").status_code == 302  # back to the login page


def test_with_the_factor_required_password_and_code_sign_in(required, device):
    client = Client()

    response = sign_in(client, otp_device=device.persistent_id, otp_token=code(device))

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_without_the_setting_staff_sign_in_with_their_password(device):
    client = Client()

    assert sign_in(client).status_code == 302
    assert client.get("/admin/").status_code == 200
