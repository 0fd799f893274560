"""usage migration 0002: old error_type spellings become the enum, and nothing is lost."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

OLD = ("usage", "0001_initial")
NEW = ("usage", "0002_error_type_enum")


@pytest.mark.django_db(transaction=True)
def test_old_error_types_are_mapped_and_their_spelling_kept_where_it_said_more(
    back_to_the_latest_schema,
):
    executor = MigrationExecutor(connection)
    executor.migrate([OLD])
    old_apps = executor.loader.project_state([OLD]).apps
    Record = old_apps.get_model("usage", "UsageRecord")
    spellings = {
        "invalid_request_error": "",
        "upstream_tool_json_error": "cut",
        "InternalServerException": "Upstream InternalServerException: boom",
        "api_error": "",
        "client_disconnected": "",
        "something_else": "odd",
    }
    for old, message in spellings.items():
        Record.objects.create(
            created_at=timezone.now(),
            endpoint="/v1/messages",
            status="error",
            error_type=old,
            error_message=message,
        )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([NEW])
    new_apps = executor.loader.project_state([NEW]).apps
    Record = new_apps.get_model("usage", "UsageRecord")
    rows = dict(
        Record.objects.exclude(error_type="unknown").values_list("error_type", "error_message")
    )

    assert rows == {
        "invalid_request": "",
        "tool_json_cut": "cut",
        "upstream_exception": "Upstream InternalServerException: boom "
        "(error type before migration 0002: InternalServerException)",
        "client_disconnected": "",
    }
    unknown = sorted(
        Record.objects.filter(error_type="unknown").values_list("error_message", flat=True)
    )
    assert unknown == [
        "(error type before migration 0002: api_error)",
        "odd (error type before migration 0002: something_else)",
    ]
