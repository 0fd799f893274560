"""Web search through Kiro's MCP endpoint (spec kiro-protocol §11), without any I/O."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from gateway.protocol.convert import ConversionError, ConvertOptions
from gateway.protocol.errors import UpstreamFailure
from gateway.protocol.events import (
    AssistantResponse,
    ContextUsage,
    KiroEvent,
    Metadata,
    Metering,
    TokenUsage,
    ToolUse,
)
from gateway.protocol.websearch import (
    SearchOutcome,
    SearchResult,
    extract_query,
    format_page_age,
    mcp_request,
    new_search_message_id,
    new_server_tool_id,
    parse_mcp_response,
    render_search_message,
    render_search_stream,
    summary_text,
)
from gateway.protocol.websearch_loop import (
    EMPTY_ROUND_MESSAGE,
    MAX_SEARCH_ROUNDS,
    MISSING_QUERY_MESSAGE,
    READ_ERROR_MESSAGE,
    WebSearchLoop,
    query_from_input,
)

MODEL = "claude-sonnet-4-5-20250929"
FOOTER = (
    "\nPlease note that these are web search results and may not be fully accurate or up-to-date."
)
INNER = {
    "results": [
        {
            "title": "Rust",
            "url": "https://www.rust-lang.org",
            "snippet": "A language empowering everyone…",
            "publishedDate": 1735689600000,
            "id": "r1",
            "domain": "rust-lang.org",
            "maxVerbatimWordLimit": 30,
            "publicDomain": False,
        }
    ],
    "totalResults": 1,
    "query": "rust",
}
RUST = SearchResult(
    title="Rust",
    url="https://www.rust-lang.org",
    snippet="A language empowering everyone…",
    published_ms=1735689600000,
)
RUST_SUMMARY = (
    'Here are the search results for "rust":\n\n'
    "1. **Rust**\n"
    "   A language empowering everyone…\n"
    "   Source: https://www.rust-lang.org\n\n" + FOOTER
)


def mcp_answer(inner: Any = INNER, **overrides: Any) -> bytes:
    """Build an MCP answer like the spec 11.3 example."""
    text = inner if isinstance(inner, str) else json.dumps(inner)
    answer: dict[str, Any] = {
        "id": "web_search_tooluse_x",
        "jsonrpc": "2.0",
        "result": {"content": [{"type": "text", "text": text}], "isError": False},
    }
    answer.update(overrides)
    return json.dumps(answer).encode()


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split SSE bytes into (event, data) pairs, checking framing and sorted keys."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n")
    events = []
    for chunk in text.split("\n\n")[:-1]:
        name_line, data_line = chunk.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        payload = data_line[6:]
        data = json.loads(payload)
        # spec 6.1: keys sorted, compact
        assert payload == json.dumps(
            data, ensure_ascii=False, separators=(",", ":"), sort_keys=True
        )
        events.append((name_line[7:], data))
    return events


# --- query extraction (spec 11.2) -------------------------------------------------------------


def test_it_strips_the_claude_code_prefix_from_a_string_message() -> None:
    body = {"messages": [{"role": "user", "content": "Perform a web search for the query: rust"}]}

    assert extract_query(body) == "rust"


def test_it_takes_the_query_from_the_first_text_block() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "rust 2026"}]},
            {"role": "user", "content": "ignored"},
        ]
    }

    assert extract_query(body) == "rust 2026"


def test_it_skips_system_role_messages_when_looking_for_the_query() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "env"},
            {"role": "user", "content": "Perform a web search for the query: tokio"},
        ]
    }

    assert extract_query(body) == "tokio"


@pytest.mark.parametrize(
    "content",
    [
        "",
        "Perform a web search for the query: ",
        "   ",
        [],
        [{"type": "image", "source": {}}, {"type": "text", "text": "rust"}],
        [{"type": "text", "text": 3}],
    ],
)
def test_it_refuses_a_request_without_a_usable_query(content: Any) -> None:
    with pytest.raises(ConversionError, match="unable to extract a web search query"):
        extract_query({"messages": [{"role": "user", "content": content}]})


def test_it_refuses_a_request_without_messages() -> None:
    with pytest.raises(ConversionError):
        extract_query({"messages": []})


# --- MCP request (spec 11.3) ------------------------------------------------------------------


def test_it_builds_the_mcp_body_in_the_spec_key_order() -> None:
    request_id, body = mcp_request("rust", rng=random.Random(7), now_ms=1735689600000)

    assert re.fullmatch(r"web_search_tooluse_[A-Za-z0-9]{22}_1735689600000_[a-z0-9]{8}", request_id)
    assert body == (
        b'{"id":"' + request_id.encode() + b'","jsonrpc":"2.0","method":"tools/call",'
        b'"params":{"name":"web_search","arguments":{"query":"rust"}}}'
    )


def test_it_sends_the_query_as_raw_utf8() -> None:
    _, body = mcp_request('Rust "宏"', now_ms=1)

    assert '"query":"Rust \\"宏\\""'.encode() in body


def test_it_makes_a_fresh_request_id_each_time() -> None:
    first, _ = mcp_request("rust")
    second, _ = mcp_request("rust")

    assert first != second
    assert re.fullmatch(r"web_search_tooluse_[A-Za-z0-9]{22}_\d{13}_[a-z0-9]{8}", first)


# --- MCP response (spec 11.3) -----------------------------------------------------------------


def test_it_parses_the_spec_example_response() -> None:
    outcome = parse_mcp_response(200, mcp_answer())

    assert outcome == SearchOutcome(results=(RUST,))
    assert not outcome.failed
    assert outcome.results[0].page_age == "January 1, 2025"


def test_it_reports_a_json_rpc_error_as_a_failure() -> None:
    answer = mcp_answer(error={"code": -32000, "message": "boom"}, result=None)

    outcome = parse_mcp_response(200, answer)

    assert outcome.failed
    assert outcome.error is not None and outcome.error.kind == "rpc_error"
    assert outcome.error.message == "MCP error: -32000 - boom"
    failure = outcome.failure()
    assert (failure.status, failure.error_type) == (502, "api_error")
    assert failure.message == "Web search failed: MCP error: -32000 - boom"


def test_it_fills_in_a_json_rpc_error_without_code_or_message() -> None:
    outcome = parse_mcp_response(200, mcp_answer(error={}))

    assert outcome.error is not None
    assert outcome.error.message == "MCP error: -1 - Unknown error"


def test_it_treats_tool_returned_no_results_as_an_empty_result() -> None:
    answer = mcp_answer(error={"code": -32602, "message": "Tool returned no results"})

    outcome = parse_mcp_response(200, answer)

    assert outcome.results == ()
    assert not outcome.failed
    assert outcome.error is not None and outcome.error.kind == "no_results"


def test_it_keeps_other_invalid_params_errors_as_failures() -> None:
    answer = mcp_answer(error={"code": -32602, "message": "query too long"})

    assert parse_mcp_response(200, answer).failed


def test_it_treats_unreadable_inner_json_as_no_results() -> None:
    outcome = parse_mcp_response(200, mcp_answer("not json {"))

    assert outcome.results == ()
    assert not outcome.failed
    assert outcome.error is not None and outcome.error.kind == "no_results"


@pytest.mark.parametrize(
    "result",
    [None, {"content": []}, {"content": [{"type": "image", "text": "{}"}]}, {"content": "x"}],
)
def test_it_treats_a_result_without_text_content_as_no_results(result: Any) -> None:
    outcome = parse_mcp_response(200, mcp_answer(result=result))

    assert outcome.results == () and not outcome.failed


def test_it_skips_only_the_malformed_hits() -> None:
    inner = {"results": [{"title": "No url"}, INNER["results"][0], "junk"]}

    assert parse_mcp_response(200, mcp_answer(inner)).results == (RUST,)


def test_it_reports_a_tool_error_flag_as_a_failure() -> None:
    result = {"content": [{"type": "text", "text": "search backend down"}], "isError": True}

    outcome = parse_mcp_response(200, mcp_answer(result=result))

    assert outcome.failed
    assert outcome.error is not None and "search backend down" in outcome.error.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"message":"Internal"}'),
        (200, b"<html>gateway</html>"),
        (200, b"[1, 2]"),
        (200, b'{"jsonrpc":"2.0","result":{}}'),
    ],
)
def test_it_reports_an_unreadable_answer_as_a_bad_response(status: int, body: bytes) -> None:
    outcome = parse_mcp_response(status, body)

    assert outcome.failed
    assert outcome.error is not None and outcome.error.kind == "bad_response"


# --- summary text and result blocks (spec 11.4) -----------------------------------------------


def test_it_writes_the_summary_for_no_results() -> None:
    text = summary_text("rust", SearchOutcome())

    assert text == 'Here are the search results for "rust":\n\nNo results found.\n' + FOOTER


def test_it_writes_the_summary_for_one_result() -> None:
    assert summary_text("rust", SearchOutcome(results=(RUST,))) == RUST_SUMMARY


def test_it_writes_the_summary_for_two_results_cutting_a_long_snippet() -> None:
    long = "é" * 150 + "x" * 60  # 210 characters, more bytes
    second = SearchResult(title="Cargo", url="https://doc.rust-lang.org/cargo", snippet=long)
    third = SearchResult(title="No snippet", url="https://example.com")

    text = summary_text("rust", SearchOutcome(results=(second, third)))

    assert text == (
        'Here are the search results for "rust":\n\n'
        "1. **Cargo**\n"
        "   " + "é" * 150 + "x" * 50 + "...\n"
        "   Source: https://doc.rust-lang.org/cargo\n\n"
        "2. **No snippet**\n"
        "   Source: https://example.com\n\n" + FOOTER
    )


def test_it_keeps_a_snippet_of_exactly_200_characters_whole() -> None:
    hit = SearchResult(title="T", url="u", snippet="a" * 200)

    assert "   " + "a" * 200 + "\n" in summary_text("q", SearchOutcome(results=(hit,)))


@pytest.mark.parametrize(
    ("millis", "expected"),
    [
        (1735689600000, "January 1, 2025"),
        (1735689599999, "December 31, 2024"),
        (1752624000000, "July 16, 2025"),
        (-86400000, "December 31, 1969"),
        (10**18, None),
    ],
)
def test_it_formats_page_age_in_utc(millis: int, expected: str | None) -> None:
    assert format_page_age(millis) == expected


def test_it_renders_a_hit_as_a_web_search_result() -> None:
    bare = SearchResult(title="T", url="https://t")

    assert RUST.block() == {
        "type": "web_search_result",
        "title": "Rust",
        "url": "https://www.rust-lang.org",
        "encrypted_content": "A language empowering everyone…",
        "page_age": "January 1, 2025",
    }
    assert bare.block()["encrypted_content"] == ""
    assert bare.block()["page_age"] is None


def test_it_makes_ids_of_the_spec_shapes() -> None:
    assert re.fullmatch(r"srvtoolu_[0-9a-f]{32}", new_server_tool_id())
    assert re.fullmatch(r"msg_[0-9a-f]{24}", new_search_message_id())


# --- single-tool rendering (spec 11.4) --------------------------------------------------------


def test_it_renders_the_fixed_sse_event_list() -> None:
    raw = render_search_stream(
        "rust",
        SearchOutcome(results=(RUST,)),
        model=MODEL,
        input_tokens=42,
        message_id="msg_0123456789abcdef01234567",
        tool_use_id="srvtoolu_x",
    )

    events = parse_sse(raw)
    summary_deltas = [
        data["delta"]["text"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == 3
    ]
    assert "".join(summary_deltas) == RUST_SUMMARY
    assert [len(piece) for piece in summary_deltas] == [100] * (len(RUST_SUMMARY) // 100) + [
        len(RUST_SUMMARY) % 100
    ]
    others = [
        (name, data)
        for name, data in events
        if not (name == "content_block_delta" and data["index"] == 3)
    ]
    assert others == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_0123456789abcdef01234567",
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "stop_reason": None,
                    "usage": {
                        "input_tokens": 42,
                        "output_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": 'I\'ll search for "rust".'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "server_tool_use",
                    "id": "srvtoolu_x",
                    "name": "web_search",
                    "input": {"query": "rust"},
                },
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {
                    "type": "web_search_tool_result",
                    "tool_use_id": "srvtoolu_x",
                    "content": [RUST.block()],
                },
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 3,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 3}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {
                    "output_tokens": (len(RUST_SUMMARY.encode()) + 3) // 4,
                    "server_tool_use": {"web_search_requests": 1},
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_it_renders_the_non_stream_message() -> None:
    message = render_search_message(
        "rust",
        SearchOutcome(results=(RUST,)),
        model=MODEL,
        input_tokens=42,
        message_id="msg_fixed",
        tool_use_id="srvtoolu_x",
    )

    assert message == {
        "id": "msg_fixed",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "text", "text": 'I\'ll search for "rust".'},
            {
                "type": "server_tool_use",
                "id": "srvtoolu_x",
                "name": "web_search",
                "input": {"query": "rust"},
            },
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_x",
                "content": [RUST.block()],
            },
            {"type": "text", "text": RUST_SUMMARY},
        ],
        "model": MODEL,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 42,
            "output_tokens": (len(RUST_SUMMARY.encode()) + 3) // 4,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "server_tool_use": {"web_search_requests": 1},
        },
    }


def test_it_renders_no_results_as_an_empty_result_list() -> None:
    message = render_search_message("rust", SearchOutcome(), model=MODEL, input_tokens=1)

    assert message["content"][2]["content"] == []
    assert "No results found." in message["content"][3]["text"]


def test_it_refuses_to_render_a_failed_search_as_a_success() -> None:
    failed = parse_mcp_response(200, mcp_answer(error={"code": -1, "message": "down"}))

    with pytest.raises(UpstreamFailure):
        render_search_stream("rust", failed, model=MODEL, input_tokens=1)
    with pytest.raises(UpstreamFailure):
        render_search_message("rust", failed, model=MODEL, input_tokens=1)


# --- query from a tool input (spec 11.5 step 2) -----------------------------------------------


@pytest.mark.parametrize(
    ("tool_input", "expected"),
    [
        ({"query": "rust"}, "rust"),
        ({"search_query": "rust"}, "rust"),
        ({"q": " rust "}, "rust"),
        ({"queries": ["", "rust", "go"]}, "rust"),
        ({"query": "", "q": "rust"}, "rust"),
        ({"query": {"text": "rust"}}, "rust"),
        ({"queries": [{"value": "rust"}]}, "rust"),
        ({"query": 3}, ""),
        ({}, ""),
        ("rust", "rust"),
    ],
)
def test_it_finds_the_query_in_a_tool_input(tool_input: Any, expected: str) -> None:
    assert query_from_input(tool_input) == expected


# --- the mixed-tools loop (spec 11.5) ---------------------------------------------------------

WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OPTIONS = ConvertOptions(
    tool_mode="raw", conversation_id="conv-fixed", agent_continuation_id="agent-fixed"
)


def loop_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": "What is new in Rust, and the weather in Paris?"}],
        "tools": [WEB_SEARCH_TOOL, WEATHER_TOOL],
    }
    body.update(overrides)
    return body


def call(tool_id: str, name: str, tool_input: dict[str, Any]) -> ToolUse:
    return ToolUse(name=name, tool_use_id=tool_id, input=json.dumps(tool_input), stop=True)


def search_round(*queries: str, text: str = "Searching.") -> list[KiroEvent]:
    events: list[KiroEvent] = [AssistantResponse(text)] if text else []
    events += [call(f"tooluse_s{i}", "web_search", {"query": q}) for i, q in enumerate(queries)]
    return events


def token_usage(uncached: int, output: int, *, creation: int = 0, read: int = 0) -> TokenUsage:
    return TokenUsage(
        uncached_input_tokens=uncached,
        output_tokens=output,
        cache_read_input_tokens=read,
        cache_write_input_tokens=creation,
    )


def found(title: str = "Rust") -> SearchOutcome:
    return SearchOutcome(
        results=(SearchResult(title=title, url=f"https://{title.lower()}.example"),)
    )


def run_search_round(loop: WebSearchLoop, *queries: str) -> list[str]:
    loop.next_request()
    asked = loop.feed_round(search_round(*queries))
    loop.add_search_results([found(q) for q in asked])
    return asked


def test_it_returns_the_queries_of_a_web_search_only_round() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    queries = loop.feed_round(search_round("rust 1.90", "tokio"))

    assert queries == ["rust 1.90", "tokio"]
    assert not loop.done


def test_it_sends_the_web_search_tool_as_a_normal_tool() -> None:
    conversion = WebSearchLoop(loop_body(), OPTIONS).next_request()

    context = conversion.kiro_body["conversationState"]["currentMessage"]["userInputMessage"][
        "userInputMessageContext"
    ]
    names = [tool["toolSpecification"]["name"] for tool in context["tools"]]
    assert names == ["web_search", "get_weather"]


def test_it_feeds_the_search_back_as_tool_use_and_tool_result() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    run_search_round(loop, "rust")

    conversion = loop.next_request()

    state = conversion.kiro_body["conversationState"]
    assistant = state["history"][-1]["assistantResponseMessage"]
    assert assistant["content"] == "Searching."
    assert assistant["toolUses"] == [
        {"toolUseId": "tooluse_s0", "name": "web_search", "input": {"query": "rust"}}
    ]
    results = state["currentMessage"]["userInputMessage"]["userInputMessageContext"]["toolResults"]
    assert results == [
        {
            "toolUseId": "tooluse_s0",
            "content": [{"text": summary_text("rust", found("rust"))}],
            "status": "success",
        }
    ]
    assert state["conversationId"] == "conv-fixed"


def test_it_keeps_one_conversation_id_across_rounds() -> None:
    loop = WebSearchLoop(loop_body(), ConvertOptions(tool_mode="raw"))
    first = loop.next_request()
    loop.feed_round(search_round("rust"))
    loop.add_search_results([found()])

    second = loop.next_request()

    assert second.conversation_id == first.conversation_id
    assert (
        second.kiro_body["conversationState"]["agentContinuationId"]
        == first.kiro_body["conversationState"]["agentContinuationId"]
    )


def test_it_finishes_with_tool_use_when_a_client_tool_is_called() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    run_search_round(loop, "rust")
    loop.next_request()

    queries = loop.feed_round(
        [
            AssistantResponse("Rust 1.90 is out."),
            call("tooluse_w", "get_weather", {"city": "Paris"}),
        ]
    )

    assert queries == []
    assert loop.done
    message = loop.finish_message()
    assert message["stop_reason"] == "tool_use"
    assert [block["type"] for block in message["content"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
        "tool_use",
    ]
    use, result, text, tool = message["content"]
    assert use["input"] == {"query": "rust"} and use["name"] == "web_search"
    assert result["tool_use_id"] == use["id"]
    assert result["content"] == [found("rust").results[0].block()]
    assert text == {"type": "text", "text": "Rust 1.90 is out."}
    assert tool == {
        "type": "tool_use",
        "id": "tooluse_w",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert message["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_it_finishes_with_end_turn_on_a_plain_answer() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    run_search_round(loop, "rust")
    loop.next_request()

    loop.feed_round([AssistantResponse("All done.")])

    assert loop.finish_message()["stop_reason"] == "end_turn"


def test_it_searches_web_search_calls_of_a_mixed_final_round() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    queries = loop.feed_round(
        [
            call("tooluse_s", "web_search", {"q": "rust"}),
            call("tooluse_w", "get_weather", {"city": "Oslo"}),
        ]
    )

    assert queries == ["rust"] and not loop.done
    loop.add_search_results([found()])
    message = loop.finish_message()
    assert [block["type"] for block in message["content"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "tool_use",
    ]
    assert message["stop_reason"] == "tool_use"
    assert all(
        block.get("name") != "web_search"
        for block in message["content"]
        if block["type"] == "tool_use"
    )


def test_it_stops_looping_after_the_round_cap() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    for n in range(MAX_SEARCH_ROUNDS):
        assert run_search_round(loop, f"q{n}") == [f"q{n}"]
        assert not loop.done
    loop.next_request()

    queries = loop.feed_round(search_round("one more"))
    loop.add_search_results([found()])

    assert queries == ["one more"]
    assert loop.done
    assert loop.rounds == MAX_SEARCH_ROUNDS + 1
    message = loop.finish_message()
    kinds = [block["type"] for block in message["content"]]
    pair = ["server_tool_use", "web_search_tool_result"]
    # the capped round's own text comes before its (still searched) calls
    assert kinds == pair * MAX_SEARCH_ROUNDS + ["text", *pair]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["server_tool_use"] == {"web_search_requests": MAX_SEARCH_ROUNDS + 1}


def test_it_retries_an_empty_round_after_a_tool_result_once() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    run_search_round(loop, "rust")
    first = loop.next_request()

    assert loop.feed_round([ContextUsage(2.0)]) == []

    assert not loop.done
    assert loop.next_request() is first
    loop.feed_round([AssistantResponse("Found it.")])
    assert loop.finish_message()["content"][-1] == {"type": "text", "text": "Found it."}


def test_it_fails_after_a_second_empty_round_after_a_tool_result() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    run_search_round(loop, "rust")
    loop.next_request()
    loop.feed_round([])
    loop.next_request()

    with pytest.raises(UpstreamFailure) as caught:
        loop.feed_round([AssistantResponse("")])

    assert (caught.value.status, caught.value.error_type) == (502, "api_error")
    assert caught.value.kind == "empty_answer"
    assert caught.value.message == EMPTY_ROUND_MESSAGE
    assert loop.result.had_error and not loop.result.finished
    with pytest.raises(RuntimeError):
        loop.next_request()


def test_it_retries_an_empty_first_round_after_a_client_tool_result() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
        },
    ]
    loop = WebSearchLoop(loop_body(messages=messages), OPTIONS)
    loop.next_request()

    assert loop.feed_round([]) == []
    assert not loop.done


def test_it_answers_an_empty_round_after_plain_text_with_empty_content() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    loop.feed_round([])

    message = loop.finish_message()
    assert message["content"] == [] and message["stop_reason"] == "end_turn"


def test_it_fails_when_the_upstream_body_broke_off() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    with pytest.raises(UpstreamFailure) as caught:
        loop.feed_round(
            [AssistantResponse("partial"), Metadata(token_usage(10, 2))], complete=False
        )

    assert caught.value.message == READ_ERROR_MESSAGE
    assert (caught.value.error_type, caught.value.kind) == ("api_error", "stream_interrupted")
    assert loop.result.input_tokens == 10  # the broken round's usage still counts


def test_it_fails_when_a_search_fails() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()
    loop.feed_round(search_round("rust"))
    failed = parse_mcp_response(503, b"Service Unavailable")

    with pytest.raises(UpstreamFailure) as caught:
        loop.add_search_results([failed])

    assert caught.value.status == 502
    assert caught.value.message.startswith("Web search failed: MCP HTTP 503")


def test_it_continues_when_a_search_finds_nothing() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()
    loop.feed_round(search_round("zzz"))
    nothing = parse_mcp_response(
        200, mcp_answer(error={"code": -32602, "message": "Tool returned no results"})
    )

    loop.add_search_results([nothing])

    results = loop.next_request().kiro_body["conversationState"]["currentMessage"][
        "userInputMessage"
    ]["userInputMessageContext"]["toolResults"]
    assert "No results found." in results[0]["content"][0]["text"]


def test_it_fails_when_tool_json_is_broken() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    with pytest.raises(UpstreamFailure) as caught:
        loop.feed_round([ToolUse("web_search", "tooluse_s", '{"query": "ru', True)])

    assert (caught.value.error_type, caught.value.kind) == ("api_error", "tool_json_cut")


def test_it_answers_a_web_search_call_without_a_query_with_an_error() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    queries = loop.feed_round(
        [call("tooluse_a", "web_search", {}), call("tooluse_b", "web_search", {"query": "rust"})]
    )
    assert queries == ["rust"]
    loop.add_search_results([found()])

    context = loop.next_request().kiro_body["conversationState"]["currentMessage"][
        "userInputMessage"
    ]["userInputMessageContext"]
    assert context["toolResults"][0] == {
        "toolUseId": "tooluse_a",
        "content": [{"text": MISSING_QUERY_MESSAGE}],
        "status": "error",
        "isError": True,
    }
    assert context["toolResults"][1]["status"] == "success"
    loop.feed_round([AssistantResponse("ok")])
    first_result = loop.finish_message()["content"][1]
    assert first_result["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "invalid_input",
    }
    assert loop.searches == 1


def test_it_moves_on_by_itself_when_no_call_has_a_query() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()

    assert loop.feed_round([call("tooluse_a", "web_search", {"query": "  "})]) == []

    assert not loop.done
    loop.next_request()  # no add_search_results needed


def test_it_keeps_an_upstream_stop_override() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    run_search_round(loop, "rust")
    loop.next_request()

    loop.feed_round([AssistantResponse("Long answer"), ContextUsage(100.0)])

    assert loop.finish_message()["stop_reason"] == "model_context_window_exceeded"


def test_it_sums_usage_and_credits_over_rounds() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()
    loop.feed_round(
        [
            *search_round("rust"),
            Metering("credit", "credits", 0.25),
            Metadata(token_usage(100, 20, creation=5, read=7)),
        ]
    )
    loop.add_search_results([found()])
    loop.next_request()
    loop.feed_round(
        [
            AssistantResponse("Done."),
            Metering("credit", "credits", 0.5),
            Metadata(token_usage(300, 40, creation=1, read=2)),
        ]
    )

    usage = loop.finish_message()["usage"]

    assert usage == {
        "input_tokens": 400,
        "output_tokens": 60,
        "cache_creation_input_tokens": 6,
        "cache_read_input_tokens": 9,
        "server_tool_use": {"web_search_requests": 1},
        "credit_usage": 0.75,
        "credit_unit": "credit",
        "credit_unit_plural": "credits",
    }
    result = loop.result
    assert (result.input_tokens, result.output_tokens, result.credits) == (400, 60, 0.75)
    assert result.finished and result.stop_reason == "end_turn"


def test_it_renders_the_loop_as_sse() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS, message_id="msg_loop")
    run_search_round(loop, "rust")
    loop.next_request()
    loop.feed_round(
        [
            AssistantResponse("Rust 1.90 is out."),
            call("tooluse_w", "get_weather", {"city": "Paris"}),
            Metadata(token_usage(10, 3)),
        ]
    )

    events = parse_sse(loop.finish_stream())

    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",  # server_tool_use, whole
        "content_block_stop",
        "content_block_start",  # web_search_tool_result, whole
        "content_block_stop",
        "content_block_start",  # text
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # tool_use
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = loop.finish_message()
    assert events[0][1]["message"]["id"] == "msg_loop"
    assert events[1][1]["content_block"] == message["content"][0]
    assert events[3][1]["content_block"] == message["content"][1]
    assert [data["index"] for name, data in events if name == "content_block_start"] == [0, 1, 2, 3]
    assert events[8][1]["content_block"] == {
        "type": "tool_use",
        "id": "tooluse_w",
        "name": "get_weather",
        "input": {},
    }
    assert events[9][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
    assert events[11][1]["delta"] == {"stop_reason": "tool_use"}
    assert events[11][1]["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_it_never_reclaims_a_leaked_web_search_invoke_as_a_tool_call() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()
    leaked = '<invoke name="web_search">\n<parameter name="query">rust</parameter>\n</invoke>\n'

    assert loop.feed_round([AssistantResponse(leaked)]) == []

    message = loop.finish_message()
    assert [block["type"] for block in message["content"]] == ["text"]
    assert message["stop_reason"] == "end_turn"


def test_it_drops_a_reclaimed_call_that_repeats_a_structured_one() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)
    loop.next_request()
    leaked = '<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n</invoke>\n'

    loop.feed_round(
        [AssistantResponse(leaked), call("tooluse_w", "get_weather", {"city": "Paris"})]
    )

    tools = [block for block in loop.finish_message()["content"] if block["type"] == "tool_use"]
    assert [tool["id"] for tool in tools] == ["tooluse_w"]


def test_it_refuses_calls_out_of_order() -> None:
    loop = WebSearchLoop(loop_body(), OPTIONS)

    with pytest.raises(RuntimeError):
        loop.feed_round([])
    with pytest.raises(RuntimeError):
        loop.finish_stream()
    loop.next_request()
    loop.feed_round(search_round("rust"))
    with pytest.raises(RuntimeError):
        loop.next_request()
    with pytest.raises(ValueError, match="expected 1 search outcomes"):
        loop.add_search_results([])


def test_it_returns_reasoning_as_a_thinking_block_and_restores_claude_code_tools() -> None:
    read_tool = {
        "name": "Read",
        "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
    }
    body = loop_body(
        tools=[WEB_SEARCH_TOOL, read_tool], thinking={"type": "enabled", "budget_tokens": 2000}
    )
    loop = WebSearchLoop(body, ConvertOptions(conversation_id="c", agent_continuation_id="a"))
    loop.next_request()

    loop.feed_round(
        [
            AssistantResponse("<thinking>check the file</thinking>\n\nReading."),
            call("tooluse_r", "read_file", {"path": "/a", "explanation": "why"}),
        ]
    )

    content = loop.finish_message()["content"]
    assert content == [
        {
            "type": "thinking",
            "thinking": "check the file",
            "signature": "kiro-rs-thinking-signature",
        },
        {"type": "text", "text": "Reading."},
        {"type": "tool_use", "id": "tooluse_r", "name": "Read", "input": {"file_path": "/a"}},
    ]
    events = parse_sse(loop.finish_stream())
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": ""}
    assert events[3][1]["delta"]["type"] == "signature_delta"
