"""Backfill the client keys' lifetime totals (credentials 0010) from the usage records kept.

The totals count what the key's limits settle (credentials.limits): the messages and OpenAI
endpoints, not count_tokens, /v1/models or unknown paths, nor the requests refused by the
key's limits or the size check. Records removed by retention are not counted; the totals
start at the key's oldest record kept (`totals_since`). In the usage app: only it may read
both tables (credentials never depends on usage)."""

from django.db import migrations
from django.db.models import Count, F, Min, Q, Sum
from django.utils import timezone

# What the settling never counts (the values of gateway.api.edge when this was written).
LOCAL_ENDPOINTS = (
    "/v1/messages/count_tokens",
    "/cc/v1/messages/count_tokens",
    "/v1/models",
    "/v1/*",
    "/cc/v1/*",
)
REFUSED_BEFORE_ADMISSION = (
    "key_rpm_limit",
    "key_daily_token_budget",
    "key_monthly_token_budget",
    "key_daily_credit_budget",
    "key_monthly_credit_budget",
    "request_too_large",
    "method_not_allowed",
)


def forwards(apps, schema_editor):
    UsageRecord = apps.get_model("usage", "UsageRecord")
    ClientKeyWindow = apps.get_model("credentials", "ClientKeyWindow")
    per_key = (
        UsageRecord.objects.filter(client_key__isnull=False)
        .exclude(Q(endpoint__in=LOCAL_ENDPOINTS) | Q(error_type__in=REFUSED_BEFORE_ADMISSION))
        .values("client_key_id")
        .annotate(
            requests=Count("pk"),
            input_tokens=Sum(
                F("input_tokens") + F("cache_creation_tokens") + F("cache_read_tokens")
            ),
            output_tokens=Sum("output_tokens"),
            credits=Sum("credits"),
            since=Min("created_at"),
        )
        .order_by()
    )
    for row in per_key:
        totals = {
            "total_requests": row["requests"],
            "total_input_tokens": row["input_tokens"] or 0,
            "total_output_tokens": row["output_tokens"] or 0,
            "total_credits": float(row["credits"] or 0.0),
            "totals_since": row["since"],
        }
        updated = ClientKeyWindow.objects.filter(
            client_key_id=row["client_key_id"], kind="month"
        ).update(**totals)
        if not updated:
            # A month row that starts at the oldest record: the next request rolls it over to
            # the current month, keeping the totals.
            ClientKeyWindow.objects.create(
                client_key_id=row["client_key_id"], kind="month", start=row["since"], **totals
            )
    # A key in use without a record kept: its totals start now.
    ClientKeyWindow.objects.filter(kind="month", totals_since__isnull=True).update(
        totals_since=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0004_trace_id"),
        ("credentials", "0010_client_key_lifetime_totals"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
