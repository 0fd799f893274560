"""Frame -> typed event mapping (spec kiro-protocol §4.7, §5, §13.3)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol.events import (
    AssistantResponse,
    ContextUsage,
    Metadata,
    Metering,
    Reasoning,
    TokenUsage,
    ToolUse,
    UpstreamError,
    UpstreamException,
    parse_message,
)
from gateway.protocol.eventstream import (
    EventStreamDecoder,
    HeaderValue,
    Message,
    encode_error,
    encode_event,
    encode_exception,
)
from tests.protocol.test_eventstream import F1, F2, F3, F4, F5, F6


def event(event_type: str, payload: dict[str, Any] | bytes) -> Message:
    """Decode one encoded event frame, as the gateway would receive it."""
    (message,) = EventStreamDecoder().feed(encode_event(event_type, payload))
    assert isinstance(message, Message)
    return message


def frame(data: bytes) -> Message:
    (message,) = EventStreamDecoder().feed(data)
    assert isinstance(message, Message)
    return message


# assistantResponseEvent


def test_it_parses_assistant_text() -> None:
    assert parse_message(frame(F1)) == AssistantResponse("Hello")


def test_it_tolerates_extra_members_in_assistant_events() -> None:
    payload = {
        "content": "Done",
        "conversationId": "conv-123",
        "messageId": "msg-456",
        "messageStatus": "COMPLETED",
        "followupPrompt": {"content": "More?", "userIntent": "EXPLAIN_CODE_SELECTION"},
    }

    assert parse_message(event("assistantResponseEvent", payload)) == AssistantResponse("Done")


def test_it_defaults_missing_assistant_content_to_empty() -> None:
    assert parse_message(event("assistantResponseEvent", {})) == AssistantResponse("")


def test_it_keeps_multibyte_text_intact() -> None:
    message = event("assistantResponseEvent", {"content": "héllo 世界 🎉"})

    assert parse_message(message) == AssistantResponse("héllo 世界 🎉")


def test_it_drops_an_assistant_event_whose_payload_is_not_json() -> None:
    assert parse_message(event("assistantResponseEvent", b"not json")) is None


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"null", b"\xff\xfe"])
def test_it_drops_an_event_whose_payload_is_not_a_json_object(payload: bytes) -> None:
    assert parse_message(event("assistantResponseEvent", payload)) is None


def test_it_drops_an_event_whose_json_nests_too_deeply() -> None:
    assert parse_message(event("assistantResponseEvent", b"[" * 100_000)) is None


# toolUseEvent


def test_it_parses_tool_use_fragments() -> None:
    assert [parse_message(frame(f)) for f in (F3, F4)] == [
        ToolUse(name="get_weather", tool_use_id="tooluse_1", input='{"city":', stop=False),
        ToolUse(name="get_weather", tool_use_id="tooluse_1", input='"Paris"}', stop=True),
    ]


def test_it_defaults_tool_input_to_empty_and_stop_to_false() -> None:
    message = event("toolUseEvent", {"name": "ls", "toolUseId": "t1"})

    assert parse_message(message) == ToolUse(name="ls", tool_use_id="t1", input="", stop=False)


@pytest.mark.parametrize(
    "payload",
    [
        {"toolUseId": "t1", "input": "{}", "stop": True},
        {"name": "ls", "input": "{}", "stop": True},
        {"name": 7, "toolUseId": "t1"},
        {"name": "ls", "toolUseId": None},
    ],
    ids=["no-name", "no-tool-use-id", "non-string-name", "null-tool-use-id"],
)
def test_it_drops_a_tool_use_without_its_required_fields(payload: dict[str, Any]) -> None:
    assert parse_message(event("toolUseEvent", payload)) is None


def test_it_serialises_an_object_tool_input_to_json_text() -> None:
    message = event("toolUseEvent", {"name": "ls", "toolUseId": "t1", "input": {"path": "é"}})

    parsed = parse_message(message)
    assert isinstance(parsed, ToolUse)
    assert parsed.input == '{"path": "é"}'


# contextUsageEvent


def test_it_parses_context_usage() -> None:
    assert parse_message(frame(F2)) == ContextUsage(12.5)


@pytest.mark.parametrize(
    "payload",
    [b"{}", b'{"contextUsagePercentage":"12"}', b'{"contextUsagePercentage":true}'],
    ids=["missing", "string", "bool"],
)
def test_it_defaults_an_unusable_context_percentage_to_zero(payload: bytes) -> None:
    assert parse_message(event("contextUsageEvent", payload)) == ContextUsage(0.0)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_it_turns_a_non_finite_context_percentage_into_zero(number: bytes) -> None:
    payload = b'{"contextUsagePercentage":' + number + b"}"

    assert parse_message(event("contextUsageEvent", payload)) == ContextUsage(0.0)


# meteringEvent


def test_it_parses_metering() -> None:
    payload = {"unit": "credit", "unitPlural": "credits", "usage": 0.0169543708291874}

    assert parse_message(event("meteringEvent", payload)) == Metering(
        unit="credit", unit_plural="credits", usage=0.0169543708291874
    )


def test_it_defaults_every_metering_field() -> None:
    assert parse_message(event("meteringEvent", {})) == Metering(
        unit="credit", unit_plural="credits", usage=0.0
    )


def test_it_turns_a_non_finite_metering_usage_into_zero() -> None:
    message = event("meteringEvent", b'{"usage":Infinity}')

    assert parse_message(message) == Metering(unit="credit", unit_plural="credits", usage=0.0)


# metadataEvent


def test_it_parses_token_usage_from_metadata() -> None:
    payload = {
        "tokenUsage": {
            "uncachedInputTokens": 101,
            "outputTokens": 23,
            "cacheReadInputTokens": 300,
            "cacheWriteInputTokens": 40,
        },
        "stopReason": "end_turn",
    }

    assert parse_message(event("metadataEvent", payload)) == Metadata(
        TokenUsage(
            uncached_input_tokens=101,
            output_tokens=23,
            cache_read_input_tokens=300,
            cache_write_input_tokens=40,
        )
    )


def test_it_accepts_metadata_carrying_only_a_stop_reason() -> None:
    assert parse_message(event("metadataEvent", {"stopReason": "end_turn"})) == Metadata(None)


def test_it_defaults_missing_token_counts_to_zero_and_clamps_negatives() -> None:
    payload = {"tokenUsage": {"outputTokens": -5, "uncachedInputTokens": "7"}}

    assert parse_message(event("metadataEvent", payload)) == Metadata(TokenUsage(0, 0, 0, 0))


def test_it_turns_non_finite_token_counts_into_zero() -> None:
    payload = b'{"tokenUsage":{"outputTokens":1e400,"uncachedInputTokens":NaN}}'

    assert parse_message(event("metadataEvent", payload)) == Metadata(TokenUsage(0, 0, 0, 0))


# reasoningContentEvent


def test_it_parses_reasoning_text_and_signature() -> None:
    message = event("reasoningContentEvent", {"text": "The user wants…", "signature": "sig"})

    assert parse_message(message) == Reasoning(
        text="The user wants…", signature="sig", redacted_content=None
    )


def test_it_parses_redacted_reasoning() -> None:
    message = event("reasoningContentEvent", {"redactedContent": "encrypted"})

    assert parse_message(message) == Reasoning(
        text=None, signature=None, redacted_content="encrypted"
    )


# Unknown events and other message types (§4.7, §13.3 case 9)


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("followupPromptEvent", {"followupPrompt": {"content": "Explain more?"}}),
        ("messageMetadataEvent", {"conversationId": "c", "utteranceId": "u-1"}),
        ("codeReferenceEvent", {"references": []}),
        ("invalidStateEvent", {"reason": "INVALID_TASK_ASSIST_PLAN", "message": "…"}),
        ("supplementaryWebLinksEvent", {"supplementaryWebLinks": []}),
        ("somethingNewEvent", {"content": "x"}),
    ],
)
def test_it_ignores_unknown_event_types(event_type: str, payload: dict[str, Any]) -> None:
    assert parse_message(event(event_type, payload)) is None


def test_it_ignores_an_event_without_an_event_type() -> None:
    message = Message({":message-type": "event"}, b'{"content":"x"}')

    assert parse_message(message) is None


def test_it_treats_a_frame_without_a_message_type_as_an_event() -> None:
    message = Message({":event-type": "assistantResponseEvent"}, b'{"content":"x"}')

    assert parse_message(message) == AssistantResponse("x")


def test_it_treats_a_non_string_message_type_as_an_event() -> None:
    headers: dict[str, HeaderValue] = {
        ":message-type": b"error",
        ":event-type": "assistantResponseEvent",
    }

    assert parse_message(Message(headers, b'{"content":"x"}')) == AssistantResponse("x")


def test_it_ignores_a_non_string_event_type() -> None:
    message = Message({":event-type": b"assistantResponseEvent"}, b'{"content":"x"}')

    assert parse_message(message) is None


def test_it_drops_other_message_types() -> None:
    message = Message({":message-type": "ping"}, b"{}")

    assert parse_message(message) is None


# exception and error frames


def test_it_parses_an_exception_frame() -> None:
    assert parse_message(frame(F5)) == UpstreamException(
        exception_type="ContentLengthExceededException",
        message="Response exceeded the maximum allowed length",
    )


def test_it_names_an_exception_without_a_type_unknown() -> None:
    message = Message({":message-type": "exception"}, b'{"message":"boom"}')

    assert parse_message(message) == UpstreamException("UnknownException", "boom")


def test_it_reads_the_message_of_an_encoded_exception() -> None:
    message = frame(encode_exception("ThrottlingException", "slow down"))

    assert parse_message(message) == UpstreamException("ThrottlingException", "slow down")


def test_it_keeps_a_non_json_exception_payload_as_lossy_text() -> None:
    headers: dict[str, HeaderValue] = {
        ":message-type": "exception",
        ":exception-type": "ThrottlingException",
    }

    assert parse_message(Message(headers, b"plain \xfftext")) == UpstreamException(
        "ThrottlingException", "plain \ufffdtext"
    )


def test_it_parses_an_error_frame() -> None:
    assert parse_message(frame(F6)) == UpstreamError(
        code="InternalServerException",
        message='{"message":"Encountered an unexpected error when processing the request, '
        'please try again."}',
    )


def test_it_names_an_error_without_a_code_unknown() -> None:
    message = frame(encode_error("X", "oops"))
    headers = {k: v for k, v in message.headers.items() if k != ":error-code"}

    assert parse_message(Message(headers, message.payload)) == UpstreamError(
        "UnknownError", '{"message":"oops"}'
    )


# A whole stream (§13.3 cases 3, 12)


def test_it_maps_a_concatenated_stream_to_events_in_order() -> None:
    decoder = EventStreamDecoder()
    items = decoder.feed(F1 + F2 + F3 + F4)

    assert [parse_message(m) for m in items if isinstance(m, Message)] == [
        AssistantResponse("Hello"),
        ContextUsage(12.5),
        ToolUse("get_weather", "tooluse_1", '{"city":', False),
        ToolUse("get_weather", "tooluse_1", '"Paris"}', True),
    ]


def test_it_keeps_going_after_a_frame_with_an_unparseable_payload() -> None:
    data = encode_event("assistantResponseEvent", b"not json") + F1
    items = EventStreamDecoder().feed(data)

    assert [parse_message(m) for m in items if isinstance(m, Message)] == [
        None,
        AssistantResponse("Hello"),
    ]
