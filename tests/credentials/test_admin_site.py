"""The admin site as a whole: "View site" leads to the operator home, whichever site class
is in use, and bad input in a query string is a 400, never a 500."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import reverse
from django_otp.admin import OTPAdminSite

pytestmark = pytest.mark.django_db
INDEX = reverse("admin:index")


def test_view_site_leads_to_the_operator_home(superuser, admin_client_as) -> None:
    client = admin_client_as(superuser)

    html = client.get(reverse("admin:credentials_credential_changelist")).content.decode()

    link = re.search(r'<a href="([^"]+)">View site</a>', html)
    assert link and link.group(1) == INDEX
    assert client.get(link.group(1)).status_code == 200


@pytest.mark.parametrize("site_class", [admin.AdminSite, OTPAdminSite])
def test_view_site_holds_whichever_admin_site_class_is_in_use(
    site_class, superuser, rf, monkeypatch
) -> None:
    monkeypatch.setattr(admin.site, "__class__", site_class)
    request = rf.get("/admin/")
    request.user = superuser
    request.user.is_verified = lambda: True  # what django-otp's middleware adds

    assert admin.site.each_context(request)["site_url"] == INDEX


@pytest.mark.parametrize(
    "path",
    [
        "admin:credentials_credential_changelist",
        "admin:usage_usagerecord_changelist",
        "admin:index",
    ],
)
@pytest.mark.parametrize(
    "query", ["?state=%00", "?q=a%00b", "?disabled_reason__exact=%00", "?%00=1"]
)
def test_a_nul_byte_in_the_query_is_a_bad_request_not_a_500(
    path, query, superuser, admin_client_as
) -> None:
    response = admin_client_as(superuser).get(reverse(path) + query)

    assert response.status_code == 400
