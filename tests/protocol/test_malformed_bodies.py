"""Malformed bodies through the pure request pipeline: a ConversionError (400), nothing else.

What the views run before going upstream, without the network: parse, route web search,
convert, estimate tokens, encode for both Kiro endpoints, and for the OpenAI endpoints their
conversion first and the echo of the request in the rendered response.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol import openai, openai_chat, openai_responses, openai_responses_events
from gateway.protocol.body import MAX_DEPTH, parse_body
from gateway.protocol.convert import (
    ConvertOptions,
    convert_request,
    encode_body,
    for_endpoint,
    web_search_mode,
)
from gateway.protocol.models import ConversionError, resolve_model
from gateway.protocol.tokens import count_all_tokens
from gateway.protocol.websearch import extract_query
from gateway.protocol.websearch_loop import WebSearchLoop
from tests.malformed import (
    CHAT_BODY,
    COUNT_BODIES,
    MESSAGES_BODIES,
    RESPONSES_BODY,
    garbage,
    mutated,
)

OPTIONS = ConvertOptions(conversation_id="conversation", agent_continuation_id="continuation")
FUZZ = settings(
    max_examples=300, derandomize=True, database=None, deadline=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
REPLY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {"cmd": "ls"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 3, "output_tokens": 2},
}


def serve_anthropic(body: dict[str, Any]) -> None:
    """Run what views._serve_body runs before going upstream."""
    mode = web_search_mode(body)
    if mode == "only":
        extract_query(body)
    elif mode == "mixed":
        WebSearchLoop(body, OPTIONS).next_request()
    conversion = convert_request(body, options=OPTIONS)
    count_all_tokens("m", body.get("system"), body.get("messages") or [], body.get("tools") or [])
    encode_body(for_endpoint(conversion.kiro_body, endpoint="ide", profile_arn=None))
    encode_body(for_endpoint(conversion.kiro_body, endpoint="cli", profile_arn="arn:aws:p"))


def count(body: dict[str, Any]) -> None:
    """Run what views.count_tokens runs."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list):
        return  # refused by the view before counting
    resolved = resolve_model(model)
    count_all_tokens(resolved.upstream_id, body.get("system"), messages, body.get("tools"))


def chat(body: dict[str, Any]) -> None:
    openai.client_wants_stream(body)
    openai_chat.chat_include_usage(body)
    serve_anthropic(openai_chat.chat_to_anthropic(body, headers={}))


def responses(body: dict[str, Any]) -> None:
    openai.client_wants_stream(body)
    serve_anthropic(openai_responses.responses_to_anthropic(body, headers={}))
    model = str(body.get("model", ""))
    openai_responses.anthropic_to_responses(REPLY, model=model, request=body)
    openai_responses_events.responses_stream_head(
        model=model, request=body, response_id="resp_1", created_at=1
    )
    openai_responses_events.responses_stream_events(REPLY, model=model, request=body, head=False)


def only_conversion_errors(raw: bytes, run: Any) -> None:
    try:
        body = parse_body(raw)
        run(body)
    except ConversionError:
        pass


@FUZZ
@given(raw=mutated(MESSAGES_BODIES) | garbage(MESSAGES_BODIES))
def test_a_malformed_messages_body_is_a_conversion_error(raw):
    only_conversion_errors(raw, serve_anthropic)


@FUZZ
@given(raw=mutated(COUNT_BODIES) | garbage(COUNT_BODIES))
def test_a_malformed_count_tokens_body_is_a_conversion_error(raw):
    only_conversion_errors(raw, count)


@FUZZ
@given(raw=mutated([CHAT_BODY]) | garbage([CHAT_BODY]))
def test_a_malformed_chat_completions_body_is_a_conversion_error(raw):
    only_conversion_errors(raw, chat)


@FUZZ
@given(raw=mutated([RESPONSES_BODY]) | garbage([RESPONSES_BODY]))
def test_a_malformed_responses_body_is_a_conversion_error(raw):
    only_conversion_errors(raw, responses)


@given(depth=st.integers(MAX_DEPTH - 3, MAX_DEPTH))
@settings(max_examples=4, database=None, deadline=None)
def test_a_body_at_the_depth_limit_goes_through_every_recursive_step(depth):
    tool_input = '{"a":' * (depth - 7) + "1" + "}" * (depth - 7)
    raw = (
        '{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"assistant","content":'
        '[{"type":"tool_use","id":"t","name":"x","input":' + tool_input + "}]},"
        '{"role":"user","content":"hi"}]}'
    ).encode()

    body = parse_body(raw)

    serve_anthropic(body)


def test_a_backslash_before_ud800_is_text_not_an_escape():
    assert parse_body(b'{"text": "C:\\\\ud800"}') == {"text": "C:\\ud800"}


def test_an_escaped_surrogate_pair_is_one_character():
    assert parse_body(b'{"text": "\\ud83d\\ude00"}') == {"text": "😀"}


def test_a_byte_order_mark_is_skipped():
    assert parse_body(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ('{"a": 1}'.encode("utf-16"), "not valid UTF-8"),
        (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8"),  # a surrogate encoded as UTF-8
        (b'{"a": "\\udc00"}', "lone UTF-16 surrogate"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": -Infinity}', "not valid JSON"),
        (b'{"a": 1e999}', "out of range"),
        (b"", "empty"),
        (b"[1]", "must be a JSON object"),
        (b"[" * 100_000, "nests deeper than 128 levels"),
    ],
)
def test_what_parse_body_refuses(raw, needle):
    with pytest.raises(ConversionError, match=needle):
        parse_body(raw)
