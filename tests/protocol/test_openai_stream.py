"""Live OpenAI stream renderers (spec kiro-protocol §12, §6): every event, in order.

Each stream is also read back the way the openai SDK reads it: every chunk or event validated
against the SDK's types and accumulated by its stream state, which fails loudly on a
malformed sequence.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from gateway.protocol.errors import ErrorType
from gateway.protocol.events import (
    AssistantResponse,
    ContextUsage,
    KiroEvent,
    Metering,
    Reasoning,
    ToolUse,
    UpstreamError,
    UpstreamException,
)
from gateway.protocol.openai_stream import KEEP_ALIVE, ChatStream, ResponsesStream
from gateway.protocol.translate import TranslateOptions

MODEL = "gpt-4o-mini"
# The SDK's Responses event classes by their `type` (its union is discriminated by the SDK's
# own machinery, not by pydantic).
EVENT_TYPES = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


def options(**overrides: Any) -> TranslateOptions:
    values: dict[str, Any] = {"model": MODEL, "message_id": "msg_test", "input_tokens": 40}
    return TranslateOptions(**(values | overrides))


def tool(name: str, value: Any, tool_id: str = "tooluse_1", *, parts: int = 2) -> list[ToolUse]:
    raw = json.dumps(value, separators=(",", ":"))
    cut = len(raw) // parts
    pieces = [raw[:cut], raw[cut:]] if parts == 2 else [raw]
    return [
        ToolUse(name=name, tool_use_id=tool_id, input=piece, stop=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]


USAGE_TAIL: list[KiroEvent] = [
    Metering(unit="credit", unit_plural="credits", usage=0.5),
    ContextUsage(percentage=1.0),
]


# --- chat ------------------------------------------------------------------------------------


def chat_stream(**overrides: Any) -> ChatStream:
    include_usage = overrides.pop("include_usage", False)
    return ChatStream(
        options(**overrides), completion_id="chatcmpl-1", created=7, include_usage=include_usage
    )


def run_chat(reads: list[list[KiroEvent]], **overrides: Any) -> tuple[list[bytes], ChatStream]:
    """Start, feed one read at a time, finish; return the bytes of each step."""
    renderer = chat_stream(**overrides)
    out = [renderer.start()]
    out += [renderer.feed(read) for read in reads]
    out.append(renderer.finish())
    return out, renderer


def data_lines(raw: bytes) -> list[str]:
    frames = raw.decode().split("\n\n")
    assert frames[-1] == ""
    assert all(frame.startswith("data: ") and "\n" not in frame for frame in frames[:-1])
    return [frame.removeprefix("data: ") for frame in frames[:-1]]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    """Parse chat chunks up to `[DONE]`, validating each as the SDK's ChatCompletionChunk."""
    lines = data_lines(raw)
    parsed = [json.loads(line) for line in lines if line != "[DONE]"]
    for chunk in parsed:
        if "error" not in chunk:
            ChatCompletionChunk.model_validate(chunk)
    return parsed


def deltas(raw: bytes) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks(raw) if c.get("choices")]


def accumulate(raw: bytes) -> Any:
    state = ChatCompletionStreamState()
    for chunk in chunks(raw):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


def test_chat_opens_with_the_role_chunk() -> None:
    renderer = chat_stream()

    assert deltas(renderer.start()) == [{"role": "assistant", "content": ""}]
    assert renderer.start() == b""


def test_chat_sends_each_text_event_as_a_content_delta_in_one_chunk_per_read() -> None:
    out, _ = run_chat(
        [[AssistantResponse("Hel"), AssistantResponse("lo")], [AssistantResponse("!")]]
    )

    assert deltas(out[1]) == [{"content": "Hel"}, {"content": "lo"}]
    assert deltas(out[2]) == [{"content": "!"}]


def test_chat_ends_with_the_finish_chunk_carrying_usage_then_done() -> None:
    out, _ = run_chat([[AssistantResponse("hi"), *USAGE_TAIL]])

    tail = chunks(out[-1])
    assert data_lines(out[-1])[-1] == "[DONE]"
    assert tail[-1]["choices"][0]["finish_reason"] == "stop"
    assert tail[-1]["choices"][0]["delta"] == {}
    assert tail[-1]["usage"]["prompt_tokens"] == 2000  # 1 % of the 200k window
    assert tail[-1]["usage"]["credit_usage"] == 0.5
    assert {c["id"] for c in chunks(b"".join(out))} == {"chatcmpl-1"}
    assert {(c["created"], c["model"], c["object"]) for c in chunks(b"".join(out))} == {
        (7, MODEL, "chat.completion.chunk")
    }


def test_chat_sends_usage_in_its_own_chunk_when_asked() -> None:
    out, _ = run_chat([[AssistantResponse("hi")]], include_usage=True)

    finish, usage = chunks(out[-1])
    assert finish["choices"][0]["finish_reason"] == "stop" and "usage" not in finish
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    assert accumulate(b"".join(out)).usage.total_tokens == usage["usage"]["total_tokens"]


def test_chat_streams_a_tool_call_as_id_and_name_then_arguments() -> None:
    out, renderer = run_chat(
        [[AssistantResponse("Checking.")], tool("get_weather", {"city": "Oslo"})]
    )

    call_deltas = deltas(out[2])
    assert call_deltas == [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "tooluse_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Oslo"}'}}]},
    ]
    completion = accumulate(b"".join(out))
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.content == "Checking."
    call = completion.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "tooluse_1",
        "get_weather",
        '{"city":"Oslo"}',
    )
    assert renderer.summary().tool_calls == 1


def test_chat_numbers_tool_calls_from_zero() -> None:
    out, _ = run_chat([tool("a", {}, "t1"), tool("b", {"x": 1}, "t2")])

    indices = [d["tool_calls"][0]["index"] for d in deltas(b"".join(out)) if "tool_calls" in d]
    assert indices == [0, 0, 1, 1]
    calls = accumulate(b"".join(out)).choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("a", "{}"),
        ("b", '{"x":1}'),
    ]


def test_chat_sends_nothing_of_a_tool_call_before_its_input_is_complete() -> None:
    first, second = tool("f", {"a": 1})
    renderer = chat_stream()
    renderer.start()

    assert renderer.feed([first]) == b""
    assert "tool_calls" in deltas(renderer.feed([second]))[0]


def test_chat_shows_reasoning_as_reasoning_content_when_asked() -> None:
    out, _ = run_chat(
        [
            [Reasoning(text="Let me think.", signature=None, redacted_content=None)],
            [AssistantResponse("Answer.")],
        ],
        reasoning=True,
    )

    assert deltas(out[1]) == [{"reasoning_content": "Let me think."}]
    assert deltas(out[2]) == [{"content": "Answer."}]


def test_chat_shows_reasoning_as_text_when_not_asked() -> None:
    out, _ = run_chat([[Reasoning(text="Thinking.", signature=None, redacted_content=None)]])

    assert deltas(out[1]) == [{"content": "Thinking."}]


def test_chat_reports_a_cut_answer_as_length() -> None:
    out, _ = run_chat(
        [
            [
                AssistantResponse("long"),
                UpstreamException("ContentLengthExceededException", "too long"),
            ]
        ]
    )

    assert chunks(out[-1])[-1]["choices"][0]["finish_reason"] == "length"


def test_chat_fails_a_cut_tool_call_with_an_error_chunk_and_no_done() -> None:
    first, _ = tool("f", {"a": 1})
    out, renderer = run_chat([[AssistantResponse("Let me."), first]])

    tail = data_lines(out[-1])
    assert "[DONE]" not in tail
    error = json.loads(tail[-1])["error"]
    assert "Upstream ended before completing tool_use" in error["message"]
    assert not any("tool_calls" in d for d in deltas(b"".join(out)))
    assert renderer.failed and renderer.summary().had_error


def test_chat_ends_an_upstream_error_frame_with_an_error_chunk() -> None:
    renderer = chat_stream()
    renderer.start()

    raw = renderer.feed(
        [
            AssistantResponse("Hi"),
            UpstreamError("ThrottlingException", "slow down"),
            AssistantResponse("more"),
        ]
    )

    lines = data_lines(raw)
    assert deltas(raw.split(b"\n\n", 1)[0] + b"\n\n") == [{"content": "Hi"}]
    assert json.loads(lines[-1])["error"] == {
        "message": "Upstream ThrottlingException: slow down",
        "type": "server_error",
        "param": None,
        "code": "server_is_overloaded",
    }
    assert renderer.failed
    assert renderer.finish() == b""


def test_chat_fails_a_broken_stream_with_an_error_chunk() -> None:
    renderer = chat_stream()
    renderer.start()
    renderer.feed([AssistantResponse("Hi")])

    raw = renderer.fail(
        "api_error", "The upstream stream broke off: ReadError.", ErrorType.STREAM_INTERRUPTED
    )

    assert json.loads(data_lines(raw)[0])["error"]["message"].startswith("The upstream stream")
    assert (
        renderer.failed
        and renderer.finish() == b""
        and renderer.fail("api_error", "x", ErrorType.STREAM_INTERRUPTED) == b""
    )


def test_chat_keeps_alive_with_an_sse_comment() -> None:
    assert chat_stream().ping() == KEEP_ALIVE == b": keep-alive\n\n"


# --- responses -------------------------------------------------------------------------------

REQUEST: dict[str, Any] = {
    "model": MODEL,
    "input": "hi",
    "instructions": "Be brief.",
    "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "custom", "name": "apply_patch", "description": "Patch."},
        {
            "type": "namespace",
            "name": "agents",
            "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}],
        },
        {"type": "web_search"},
    ],
}


def responses_stream(**overrides: Any) -> ResponsesStream:
    return ResponsesStream(
        options(**overrides), response_id="resp_1", created_at=7, request=REQUEST
    )


def run_responses(
    reads: list[list[KiroEvent]], **overrides: Any
) -> tuple[list[bytes], ResponsesStream]:
    renderer = responses_stream(**overrides)
    out = [renderer.start()]
    out += [renderer.feed(read) for read in reads]
    out.append(renderer.finish())
    return out, renderer


def events(raw: bytes) -> list[dict[str, Any]]:
    """Parse Responses SSE, validating each event against the SDK's types."""
    parsed = []
    for frame in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}"
        parsed.append(data)
        validate(data)
    return parsed


def validate(event: dict[str, Any]) -> Any:
    """Validate an event strictly against the SDK's class for its type.

    The SDK itself reads events leniently; three things are known to differ from its strict
    types and are set aside here: the response echoes the request's tools, which are the
    client's own (Codex's namespaces are not among the SDK's tool types); the SDK's newest
    usage field `cache_write_tokens` is not sent (the non-stream answer has never sent it);
    and failed responses carry error codes Codex acts on (`server_is_overloaded`) that the
    SDK's list does not name."""
    response = event.get("response")
    if isinstance(response, dict):
        response = response | {"tools": []}
        if response.get("usage"):
            details = response["usage"]["input_tokens_details"] | {"cache_write_tokens": 0}
            response["usage"] = response["usage"] | {"input_tokens_details": details}
        if response.get("error"):
            response["error"] = response["error"] | {"code": "server_error"}
        event = event | {"response": response}
    return EVENT_TYPES[event["type"]].model_validate(event)


def names(raw: bytes) -> list[str]:
    return [event["type"].removeprefix("response.") for event in events(raw)]


def message_item(deltas: int) -> list[str]:
    """The `names()` of one streamed message item with `deltas` text deltas."""
    return [
        "output_item.added",
        "content_part.added",
        *["output_text.delta"] * deltas,
        "output_text.done",
        "content_part.done",
        "output_item.done",
    ]


def final(raw: bytes) -> Any:
    """Accumulate the stream as `client.responses.stream` does; return the final response."""
    state: ResponseStreamState = ResponseStreamState(input_tools=omit, text_format=omit)
    completed = [
        out.response
        for event in events(raw)
        for out in state.handle_event(validate(event))
        if out.type == "response.completed"
    ]
    assert len(completed) == 1
    return completed[0]


def test_responses_opens_with_created_and_in_progress() -> None:
    raw = responses_stream().start()

    head = events(raw)
    assert [(e["type"], e["sequence_number"]) for e in head] == [
        ("response.created", 0),
        ("response.in_progress", 1),
    ]
    assert head[0]["response"]["id"] == "resp_1"
    assert head[0]["response"]["status"] == "in_progress"
    assert head[0]["response"]["instructions"] == "Be brief."


def test_responses_streams_text_as_a_message_item() -> None:
    out, _ = run_responses([[AssistantResponse("Hel")], [AssistantResponse("lo"), *USAGE_TAIL]])
    raw = b"".join(out)

    assert names(raw) == ["created", "in_progress", *message_item(deltas=2), "completed"]
    stream = events(raw)
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    item_id = stream[2]["item"]["id"]
    assert item_id.startswith("msg_")
    assert all(e["item_id"] == item_id and e["output_index"] == 0 for e in stream[3:8])
    assert all(e["content_index"] == 0 for e in stream[3:8])
    assert [e["delta"] for e in stream[4:6]] == ["Hel", "lo"]
    assert stream[6]["text"] == "Hello"
    completed = stream[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"] == [stream[8]["item"]]
    assert completed["usage"]["input_tokens"] == 2000
    assert completed["usage"]["credit_usage"] == 0.5
    assert final(raw).output_text == "Hello"


def test_responses_sends_one_chunk_per_read() -> None:
    out, _ = run_responses(
        [[AssistantResponse("a"), AssistantResponse("b")], [AssistantResponse("c")]]
    )

    assert names(out[1]) == [
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
    ]
    assert names(out[2]) == ["output_text.delta"]


def test_responses_streams_tool_calls_as_items_after_the_text() -> None:
    out, _ = run_responses(
        [
            [AssistantResponse("Running.")],
            tool("exec_command", {"cmd": "ls"}, "call_1"),
            tool("apply_patch", {"input": "*** Begin Patch"}, "call_2"),
            tool("agents__spawn", {"task": "x"}, "call_3"),
        ]
    )
    raw = b"".join(out)

    assert names(raw)[7:] == [
        "output_item.done",  # the message, closed before the first call
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "output_item.added",
        "custom_tool_call_input.delta",
        "custom_tool_call_input.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    stream = events(raw)
    added = [e for e in stream if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == [0, 1, 2, 3]
    assert added[1]["item"] | {"id": "x"} == {
        "type": "function_call",
        "id": "x",
        "call_id": "call_1",
        "name": "exec_command",
        "arguments": "",
        "status": "in_progress",
    }
    done = {
        e["output_index"]: e["item"] for e in stream if e["type"] == "response.output_item.done"
    }
    assert done[1]["arguments"] == '{"cmd":"ls"}' and done[1]["status"] == "completed"
    assert (done[2]["type"], done[2]["name"], done[2]["input"]) == (
        "custom_tool_call",
        "apply_patch",
        "*** Begin Patch",
    )
    assert (done[3]["name"], done[3]["namespace"]) == ("spawn", "agents")
    for event in stream:
        if "item_id" in event:
            assert event["item_id"] == done[event["output_index"]]["id"]
    response = final(raw)
    assert [item.type for item in response.output] == [
        "message",
        "function_call",
        "custom_tool_call",
        "function_call",
    ]
    assert stream[-1]["response"]["output"] == [done[i] for i in range(4)]


def test_responses_drops_calls_to_the_injected_noop_tool() -> None:
    out, _ = run_responses([tool("noop", {}), [AssistantResponse("Done.")]])

    stream = events(b"".join(out))
    assert [e["item"]["type"] for e in stream if e["type"] == "response.output_item.added"] == [
        "message"
    ]
    assert stream[-1]["response"]["output"][0]["content"][0]["text"] == "Done."


def test_responses_streams_reasoning_as_a_summary_before_the_message() -> None:
    thought = Reasoning(text="Hmm.", signature="sig", redacted_content=None)
    out, _ = run_responses([[thought], [AssistantResponse("Yes.")]], reasoning=True)
    raw = b"".join(out)

    assert names(raw) == [
        "created",
        "in_progress",
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
        *message_item(deltas=1),
        "completed",
    ]
    stream = events(raw)
    assert stream[2]["item"]["type"] == "reasoning"
    assert all(e["summary_index"] == 0 for e in stream[3:7])
    assert stream[7]["item"]["summary"] == [{"type": "summary_text", "text": "Hmm."}]
    assert [e["output_index"] for e in stream if "output_index" in e] == [0] * 6 + [1] * 6
    assert final(raw).output_text == "Yes."


def test_responses_ends_a_cut_answer_as_incomplete() -> None:
    out, _ = run_responses(
        [[AssistantResponse("long"), UpstreamException("ContentLengthExceededException", "cut")]]
    )

    last = events(out[-1])
    assert last[-1]["type"] == "response.incomplete"
    assert last[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last[-2]["item"]["status"] == "incomplete"


def test_responses_fails_a_cut_tool_call_without_delivering_it() -> None:
    first, _ = tool("exec_command", {"cmd": "rm -rf /tmp/x"})
    out, renderer = run_responses([[AssistantResponse("Running.")], [first]])
    raw = b"".join(out)

    stream = events(raw)
    assert stream[-1]["type"] == "response.failed"
    assert stream[-1]["response"]["status"] == "failed"
    assert stream[-1]["response"]["error"]["code"] == "server_error"
    assert "function_call" not in raw.decode()
    assert "response.completed" not in names(raw)
    assert renderer.failed


def test_responses_fails_on_an_upstream_error_frame() -> None:
    renderer = responses_stream()
    renderer.start()

    raw = renderer.feed([AssistantResponse("Hi"), UpstreamError("ThrottlingException", "slow")])

    failed = events(raw)[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {
        "code": "server_is_overloaded",
        "message": "Upstream ThrottlingException: slow",
    }
    assert [e["sequence_number"] for e in events(raw)] == [2, 3, 4, 5]
    assert renderer.finish() == b""


def test_responses_fails_a_broken_stream() -> None:
    renderer = responses_stream()
    renderer.start()

    raw = renderer.fail(
        "api_error", "The upstream stream broke off: ReadError.", ErrorType.STREAM_INTERRUPTED
    )

    assert names(raw) == ["failed"]
    assert renderer.failed and renderer.summary().had_error


@pytest.mark.parametrize("renderer", [chat_stream, responses_stream])
def test_a_renderer_started_late_still_opens_the_stream(renderer: Any) -> None:
    stream = renderer()

    raw = stream.feed([AssistantResponse("x")]) + stream.finish()

    assert b"x" in raw and stream.finished
