"""The usage list pages fit a 1,280 px screen: few columns, status badges, the details on the
record's page (tests/admin_pages.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.admin_pages import assert_standard_list
from tests.factories import ClientKeyFactory, CredentialFactory
from tests.usage.factories import UpstreamAttemptFactory, UsageRecordFactory
from usage.models import AttemptOutcome, UsageStatus

pytestmark = pytest.mark.django_db


def a_failed_over_request():
    key, credential = ClientKeyFactory(name="ci bot"), CredentialFactory(name="main account")
    record = UsageRecordFactory(
        client_key=key,
        credential=credential,
        input_tokens=1830,
        output_tokens=412,
        first_token_ms=850,
        attempt_count=2,
        normalizer_rules=["drop_billing_header"],
    )
    UpstreamAttemptFactory(
        usage_record=record,
        attempt=0,
        credential=CredentialFactory(),
        outcome=AttemptOutcome.QUOTA_EXHAUSTED,
        http_status=429,
    )
    UpstreamAttemptFactory(usage_record=record, attempt=1, credential=credential)
    UsageRecordFactory(client_key=key, failed=True)
    return record


def test_the_usage_list_fits_its_column_budget(superuser, admin_client_as):
    a_failed_over_request()

    response = admin_client_as(superuser).get(reverse("admin:usage_usagerecord_changelist"))
    html = response.content.decode()
    page = assert_standard_list(html)

    assert len(page.columns) == 9  # the checkbox and eight columns (fourteen before)
    assert [item[0].text.lower() for item in page.tools] == ["dashboard"]
    assert '<span class="kg-badge kg-ok" title="">success 200</span>' in html
    assert '<span class="kg-badge kg-bad" title="">error 502</span>' in html
    assert '<span class="kg-num">1,830</span> / <span class="kg-num">412</span>' in html
    assert "ci bot" in html and "main account" in html


def test_the_details_left_off_the_usage_list_are_on_the_records_page(superuser, admin_client_as):
    record = a_failed_over_request()
    client = admin_client_as(superuser)

    listing = client.get(reverse("admin:usage_usagerecord_changelist")).content.decode()
    page = client.get(reverse("admin:usage_usagerecord_change", args=[record.pk]))

    table = listing.split('id="result_list"')[1].split("</table>")[0]
    assert "drop_billing_header" not in table
    html = page.content.decode()
    assert page.status_code == 200
    for detail in ("First token ms", "850", "Attempt count", "drop_billing_header"):
        assert detail in html
    assert "quota_exhausted" in html  # the attempt chain


def test_the_attempt_list_fits_its_column_budget(superuser, admin_client_as):
    record = a_failed_over_request()

    response = admin_client_as(superuser).get(reverse("admin:usage_upstreamattempt_changelist"))
    html = response.content.decode()
    page = assert_standard_list(html)

    assert len(page.columns) == 7  # eight before
    assert page.tools == []
    assert f"#{record.pk}" in html
    assert '<span class="kg-badge kg-bad" title="">quota_exhausted 429</span>' in html
    assert '<span class="kg-badge kg-ok" title="">success 200</span>' in html


def test_an_interrupted_request_is_a_warning(superuser, admin_client_as):
    UsageRecordFactory(status=UsageStatus.INTERRUPTED, http_status=200)

    response = admin_client_as(superuser).get(reverse("admin:usage_usagerecord_changelist"))

    assert (
        '<span class="kg-badge kg-warn" title="">interrupted 200</span>'
        in response.content.decode()
    )


def test_the_usage_list_shows_cached_input_and_rounded_credits(superuser, admin_client_as):
    UsageRecordFactory(
        input_tokens=23,
        output_tokens=466,
        cache_creation_tokens=27_000,
        cache_read_tokens=27_000,
        credits=0.0169543708291874,
    )

    html = admin_client_as(superuser).get(reverse("admin:usage_usagerecord_changelist"))
    html = html.content.decode()

    assert '<span class="kg-sub">+54,000 cached in</span>' in html
    assert ">0.0170</span>" in html
    assert ">0.0169543708291874<" not in html
