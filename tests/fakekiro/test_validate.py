"""The validator catches converter bugs with the upstream's exact answer (spec §2, §7.4)."""

from __future__ import annotations

import json

import pytest

from gateway.fakekiro import bodies
from gateway.fakekiro.server import FakeKiroThread
from gateway.fakekiro.validate import check_generate_request, validate_generate_request
from tests.fakekiro.builders import chat, simple_body, spec_example


def test_it_accepts_the_spec_example() -> None:
    assert validate_generate_request(spec_example(), endpoint="ide") == []


def test_it_accepts_a_minimal_cli_body() -> None:
    assert validate_generate_request(simple_body(endpoint="cli"), endpoint="cli") == []


def test_it_rejects_history_that_does_not_alternate() -> None:
    body = spec_example()
    history = body["conversationState"]["history"]
    history.insert(1, {"userInputMessage": dict(history[0]["userInputMessage"])})

    problems = check_generate_request(body, endpoint="ide")

    assert any("expected a assistant entry, got user" in p.text for p in problems)
    assert problems[0].body == bodies.IMPROPERLY_FORMED


def test_it_rejects_history_that_starts_with_the_assistant() -> None:
    body = spec_example()
    del body["conversationState"]["history"][0]

    assert any(
        "history[0]: expected a user entry" in p
        for p in validate_generate_request(body, endpoint="ide")
    )


def test_it_rejects_an_orphan_tool_result() -> None:
    body = spec_example()
    results = body["conversationState"]["currentMessage"]["userInputMessage"][
        "userInputMessageContext"
    ]["toolResults"]
    results.append({"toolUseId": "toolu_99", "content": [{"text": "x"}], "status": "success"})

    problems = check_generate_request(body, endpoint="ide")

    assert [p.text for p in problems] == [
        "currentMessage: toolResult toolu_99 answers no toolUse of the preceding assistant message"
    ]
    assert problems[0].body == (
        b'{"message":"Improperly formed request.","reason":"TOOL_USE_RESULT_MISMATCH"}'
    )


def test_it_rejects_a_missing_tool_result() -> None:
    body = spec_example()
    del body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"][
        "toolResults"
    ]

    problems = check_generate_request(body, endpoint="ide")

    assert len(problems) == 1
    answer = json.loads(problems[0].body)
    assert "Expected toolResult blocks" in answer["message"]
    assert "toolu_01" in answer["message"]
    assert answer["reason"] == "TOOL_USE_RESULT_MISMATCH"


def test_it_rejects_a_tool_result_answering_an_older_assistant_turn() -> None:
    body = spec_example()
    history = body["conversationState"]["history"]
    current = body["conversationState"]["currentMessage"]["userInputMessage"]
    # Move the answered round one turn back: results now skip an assistant message.
    history.append(
        {
            "userInputMessage": {
                "content": "x",
                "modelId": "claude-sonnet-4.5",
                "origin": "AI_EDITOR",
            }
        }
    )
    history.append({"assistantResponseMessage": {"content": "ok"}})

    problems = validate_generate_request(body, endpoint="ide")

    assert any("missing toolResult for toolUses ['toolu_01']" in p for p in problems)
    assert any("toolResult toolu_01 answers no toolUse" in p for p in problems)
    assert current["content"] == ""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("conversationState", "chatTriggerType"), "chatTriggerType is required"),
        (("conversationState", "conversationId"), "conversationId is required"),
        (("conversationState", "currentMessage"), "currentMessage.userInputMessage is required"),
        (
            ("conversationState", "currentMessage", "userInputMessage", "content"),
            "userInputMessage.content is required",
        ),
        (
            ("conversationState", "currentMessage", "userInputMessage", "modelId"),
            "userInputMessage.modelId is required",
        ),
        (
            ("conversationState", "currentMessage", "userInputMessage", "origin"),
            "userInputMessage.origin is required",
        ),
        (("conversationState",), "conversationState is required"),
    ],
)
def test_it_rejects_missing_required_fields(path: tuple[str, ...], expected: str) -> None:
    body = simple_body()
    node = body
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]

    assert any(expected in p for p in validate_generate_request(body, endpoint="ide"))


def test_it_rejects_an_auto_trigger_and_unknown_members() -> None:
    body = simple_body()
    body["conversationState"]["chatTriggerType"] = "AUTO"
    body["max_tokens"] = 100

    problems = validate_generate_request(body, endpoint="ide")

    assert "unknown top-level member 'max_tokens'" in problems
    assert any("'AUTO'" in p for p in problems)


def test_it_answers_tool_schema_invalid_for_a_top_level_any_of() -> None:
    body = spec_example()
    tool = body["conversationState"]["currentMessage"]["userInputMessage"][
        "userInputMessageContext"
    ]["tools"][0]["toolSpecification"]
    tool["inputSchema"]["json"]["anyOf"] = [{"required": ["city"]}]

    problems = check_generate_request(body, endpoint="ide")

    assert problems[0].body == bodies.TOOL_SCHEMA_INVALID


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "x" * 65}, "must match"),
        ({"name": "bad name"}, "must match"),
        ({"description": ""}, "non-blank"),
        ({"description": "d" * 10_001}, "10001 characters"),
        ({"inputSchema": {"json": "{}"}}, "inputSchema.json must be a JSON object"),
    ],
)
def test_it_rejects_malformed_tool_specs(change: dict[str, object], expected: str) -> None:
    body = spec_example()
    spec = body["conversationState"]["currentMessage"]["userInputMessage"][
        "userInputMessageContext"
    ]["tools"][0]["toolSpecification"]
    spec.update(change)

    assert any(expected in p for p in validate_generate_request(body, endpoint="ide"))


def test_it_rejects_history_tool_uses_of_undeclared_tools() -> None:
    body = spec_example()
    del body["conversationState"]["currentMessage"]["userInputMessage"]["userInputMessageContext"][
        "tools"
    ]

    assert any(
        "not among the current tools" in p for p in validate_generate_request(body, endpoint="ide")
    )


def test_it_rejects_string_tool_input_and_empty_assistant_content() -> None:
    body = spec_example()
    assistant = body["conversationState"]["history"][3]["assistantResponseMessage"]
    assistant["toolUses"][0]["input"] = '{"city": "Paris"}'
    assistant["content"] = ""

    problems = validate_generate_request(body, endpoint="ide")

    assert any("input must be a JSON object" in p for p in problems)
    assert any("content must not be empty" in p for p in problems)


def test_it_applies_the_cli_rewrites() -> None:
    body = spec_example()  # an ide body sent to the cli endpoint

    problems = validate_generate_request(body, endpoint="cli")

    assert "cli: profileArn must not be sent (§1.3)" in problems
    assert any("agentContinuationId must be removed" in p for p in problems)
    assert any("modelId must be removed from history" in p for p in problems)
    assert any("origin must be 'KIRO_CLI'" in p for p in problems)
    assert any("envState is required" in p for p in problems)


def test_it_answers_the_exact_body_over_http(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    body = spec_example()
    body["conversationState"]["history"].pop()  # history now ends with a user entry

    response = chat(fake_kiro, account.access_token or "", body)

    assert response.status_code == 400
    assert response.content == b'{"message":"Improperly formed request.","reason":null}'
    assert fake_kiro.requests_for("chat")[-1].problems


def test_it_answers_the_mismatch_body_over_http(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    body = spec_example()
    context = body["conversationState"]["currentMessage"]["userInputMessage"][
        "userInputMessageContext"
    ]
    context["toolResults"][0]["toolUseId"] = "toolu_unknown"

    response = chat(fake_kiro, account.access_token or "", body)

    assert response.status_code == 400
    assert response.json()["reason"] == "TOOL_USE_RESULT_MISMATCH"


def test_it_does_not_consume_a_script_on_a_rejected_request(fake_kiro: FakeKiroThread) -> None:
    from gateway.fakekiro import Script

    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("scripted"))

    rejected = chat(fake_kiro, account.access_token or "", {"conversationState": {}})
    accepted = chat(fake_kiro, account.access_token or "")

    assert rejected.status_code == 400
    assert accepted.status_code == 200
    assert b"scripted" in accepted.content


def test_it_can_switch_validation_off(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.configure(validate=False)

    response = chat(fake_kiro, account.access_token or "", {"whatever": True})

    assert response.status_code == 200
