"""The admin login is throttled (django-axes): wrong passwords lock a username out for a while."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def operator():
    get_user_model().objects.create_user(
        "ops", password="right-horse-battery-staple", is_staff=True, is_superuser=True
    )


def attempt(password: str, username: str = "ops", client: Client | None = None):
    return (client or Client()).post(LOGIN, {"username": username, "password": password})


def test_five_wrong_passwords_lock_the_username_out_even_for_the_right_one(operator, settings):
    settings.AXES_FAILURE_LIMIT = 5

    wrong = [attempt(f"guess-{n}").status_code for n in range(5)]
    locked = attempt("right-horse-battery-staple")

    assert wrong[:4] == [200] * 4  # the form again, with its error
    assert wrong[4] == 429
    assert locked.status_code == 429
    assert b"locked" in locked.content.lower()


def test_a_right_password_before_the_limit_resets_the_count(operator):
    for n in range(4):
        attempt(f"guess-{n}")
    client = Client()

    assert attempt("right-horse-battery-staple", client=client).status_code == 302
    assert [attempt(f"again-{n}").status_code for n in range(4)] == [200] * 4


def test_another_username_is_not_locked_by_someone_elses_failures(operator):
    get_user_model().objects.create_user("lead", password="another-long-password", is_staff=True)
    for n in range(5):
        attempt(f"guess-{n}")

    assert attempt("another-long-password", username="lead").status_code == 302
