"""Kiro events -> Anthropic SSE and JSON (spec kiro-protocol §6), built from typed events."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol.anthropic_stream import StreamTranslator
from gateway.protocol.assemble import assemble_message, assemble_result
from gateway.protocol.errors import ErrorType, UpstreamFailure
from gateway.protocol.events import (
    AssistantResponse,
    ContextUsage,
    KiroEvent,
    Metadata,
    Metering,
    Reasoning,
    TokenUsage,
    ToolUse,
    UpstreamError,
    UpstreamException,
)
from gateway.protocol.tokens import CacheEstimate
from gateway.protocol.translate import TranslateOptions, new_message_id
from gateway.protocol.translate_machine import THINKING_SIGNATURE_PLACEHOLDER

MODEL = "claude-sonnet-4-5-20250929"


def options(**overrides: Any) -> TranslateOptions:
    values: dict[str, Any] = {"model": MODEL, "message_id": "msg_test", "input_tokens": 57}
    values.update(overrides)
    return TranslateOptions(**values)


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split SSE bytes into (event, data) pairs, checking the framing on the way."""
    text = raw.decode("utf-8")  # strict: the stream must be valid UTF-8
    assert text.endswith("\n\n") or not text
    events = []
    for chunk in text.split("\n\n")[:-1]:
        name_line, data_line = chunk.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((name_line[7:], json.loads(data_line[6:])))
    return events


def stream(
    events: list[KiroEvent], *, per_read: int = 1, **overrides: Any
) -> tuple[bytes, StreamTranslator]:
    """Run events through a translator, `per_read` events per feed()."""
    translator = StreamTranslator(options(**overrides))
    out = translator.start()
    for i in range(0, len(events), per_read):
        out += translator.feed(events[i : i + per_read])
    out += translator.finish()
    return out, translator


def blocks(raw: bytes) -> list[dict[str, Any]]:
    """Rebuild content blocks from SSE the way an SDK accumulates them."""
    built: dict[int, dict[str, Any]] = {}
    for name, data in parse_sse(raw):
        if name == "content_block_start":
            block = dict(data["content_block"])
            if block["type"] == "tool_use":
                block["partial"] = ""
            built[data["index"]] = block
        elif name == "content_block_delta":
            block, delta = built[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                block["partial"] += delta["partial_json"]
    result = []
    for index in sorted(built):
        block = built[index]
        if block["type"] == "tool_use":
            block["input"] = json.loads(block.pop("partial") or "{}")
        result.append(block)
    return result


def names(raw: bytes) -> list[str]:
    return [name for name, _ in parse_sse(raw)]


def final_delta(raw: bytes) -> dict[str, Any]:
    deltas = [data for name, data in parse_sse(raw) if name == "message_delta"]
    assert len(deltas) == 1
    return deltas[0]


def text_of(raw: bytes) -> str:
    return "".join(b.get("text", "") for b in blocks(raw) if b["type"] == "text")


WEATHER = [
    ToolUse("get_weather", "tooluse_1", '{"city":', False),
    ToolUse("get_weather", "tooluse_1", '"Paris"}', True),
]


# -- framing and text --------------------------------------------------------------------


def test_it_reproduces_the_spec_example_transcript() -> None:
    # spec 6.14, in Z's form: one input_json_delta, cache fields and credits in usage
    translator = StreamTranslator(options())
    out = translator.start() + translator.ping()
    out += translator.feed([AssistantResponse("Let me check."), *WEATHER])
    out += translator.feed([Metering("credit", "credits", 0.25), ContextUsage(1.5)])
    out += translator.finish()
    assert out.decode() == (
        "event: message_start\n"
        'data: {"message":{"content":[],"id":"msg_test","model":"claude-sonnet-4-5-20250929",'
        '"role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message",'
        '"usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
        '"input_tokens":57,"output_tokens":1}},"type":"message_start"}\n\n'
        "event: content_block_start\n"
        'data: {"content_block":{"text":"","type":"text"},"index":0,'
        '"type":"content_block_start"}\n\n'
        "event: ping\n"
        'data: {"type": "ping"}\n\n'
        "event: content_block_delta\n"
        'data: {"delta":{"text":"Let me check.","type":"text_delta"},"index":0,'
        '"type":"content_block_delta"}\n\n'
        "event: content_block_stop\n"
        'data: {"index":0,"type":"content_block_stop"}\n\n'
        "event: content_block_start\n"
        'data: {"content_block":{"id":"tooluse_1","input":{},"name":"get_weather",'
        '"type":"tool_use"},"index":1,"type":"content_block_start"}\n\n'
        "event: content_block_delta\n"
        'data: {"delta":{"partial_json":"{\\"city\\":\\"Paris\\"}","type":"input_json_delta"},'
        '"index":1,"type":"content_block_delta"}\n\n'
        "event: content_block_stop\n"
        'data: {"index":1,"type":"content_block_stop"}\n\n'
        "event: message_delta\n"
        'data: {"delta":{"stop_reason":"tool_use","stop_sequence":null},"type":"message_delta",'
        '"usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
        '"credit_unit":"credit","credit_unit_plural":"credits","credit_usage":0.25,'
        '"input_tokens":3000,"output_tokens":8}}\n\n'
        "event: message_stop\n"
        'data: {"type":"message_stop"}\n\n'
    )


def test_it_encodes_the_ping_literally() -> None:
    assert StreamTranslator.ping() == b'event: ping\ndata: {"type": "ping"}\n\n'


def test_it_opens_text_block_zero_before_any_upstream_data() -> None:
    start = StreamTranslator(options()).start()
    assert names(start) == ["message_start", "content_block_start"]


def test_it_opens_no_block_up_front_with_thinking_enabled() -> None:
    assert names(StreamTranslator(options(thinking=True)).start()) == ["message_start"]


def test_it_coalesces_one_read_into_one_chunk() -> None:
    translator = StreamTranslator(options())
    translator.start()
    chunk = translator.feed([AssistantResponse("a"), AssistantResponse("b")])
    assert isinstance(chunk, bytes)
    assert names(chunk) == ["content_block_delta", "content_block_delta"]


def test_it_sends_nothing_for_empty_content() -> None:
    translator = StreamTranslator(options())
    translator.start()
    assert translator.feed([AssistantResponse("")]) == b""


def test_it_keeps_multibyte_text_split_across_events() -> None:
    text = "héllo wörld — 你好，世界 🎉👩‍💻"
    out, _ = stream([AssistantResponse(ch) for ch in text])
    assert text_of(out) == text


def test_it_rejoins_a_surrogate_pair_split_across_events() -> None:
    # upstream JSON may escape an emoji as "\ud83c" in one event and "\udf89" in the next
    out, _ = stream([AssistantResponse("a\ud83c"), AssistantResponse("\udf89b")])
    assert text_of(out) == "a🎉b"


def test_it_replaces_an_unpaired_surrogate_instead_of_failing() -> None:
    out, _ = stream([AssistantResponse("a\ud83c")])
    assert text_of(out) == "a\ufffd"


def test_it_opens_a_new_text_block_after_a_tool_block() -> None:
    out, _ = stream([AssistantResponse("before"), *WEATHER, AssistantResponse("after")])
    assert [(b["type"], b.get("text")) for b in blocks(out)] == [
        ("text", "before"),
        ("tool_use", None),
        ("text", "after"),
    ]


def test_it_closes_every_block_it_opens() -> None:
    out, _ = stream([AssistantResponse("before"), *WEATHER, AssistantResponse("after")])
    events = parse_sse(out)
    starts = [d["index"] for n, d in events if n == "content_block_start"]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert starts == stops == [0, 1, 2]


def test_it_makes_message_ids_in_the_anthropic_shape() -> None:
    message_id = new_message_id()
    assert message_id.startswith("msg_") and len(message_id) == 36


# -- thinking ------------------------------------------------------------------------------

THINKING_TRANSCRIPT = "<thinking>abc</thinking>\n\nHello"


@pytest.mark.parametrize("point", range(1, len(THINKING_TRANSCRIPT)))
def test_it_splits_thinking_tags_cut_at_any_offset(point: int) -> None:
    parts = [THINKING_TRANSCRIPT[:point], THINKING_TRANSCRIPT[point:]]
    out, _ = stream([AssistantResponse(p) for p in parts], thinking=True)
    assert blocks(out) == [
        {"type": "thinking", "thinking": "abc", "signature": THINKING_SIGNATURE_PLACEHOLDER},
        {"type": "text", "text": "Hello"},
    ]


def test_it_closes_thinking_before_a_tool_block() -> None:
    # spec 13.3 case 22
    out, _ = stream([AssistantResponse("<thinking>\nabc</thinking>"), *WEATHER], thinking=True)
    kinds = [(b["type"], b.get("thinking")) for b in blocks(out)]
    assert kinds == [("thinking", "abc"), ("tool_use", None)]
    assert b"</thinking>" not in out


def test_it_ends_a_thinking_only_answer_as_max_tokens_with_a_space() -> None:
    # spec 13.3 case 23
    out, translator = stream([AssistantResponse("<thinking>\nabc</thinking>")], thinking=True)
    assert blocks(out)[-1] == {"type": "text", "text": " "}
    assert final_delta(out)["delta"]["stop_reason"] == "max_tokens"
    assert translator.result.stop_reason == "max_tokens"


def test_it_passes_tags_through_when_thinking_is_disabled() -> None:
    # spec 13.3 case 26
    out, _ = stream([AssistantResponse(THINKING_TRANSCRIPT)])
    assert blocks(out) == [{"type": "text", "text": THINKING_TRANSCRIPT}]


def test_it_turns_native_reasoning_into_thinking_with_its_signature() -> None:
    # spec 13.3 case 28
    events: list[KiroEvent] = [
        Reasoning(text="r", signature="sig", redacted_content=None),
        Reasoning(text=None, signature=None, redacted_content="x"),
        AssistantResponse("answer"),
    ]
    out, translator = stream(events, thinking=True)
    assert blocks(out) == [
        {"type": "thinking", "thinking": "r", "signature": "sig"},
        {"type": "redacted_thinking", "data": "x"},
        {"type": "text", "text": "answer"},
    ]
    assert translator.result.stop_reason == "end_turn"


def test_it_uses_the_placeholder_signature_when_upstream_sent_none() -> None:
    events: list[KiroEvent] = [Reasoning("r", None, None), AssistantResponse("a")]
    out, _ = stream(events, thinking=True)
    assert blocks(out)[0]["signature"] == THINKING_SIGNATURE_PLACEHOLDER


def test_it_stops_parsing_tags_once_native_reasoning_arrived() -> None:
    events: list[KiroEvent] = [
        Reasoning("r", "sig", None),
        AssistantResponse("<thinking>x</thinking>\n\ny"),
    ]
    out, _ = stream(events, thinking=True)
    assert blocks(out)[1] == {"type": "text", "text": "<thinking>x</thinking>\n\ny"}


def test_it_shows_reasoning_as_text_when_thinking_is_disabled() -> None:
    events: list[KiroEvent] = [Reasoning("r", "sig", "x"), AssistantResponse(" done")]
    out, _ = stream(events)
    assert blocks(out) == [{"type": "text", "text": "r done"}]


def test_it_counts_reasoning_and_redacted_blocks_in_the_output_estimate() -> None:
    events: list[KiroEvent] = [Reasoning("abcd", None, None), Reasoning(None, None, "zz")]
    _, translator = stream(events, thinking=True)
    assert translator.result.output_tokens == 1 + 8


# -- tools ---------------------------------------------------------------------------------


def test_it_buffers_tool_input_split_over_many_events() -> None:
    raw = '{"path": "/tmp/a b.txt", "text": "naïve \\"quoted\\" \\\\ 你好"}'
    fragments = [ToolUse("write", "t1", ch, False) for ch in raw] + [
        ToolUse("write", "t1", "", True)
    ]
    out, _ = stream(fragments)
    deltas = [d for n, d in parse_sse(out) if n == "content_block_delta"]
    assert len(deltas) == 1
    assert json.loads(deltas[0]["delta"]["partial_json"]) == json.loads(raw)


def test_it_keeps_two_interleaved_tools_apart() -> None:
    events: list[KiroEvent] = [
        AssistantResponse("Two calls."),
        ToolUse("a", "A", '{"x":', False),
        ToolUse("b", "B", '{"y":', False),
        AssistantResponse(" More text."),
        ToolUse("a", "A", "1}", True),
        ToolUse("b", "B", "2}", True),
    ]
    out, translator = stream(events)
    tools = [(b["id"], b["name"], b["input"]) for b in blocks(out) if b["type"] == "tool_use"]
    assert tools == [("A", "a", {"x": 1}), ("B", "b", {"y": 2})]
    assert text_of(out) == "Two calls. More text."
    assert translator.result.tool_calls == 2


def test_it_gives_an_empty_input_for_a_blank_tool_call() -> None:
    # spec 13.3 case 19
    out, _ = stream([ToolUse("now", "t", "", True)])
    assert blocks(out)[-1]["input"] == {}


def test_it_drops_fragments_after_stop() -> None:
    out, _ = stream([*WEATHER, ToolUse("get_weather", "tooluse_1", "junk", True)])
    assert [b["input"] for b in blocks(out) if b["type"] == "tool_use"] == [{"city": "Paris"}]


def test_it_restores_original_tool_names() -> None:
    # spec 13.3 case 20
    short = "mcp__plugin_very_long_server_name__extremely_long_tool_1336a06e"
    original = "mcp__plugin_very_long_server_name__extremely_long_tool_name_exceeds_63"
    out, _ = stream([ToolUse(short, "t", "{}", True)], tool_names={short: original})
    assert blocks(out)[-1]["name"] == original


def test_it_restores_tool_inputs_with_the_given_hook() -> None:
    def restore(name: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"file_path": value["path"]} if name == "fs_write" else value

    out, _ = stream(
        [ToolUse("fs_write", "t", '{"path":"/a"}', True)],
        tool_names={"fs_write": "Write"},
        restore_tool_input=restore,
    )
    assert blocks(out)[-1]["name"] == "Write"
    assert blocks(out)[-1]["input"] == {"file_path": "/a"}


def test_it_never_forwards_a_cut_tool_call() -> None:
    out, translator = stream([AssistantResponse("x"), ToolUse("w", "t", '{"path":"/a', False)])
    assert b"input_json_delta" not in out
    assert b'"tool_use"' not in out
    assert names(out)[-1] == "error"
    assert "message_stop" not in names(out)
    assert translator.result.error_type == "tool_json_cut"


def test_it_never_forwards_invalid_tool_json() -> None:
    out, translator = stream([ToolUse("w", "t", '{"path": nope}', True), AssistantResponse("z")])
    assert b"input_json_delta" not in out
    assert names(out)[-1] == "error"
    assert translator.result.had_error


def test_it_rejects_tool_input_that_is_not_an_object() -> None:
    out, _ = stream([ToolUse("w", "t", "[1, 2]", True)])
    assert b"input_json_delta" not in out
    assert names(out)[-1] == "error"


def test_it_drops_a_tool_cut_by_max_tokens_and_says_max_tokens() -> None:
    events: list[KiroEvent] = [
        AssistantResponse("x"),
        ToolUse("w", "t", '{"path":"/a', False),
        UpstreamException("ContentLengthExceededException", "too long"),
    ]
    out, translator = stream(events)
    assert b"input_json_delta" not in out
    assert final_delta(out)["delta"]["stop_reason"] == "max_tokens"
    assert names(out)[-1] == "message_stop"
    assert translator.result.error_type == "tool_json_cut"
    assert not translator.result.had_error


# -- stop reasons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([AssistantResponse("hi")], "end_turn"),
        ([AssistantResponse("hi"), *WEATHER], "tool_use"),
        (
            [
                AssistantResponse("hi"),
                UpstreamException("ContentLengthExceededException", "Response exceeded"),
            ],
            "max_tokens",
        ),
        ([AssistantResponse("hi"), ContextUsage(100.0)], "model_context_window_exceeded"),
        ([*WEATHER, ContextUsage(100.0)], "model_context_window_exceeded"),
    ],
    ids=["end_turn", "tool_use", "max_tokens", "context_window", "explicit_beats_tool_use"],
)
def test_it_picks_the_stop_reason(events: list[KiroEvent], expected: str) -> None:
    out, translator = stream(events)
    assert final_delta(out)["delta"] == {"stop_reason": expected, "stop_sequence": None}
    assert translator.result.stop_reason == expected


# -- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("window", "expected"), [(200_000, 25_000), (1_000_000, 125_000)])
def test_it_derives_input_tokens_from_context_usage(window: int, expected: int) -> None:
    # spec 13.3 case 29
    out, _ = stream([AssistantResponse("hi"), ContextUsage(12.5)], context_window=window)
    assert final_delta(out)["usage"]["input_tokens"] == expected


def test_it_falls_back_to_the_local_estimate() -> None:
    out, _ = stream([AssistantResponse("hi")], input_tokens=321)
    assert final_delta(out)["usage"]["input_tokens"] == 321


def test_it_prefers_metadata_token_usage() -> None:
    # spec 13.3 case 32
    usage = TokenUsage(101, 23, 300, 40)
    out, translator = stream([AssistantResponse("hi"), ContextUsage(12.5), Metadata(usage)])
    assert final_delta(out)["usage"] == {
        "cache_creation_input_tokens": 40,
        "cache_read_input_tokens": 300,
        "input_tokens": 101,
        "output_tokens": 23,
    }
    assert translator.result.output_tokens == 23


def test_it_estimates_output_tokens_per_event() -> None:
    out, _ = stream([AssistantResponse("Hello"), AssistantResponse("Hello, world!")])
    assert final_delta(out)["usage"]["output_tokens"] == 2 + 4


def test_it_sums_credits() -> None:
    events: list[KiroEvent] = [
        AssistantResponse("hi"),
        Metering("credit", "credits", 0.10),
        Metering("credit", "credits", 0.42),
    ]
    out, translator = stream(events)
    usage = final_delta(out)["usage"]
    assert usage["credit_usage"] == pytest.approx(0.52)
    assert (usage["credit_unit"], usage["credit_unit_plural"]) == ("credit", "credits")
    assert translator.result.credits == pytest.approx(0.52)


def test_it_leaves_credits_out_when_told_to() -> None:
    out, translator = stream([Metering("credit", "credits", 0.1)], emit_credits=False)
    assert "credit_usage" not in final_delta(out)["usage"]
    assert translator.result.credits == pytest.approx(0.1)


def test_it_leaves_credits_out_without_metering() -> None:
    out, translator = stream([AssistantResponse("hi")])
    assert "credit_usage" not in final_delta(out)["usage"]
    assert not translator.result.metered


def test_it_splits_input_with_the_simulated_cache() -> None:
    out, _ = stream([ContextUsage(0.5)], cache=CacheEstimate(covered=0.8, read=0.75))
    usage = final_delta(out)["usage"]
    assert (
        usage["input_tokens"],
        usage["cache_creation_input_tokens"],
        usage["cache_read_input_tokens"],
    ) == (200, 200, 600)


# -- /cc/v1 --------------------------------------------------------------------------------


def test_it_holds_everything_back_in_cc_mode() -> None:
    translator = StreamTranslator(options(cc_mode=True))
    assert translator.start() == b""
    assert translator.feed([AssistantResponse("hi"), ContextUsage(12.5)]) == b""
    assert translator.ping() == b'event: ping\ndata: {"type": "ping"}\n\n'


def test_it_sends_message_start_with_the_final_input_tokens_in_cc_mode() -> None:
    # spec 13.3 case 31
    translator = StreamTranslator(options(cc_mode=True, input_tokens=57))
    translator.start()
    translator.feed([AssistantResponse("hi"), *WEATHER])
    translator.feed([ContextUsage(12.5)])
    out = translator.finish()
    events = parse_sse(out)
    assert events[0][0] == "message_start"
    start_usage = events[0][1]["message"]["usage"]
    assert start_usage["input_tokens"] == 25_000
    assert start_usage["input_tokens"] == final_delta(out)["usage"]["input_tokens"]
    assert names(out)[1:3] == ["content_block_start", "content_block_delta"]
    assert names(out)[-1] == "message_stop"


def test_it_patches_cache_fields_into_message_start_in_cc_mode() -> None:
    translator = StreamTranslator(options(cc_mode=True))
    translator.feed([Metadata(TokenUsage(101, 23, 300, 40))])
    start_usage = parse_sse(translator.finish())[0][1]["message"]["usage"]
    assert start_usage == {
        "cache_creation_input_tokens": 40,
        "cache_read_input_tokens": 300,
        "input_tokens": 101,
        "output_tokens": 1,
    }


def test_it_answers_only_an_error_when_cc_mode_breaks() -> None:
    translator = StreamTranslator(options(cc_mode=True))
    translator.start()
    translator.feed([AssistantResponse("hi")])
    assert names(translator.fail("api_error", "reset", ErrorType.STREAM_INTERRUPTED)) == ["error"]


# -- failures ------------------------------------------------------------------------------


def test_it_ends_a_broken_stream_with_an_error_event() -> None:
    translator = StreamTranslator(options())
    out = translator.start() + translator.feed([AssistantResponse("partial")])
    out += translator.fail("api_error", "upstream connection reset", ErrorType.STREAM_INTERRUPTED)
    out += translator.finish()
    assert names(out)[-1] == "error"
    assert "message_stop" not in names(out) and "message_delta" not in names(out)
    assert parse_sse(out)[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream connection reset"},
    }
    assert translator.result.had_error
    assert not translator.result.finished


def test_it_fails_on_an_upstream_error_frame() -> None:
    events: list[KiroEvent] = [
        AssistantResponse("partial"),
        UpstreamError("InternalServerException", "boom"),
        AssistantResponse("ignored"),
    ]
    out, translator = stream(events)
    assert names(out)[-1] == "error"
    assert b"ignored" not in out
    assert translator.result.error_type == "upstream_exception"


def test_it_reports_throttling_as_overloaded() -> None:
    out, _ = stream([UpstreamException("ThrottlingException", "slow down")])
    assert parse_sse(out)[-1][1]["error"]["type"] == "overloaded_error"


def test_it_keeps_counting_usage_after_a_failure() -> None:
    events: list[KiroEvent] = [
        UpstreamError("InternalServerException", "boom"),
        Metering("credit", "credits", 0.3),
        Metadata(TokenUsage(10, 5, 0, 0)),
    ]
    _, translator = stream(events)
    assert (translator.result.credits, translator.result.input_tokens) == (0.3, 10)


def test_it_sends_nothing_more_after_an_error() -> None:
    translator = StreamTranslator(options())
    translator.start()
    translator.fail("api_error", "reset", ErrorType.STREAM_INTERRUPTED)
    assert translator.feed([AssistantResponse("late")]) == b""
    assert translator.finish() == b""
    assert translator.fail("api_error", "again", ErrorType.STREAM_INTERRUPTED) == b""


def test_it_reports_whether_output_was_produced() -> None:
    translator = StreamTranslator(options())
    translator.start()
    translator.feed([ContextUsage(1.0)])
    assert not translator.result.produced_output
    translator.feed([AssistantResponse("x")])
    assert translator.result.produced_output


# -- non-stream ----------------------------------------------------------------------------

SAME_CONTENT_CASES: list[tuple[str, list[KiroEvent], bool]] = [
    ("text and tool", [AssistantResponse("Let me check."), *WEATHER], False),
    (
        "thinking then text",
        [AssistantResponse("<thinking>\nab"), AssistantResponse("c</thinking>\n\nHello")],
        True,
    ),
    (
        "native reasoning",
        [Reasoning("r", "sig", None), Reasoning(None, None, "x"), AssistantResponse("t")],
        True,
    ),
    (
        "two tools",
        [ToolUse("a", "A", '{"x":1}', True), ToolUse("b", "B", "", True)],
        False,
    ),
]


@pytest.mark.parametrize(
    ("events", "thinking"),
    [(e, t) for _, e, t in SAME_CONTENT_CASES],
    ids=[c[0] for c in SAME_CONTENT_CASES],
)
def test_it_assembles_the_same_content_as_the_stream(
    events: list[KiroEvent], thinking: bool
) -> None:
    out, _ = stream(events, thinking=thinking)
    streamed = [b for b in blocks(out) if not (b["type"] == "text" and not b["text"])]
    message = assemble_message(events, options(thinking=thinking))
    assert message["content"] == streamed


def test_it_extracts_thinking_in_a_non_stream_answer() -> None:
    # spec 13.3 case 27
    message = assemble_message(
        [AssistantResponse("<thinking>\nabc</thinking>\n\nHello")], options(thinking=True)
    )
    assert [(b["type"], b.get("thinking", b.get("text"))) for b in message["content"]] == [
        ("thinking", "abc"),
        ("text", "Hello"),
    ]


def test_it_keeps_the_tags_when_extraction_is_off() -> None:
    raw = "<thinking>\nabc</thinking>\n\nHello"
    message = assemble_message(
        [AssistantResponse(raw)], options(thinking=True, extract_thinking=False)
    )
    assert message["content"] == [{"type": "text", "text": raw}]


def test_it_builds_the_non_stream_envelope() -> None:
    events: list[KiroEvent] = [AssistantResponse("Hello"), *WEATHER, ContextUsage(1.5)]
    message = assemble_message(events, options())
    assert {k: v for k, v in message.items() if k != "content"} == {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "input_tokens": 3000,
            "output_tokens": 1 + 6,  # count_tokens("Hello") + count_tokens('{"city":"Paris"}')
        },
    }


def test_it_has_no_space_block_in_a_thinking_only_non_stream_answer() -> None:
    message = assemble_message(
        [AssistantResponse("<thinking>\nabc</thinking>")], options(thinking=True)
    )
    assert [b["type"] for b in message["content"]] == ["thinking"]
    assert message["stop_reason"] == "end_turn"


def test_it_refuses_a_non_stream_answer_with_a_cut_tool() -> None:
    with pytest.raises(UpstreamFailure) as caught:
        assemble_message([AssistantResponse("x"), ToolUse("w", "t", '{"a":', False)], options())
    assert caught.value.status == 502
    assert (caught.value.error_type, caught.value.kind) == ("api_error", "tool_json_cut")


def test_it_refuses_a_non_stream_answer_after_an_error_frame() -> None:
    with pytest.raises(UpstreamFailure) as caught:
        assemble_message(
            [AssistantResponse("x"), UpstreamError("InternalServerException", "b")], options()
        )
    assert caught.value.body()["error"]["type"] == "api_error"


def test_it_returns_usage_with_a_failed_non_stream_answer() -> None:
    events: list[KiroEvent] = [UpstreamError("X", "b"), Metering("credit", "credits", 0.2)]
    message, result, failure = assemble_result(events, options())
    assert message is None and failure is not None
    assert result.had_error and result.credits == 0.2


# -- chunking invariance -------------------------------------------------------------------

MIXED = (
    "<thinking>\nplan: call `get_weather`\n</thinking>\n\n"
    'Sure — checking 天气.\n<tool_use name="x">leak</tool_use>Done.\n```\n<invoke>\n```\nEnd'
)


@given(st.lists(st.integers(min_value=1, max_value=len(MIXED) - 1), max_size=20))
def test_it_streams_the_same_content_for_any_chunking(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(MIXED)]
    parts = [MIXED[a:b] for a, b in itertools.pairwise(points)]
    chunked, _ = stream([AssistantResponse(p) for p in parts], thinking=True)
    whole, _ = stream([AssistantResponse(MIXED)], thinking=True)
    assert blocks(chunked) == blocks(whole)
