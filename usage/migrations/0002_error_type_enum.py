"""error_type becomes one documented enum (gateway.protocol.errors.ErrorType).

Earlier records mixed client-facing Anthropic types, Kiro exception names and our own
labels. Each old value is mapped to its ErrorType; a value with no exact equivalent keeps its
old spelling at the end of error_message, so nothing is lost."""

from django.db import migrations, models

# The values of gateway.protocol.errors.ErrorType when this migration was written.
KNOWN = {
    "invalid_request", "invalid_host", "authentication", "permission", "not_found",
    "method_not_allowed", "request_too_large", "model_not_found", "key_rpm_limit",
    "key_daily_token_budget", "key_monthly_token_budget", "key_daily_credit_budget",
    "key_monthly_credit_budget", "no_credentials", "upstream_exhausted", "quota_exhausted",
    "account_throttled", "account_suspended", "auth_failed", "transient", "network_error",
    "bad_request", "unknown", "upstream_exception", "empty_answer", "tool_json_cut",
    "stream_interrupted", "web_search_failed", "client_disconnected", "internal_error",
}
# Old value -> new value, where the meaning is the same.
EXACT = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "upstream_tool_json_error": "tool_json_cut",
}
# Old value -> new value, where the old one said less or something else: the old spelling is
# kept in error_message.
LOSSY = {
    "rate_limit_error": "transient",
    "overloaded_error": "transient",
    "timeout_error": "transient",
    "api_error": "unknown",
    "upstream_error": "stream_interrupted",
}


def _new_value(old: str) -> tuple[str, bool]:
    """Return the new value and whether the old spelling must be kept in the message."""
    if old in KNOWN:
        return old, False
    if old in EXACT:
        return EXACT[old], False
    if old in LOSSY:
        return LOSSY[old], True
    if old[:1].isupper():  # a Kiro exception or error code (InternalServerException, …)
        return "upstream_exception", True
    return "unknown", True


def forwards(apps, schema_editor):
    UsageRecord = apps.get_model("usage", "UsageRecord")
    olds = (
        UsageRecord.objects.exclude(error_type="")
        .values_list("error_type", flat=True)
        .distinct()
        .order_by()
    )
    for old in list(olds):
        new, keep = _new_value(old)
        if new == old:
            continue
        records = UsageRecord.objects.filter(error_type=old)
        if not keep:
            records.update(error_type=new)
            continue
        for record in records.only("pk", "error_message").iterator():
            note = f"(error type before migration 0002: {old})"
            message = f"{record.error_message} {note}".strip()
            UsageRecord.objects.filter(pk=record.pk).update(error_type=new, error_message=message)


class Migration(migrations.Migration):
    dependencies = [("usage", "0001_initial")]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="usagerecord",
            name="error_type",
            field=models.CharField(
                blank=True,
                choices=[(value, value) for value in [
                    "invalid_request", "invalid_host", "authentication", "permission",
                    "not_found", "method_not_allowed", "request_too_large", "model_not_found",
                    "key_rpm_limit", "key_daily_token_budget", "key_monthly_token_budget",
                    "key_daily_credit_budget", "key_monthly_credit_budget", "no_credentials",
                    "upstream_exhausted", "quota_exhausted", "account_throttled",
                    "account_suspended", "auth_failed", "transient", "network_error",
                    "bad_request", "unknown", "upstream_exception", "empty_answer",
                    "tool_json_cut", "stream_interrupted", "web_search_failed",
                    "client_disconnected", "internal_error",
                ]],
                db_index=True,
                help_text="Why the request failed (README: Error types); empty on success.",
                max_length=64,
            ),
        ),
    ]
