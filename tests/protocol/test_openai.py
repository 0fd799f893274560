"""OpenAI Chat Completions and Responses translation (spec kiro-protocol §12)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.protocol.assemble import assemble_message
from gateway.protocol.classify import CONTEXT_FULL
from gateway.protocol.convert import ConvertOptions, convert_request, web_search_mode
from gateway.protocol.events import AssistantResponse, ToolUse
from gateway.protocol.models import ConversionError
from gateway.protocol.openai import (
    DEFAULT_MAX_TOKENS,
    IMAGE_OMITTED,
    anthropic_error_to_openai,
    client_wants_stream,
    conversion_error_body,
    openai_error,
)
from gateway.protocol.openai_chat import anthropic_to_chat, chat_to_anthropic
from gateway.protocol.openai_responses import (
    WEB_SEARCH_NUDGE,
    anthropic_to_responses,
    responses_to_anthropic,
)
from gateway.protocol.openai_responses_events import (
    responses_failed_event,
    responses_stream_events,
    responses_stream_head,
)
from gateway.protocol.translate import TranslateOptions
from gateway.protocol.websearch_loop import WebSearchLoop

CLIENTS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "clients"
CHAT_CAPTURES = ["openai-sdk-chat-stream.json", "openai-sdk-chat-tool-turn2.json"]
RESPONSES_CAPTURES = ["codex-exec-turn1.json", "codex-exec-turn2-tool-output.json"]
SESSION = "8bb5523b-ec7c-4540-a9ca-beb6d79f1552"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
    "AAAABJRU5ErkJggg=="
)


def capture(name: str) -> dict[str, Any]:
    return json.loads((CLIENTS / name).read_text())


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "messages": list(messages), **fields}


def responses(items: Any, **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "input": items, **fields}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def message(
    *content: dict[str, Any], stop_reason: str = "end_turn", **usage: Any
) -> dict[str, Any]:
    """Build an assembled Anthropic message as assemble.assemble_result returns it."""
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": list(content),
        "model": "claude-sonnet-4-5",
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "cache_creation_input_tokens": 2,
            "cache_read_input_tokens": 3,
            "input_tokens": 10,
            "output_tokens": 5,
            **usage,
        },
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: Any, tool_id: str = "tooluse_1") -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def events(stream: bytes) -> list[tuple[str, dict[str, Any]]]:
    parsed = []
    for frame in stream.decode().split("\n\n")[:-1]:
        name_line, data_line = frame.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}"
        parsed.append((data["type"], data))
    return parsed


CUSTOM_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: 'x'"},
}
NAMESPACE_TOOL = {
    "type": "namespace",
    "name": "agents",
    "description": "Sub-agents.",
    "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}],
}
EXEC_TOOL = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}


# --- real client captures --------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_CAPTURES)
def test_it_converts_the_chat_capture_into_a_body_convert_request_accepts(name: str) -> None:
    recorded = capture(name)

    body = chat_to_anthropic(recorded["body"], headers=recorded["headers"])

    conversion = convert_request(body, options=ConvertOptions())
    assert conversion.stream is False
    assert conversion.kiro_body["conversationState"]["currentMessage"]["userInputMessage"]


@pytest.mark.parametrize("name", RESPONSES_CAPTURES)
def test_it_converts_the_codex_capture_into_a_body_convert_request_accepts(name: str) -> None:
    recorded = capture(name)

    body = responses_to_anthropic(recorded["body"], headers=recorded["headers"])

    conversion = convert_request(body, options=ConvertOptions())
    assert conversion.conversation_id == recorded["body"]["prompt_cache_key"]


@pytest.mark.parametrize("name", CHAT_CAPTURES + RESPONSES_CAPTURES)
def test_it_never_streams_the_inner_request_but_remembers_the_client_asked(name: str) -> None:
    recorded = capture(name)
    convert = chat_to_anthropic if name in CHAT_CAPTURES else responses_to_anthropic

    body = convert(recorded["body"], headers=recorded["headers"])

    assert body["stream"] is False
    assert client_wants_stream(recorded["body"]) is True


def test_it_reads_the_chat_tool_round_trip_capture() -> None:
    body = chat_to_anthropic(capture("openai-sdk-chat-tool-turn2.json")["body"])

    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    call = body["messages"][1]["content"][0]
    assert call["name"] == "Bash"
    assert call["input"]["description"] == "Print a marker string"
    assert body["messages"][2]["content"][0]["tool_use_id"] == call["id"]
    assert body["system"] == [text("be brief")]


def test_it_runs_a_codex_request_through_the_web_search_loop() -> None:
    recorded = capture("codex-exec-turn2-tool-output.json")
    body = responses_to_anthropic(recorded["body"], headers=recorded["headers"])

    conversion = WebSearchLoop(body, ConvertOptions()).next_request()

    assert web_search_mode(body) == "mixed"
    assert conversion.kiro_body["conversationState"]["history"]


def test_it_leaves_out_the_hosted_tool_of_a_codex_capture_without_web_search() -> None:
    recorded = capture("codex-exec-turn1.json")

    body = responses_to_anthropic(recorded["body"], inject_web_search=False)

    assert "web_search" not in [tool["name"] for tool in body["tools"]]
    assert web_search_mode(body) == "none"
    assert WEB_SEARCH_NUDGE not in [block["text"] for block in body["system"]]


# --- chat completions: request ---------------------------------------------------------------


def test_it_defaults_max_tokens_to_32000() -> None:
    assert chat_to_anthropic(chat({"role": "user", "content": "hi"}))["max_tokens"] == 32_000
    assert DEFAULT_MAX_TOKENS == 32_000


def test_it_prefers_max_completion_tokens_over_max_tokens() -> None:
    body = chat({"role": "user", "content": "hi"}, max_tokens=10, max_completion_tokens=20)

    assert chat_to_anthropic(body)["max_tokens"] == 20


def test_it_rejects_a_non_positive_max_tokens_naming_the_field() -> None:
    with pytest.raises(ConversionError) as caught:
        chat_to_anthropic(chat({"role": "user", "content": "hi"}, max_tokens=0))

    assert caught.value.field == "max_tokens"


def test_it_maps_reasoning_effort_to_output_config() -> None:
    body = chat_to_anthropic(chat({"role": "user", "content": "hi"}, reasoning_effort="medium"))

    assert body["output_config"] == {"effort": "medium"}
    assert "thinking" not in body


def test_it_reads_minimal_effort_as_low() -> None:
    body = chat_to_anthropic(chat({"role": "user", "content": "hi"}, reasoning_effort="minimal"))

    assert body["output_config"] == {"effort": "low"}


def test_it_requests_no_reasoning_for_effort_none_on_a_claude_model() -> None:
    body = chat_to_anthropic(chat({"role": "user", "content": "hi"}, reasoning_effort="none"))

    assert "output_config" not in body


def test_it_moves_system_and_developer_messages_to_system() -> None:
    body = chat_to_anthropic(
        chat(
            {"role": "system", "content": "S"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "D"}]},
        )
    )

    assert body["system"] == [text("S"), text("D")]
    assert body["messages"] == [{"role": "user", "content": [text("hi")]}]


def test_it_turns_a_data_url_into_an_image_block() -> None:
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}

    body = chat_to_anthropic(
        chat({"role": "user", "content": [{"type": "text", "text": "?"}, part]})
    )

    image = body["messages"][0]["content"][1]
    assert image == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    convert_request(body, options=ConvertOptions())


def test_it_leaves_a_note_for_a_remote_image_url() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}

    body = chat_to_anthropic(chat({"role": "user", "content": [part]}))

    assert body["messages"][0]["content"] == [text(IMAGE_OMITTED)]


def test_it_turns_tool_calls_into_tool_use_with_parsed_arguments() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
    ]

    body = chat_to_anthropic(
        chat(
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": calls},
        )
    )

    assert body["messages"][1]["content"] == [
        text("Let me check."),
        tool_use("f", {"a": 1}, "c1"),
        tool_use("g", {}, "c2"),
    ]


def test_it_merges_consecutive_tool_messages_into_one_user_turn() -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for i in (1, 2)
    ]

    body = chat_to_anthropic(
        chat(
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": "go on"},
        )
    )

    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "c2", "content": "two"},
        text("go on"),
    ]


def test_it_converts_function_tools() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = {
        "type": "function",
        "function": {"name": "weather", "description": "W", "parameters": schema},
    }

    body = chat_to_anthropic(chat({"role": "user", "content": "hi"}, tools=[tool]))

    assert body["tools"] == [{"name": "weather", "description": "W", "input_schema": schema}]


def test_it_withholds_tools_when_tool_choice_is_none() -> None:
    tool = {"type": "function", "function": {"name": "weather"}}

    body = chat_to_anthropic(
        chat({"role": "user", "content": "hi"}, tools=[tool], tool_choice="none")
    )

    assert "tools" not in body


def test_it_takes_the_session_from_prompt_cache_key() -> None:
    body = chat_to_anthropic(chat({"role": "user", "content": "hi"}, prompt_cache_key=SESSION))

    assert body["metadata"] == {"user_id": f"session_{SESSION}"}
    assert convert_request(body, options=ConvertOptions()).conversation_id == SESSION


def test_it_takes_the_session_from_a_header_with_a_session_prefix() -> None:
    body = chat_to_anthropic(
        chat({"role": "user", "content": "hi"}), headers={"Session_Id": f"session_{SESSION}"}
    )

    assert body["metadata"] == {"user_id": f"session_{SESSION}"}


def test_it_ignores_a_session_that_is_not_a_uuid() -> None:
    body = chat_to_anthropic(
        chat({"role": "user", "content": "hi"}, prompt_cache_key="my-cache"),
        headers={"x-client-request-id": "abc"},
    )

    assert "metadata" not in body


def test_it_rejects_an_unknown_role_naming_the_field() -> None:
    with pytest.raises(ConversionError) as caught:
        chat_to_anthropic(
            chat({"role": "user", "content": "hi"}, {"role": "robot", "content": "x"})
        )

    assert caught.value.field == "messages.1.role"


def test_it_rejects_a_tool_message_without_tool_call_id() -> None:
    with pytest.raises(ConversionError) as caught:
        chat_to_anthropic(chat({"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}))

    assert caught.value.field == "messages.1.tool_call_id"


def test_it_rejects_more_than_one_choice() -> None:
    with pytest.raises(ConversionError) as caught:
        chat_to_anthropic(chat({"role": "user", "content": "hi"}, n=2))

    assert caught.value.field == "n"


# --- chat completions: response --------------------------------------------------------------


def test_it_turns_text_and_tool_use_into_a_completion_with_tool_calls() -> None:
    answer = message(
        text("Checking."), tool_use("weather", {"city": "Paris"}), stop_reason="tool_use"
    )

    completion = anthropic_to_chat(answer, model="gpt-4o")

    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "tooluse_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-4o"


def test_it_gives_a_null_content_when_there_are_only_tool_calls() -> None:
    completion = anthropic_to_chat(message(tool_use("f", {})), model="m")

    assert completion["choices"][0]["message"]["content"] is None
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stop", ["max_tokens", "model_context_window_exceeded"])
def test_it_reports_a_cut_answer_as_length(stop: str) -> None:
    completion = anthropic_to_chat(message(text("Hal"), stop_reason=stop), model="m")

    assert completion["choices"][0]["finish_reason"] == "length"


def test_it_counts_cache_tokens_into_prompt_tokens_and_passes_credits() -> None:
    answer = message(
        text("hi"), credit_usage=0.42, credit_unit="credit", credit_unit_plural="credits"
    )

    usage = anthropic_to_chat(answer, model="m")["usage"]

    assert usage["prompt_tokens"] == 15
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == 20
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3}
    assert usage["credit_usage"] == 0.42


def test_it_gives_completions_a_chatcmpl_id() -> None:
    completion = anthropic_to_chat(message(text("hi")), model="m")

    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", completion["id"])
    assert isinstance(completion["created"], int)


def test_it_returns_thinking_as_reasoning_content() -> None:
    answer = message({"type": "thinking", "thinking": "hmm", "signature": "s"}, text("hi"))

    completion = anthropic_to_chat(answer, model="m")

    assert completion["choices"][0]["message"]["reasoning_content"] == "hmm"


def test_it_translates_a_message_assembled_from_kiro_events() -> None:
    options = TranslateOptions(model="m", message_id="msg_1")
    assembled = assemble_message(
        [
            AssistantResponse("Sure."),
            ToolUse(name="f", tool_use_id="t1", input='{"x":', stop=False),
            ToolUse(name="f", tool_use_id="t1", input="2}", stop=True),
        ],
        options,
    )

    completion = anthropic_to_chat(assembled, model="m")

    assert (
        completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"x":2}'
    )
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


# --- responses: request ----------------------------------------------------------------------


def test_it_puts_instructions_first_in_system() -> None:
    items = [{"type": "message", "role": "developer", "content": "D"}, user("hi")]

    body = responses_to_anthropic(responses(items, instructions="I"))

    assert body["system"] == [text("I"), text("D")]


def test_it_reads_a_string_input_as_one_user_message() -> None:
    body = responses_to_anthropic(responses("hi"))

    assert body["messages"] == [{"role": "user", "content": [text("hi")]}]
    assert body["max_tokens"] == 32_000


def test_it_turns_function_call_items_into_tool_use_and_tool_result() -> None:
    items = [
        user("run it"),
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "exec_command",
            "arguments": '{"cmd":"ls"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
    ]

    body = responses_to_anthropic(responses(items, tools=[EXEC_TOOL]))

    assert body["messages"][1:] == [
        {"role": "assistant", "content": [tool_use("exec_command", {"cmd": "ls"}, "c1")]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "a.txt"}],
        },
    ]


def test_it_wraps_custom_tools_and_their_calls_in_an_input_field() -> None:
    items = [
        user("patch it"),
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
    ]

    body = responses_to_anthropic(responses(items, tools=[CUSTOM_TOOL]))

    (tool,) = body["tools"]
    assert tool["input_schema"]["required"] == ["input"]
    assert "start: 'x'" in tool["description"]
    assert body["messages"][1]["content"] == [tool_use("apply_patch", {"input": "*** Begin"}, "c1")]
    convert_request(body, options=ConvertOptions())


def test_it_flattens_namespaced_tools() -> None:
    items = [
        user("go"),
        {
            "type": "function_call",
            "call_id": "c1",
            "namespace": "agents",
            "name": "spawn",
            "arguments": "{}",
        },
    ]

    body = responses_to_anthropic(responses(items, tools=[NAMESPACE_TOOL]))

    assert [tool["name"] for tool in body["tools"]] == ["agents__spawn"]
    assert body["tools"][0]["description"].startswith("Sub-agents.")
    assert body["messages"][1]["content"][0]["name"] == "agents__spawn"


def test_it_reads_tools_declared_in_an_additional_tools_item() -> None:
    items = [{"type": "additional_tools", "tools": [EXEC_TOOL]}, user("hi")]

    body = responses_to_anthropic(responses(items))

    assert [tool["name"] for tool in body["tools"]] == ["exec_command"]


def test_it_ignores_reasoning_web_search_and_compaction_items() -> None:
    items = [
        user("hi"),
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "compaction", "encrypted_content": "x"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "yo"}],
        },
    ]

    body = responses_to_anthropic(responses(items))

    assert body["messages"] == [
        {"role": "user", "content": [text("hi")]},
        {"role": "assistant", "content": [text("yo")]},
    ]


def test_it_injects_native_web_search_when_the_client_declares_it() -> None:
    body = responses_to_anthropic(responses("news?", tools=[EXEC_TOOL, {"type": "web_search"}]))

    assert body["tools"][-1] == {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    assert body["system"][-1] == text(WEB_SEARCH_NUDGE)
    assert web_search_mode(body) == "mixed"


def test_it_adds_a_noop_tool_when_web_search_would_be_alone() -> None:
    body = responses_to_anthropic(responses("news?", tools=[{"type": "web_search"}]))

    assert [tool["name"] for tool in body["tools"]] == ["noop", "web_search"]
    assert web_search_mode(body) == "mixed"


def test_it_does_not_inject_web_search_the_client_did_not_declare() -> None:
    body = responses_to_anthropic(responses("hi", tools=[EXEC_TOOL]))

    assert [tool["name"] for tool in body["tools"]] == ["exec_command"]
    assert "system" not in body


def test_it_withholds_all_tools_when_responses_tool_choice_is_none() -> None:
    body = responses_to_anthropic(
        responses("hi", tools=[EXEC_TOOL, {"type": "web_search"}], tool_choice="none")
    )

    assert "tools" not in body
    assert "system" not in body


def test_it_maps_reasoning_effort_and_max_output_tokens() -> None:
    body = responses_to_anthropic(
        responses("hi", reasoning={"effort": "high"}, max_output_tokens=500)
    )

    assert body["output_config"] == {"effort": "high"}
    assert body["max_tokens"] == 500


def test_it_refuses_previous_response_id() -> None:
    with pytest.raises(ConversionError) as caught:
        responses_to_anthropic(responses("hi", previous_response_id="resp_1"))

    assert caught.value.field == "previous_response_id"


def test_it_rejects_a_function_call_without_a_name() -> None:
    with pytest.raises(ConversionError) as caught:
        responses_to_anthropic(responses([user("hi"), {"type": "function_call", "call_id": "c1"}]))

    assert caught.value.field == "input.1.name"


# --- responses: response ---------------------------------------------------------------------


def request(*tools: dict[str, Any]) -> dict[str, Any]:
    return responses("hi", tools=list(tools))


def test_it_renders_text_as_a_message_item() -> None:
    response = anthropic_to_responses(
        message(text("Hello")), model="gpt-5-codex", request=request()
    )

    (item,) = response["output"]
    assert item["type"] == "message"
    assert item["role"] == "assistant"
    assert item["content"] == [{"type": "output_text", "text": "Hello", "annotations": []}]
    assert response["status"] == "completed"
    assert response["object"] == "response"
    assert response["id"].startswith("resp_")


def test_it_renders_a_tool_use_as_a_function_call_item() -> None:
    answer = message(tool_use("exec_command", {"cmd": "ls"}), stop_reason="tool_use")

    (item,) = anthropic_to_responses(answer, model="m", request=request(EXEC_TOOL))["output"]

    assert item["type"] == "function_call"
    assert item["call_id"] == "tooluse_1"
    assert item["name"] == "exec_command"
    assert item["arguments"] == '{"cmd":"ls"}'
    assert item["id"].startswith("fc_")


def test_it_unwraps_a_custom_tool_call() -> None:
    answer = message(tool_use("apply_patch", {"input": "*** Begin Patch"}), stop_reason="tool_use")

    (item,) = anthropic_to_responses(answer, model="m", request=request(CUSTOM_TOOL))["output"]

    assert item["type"] == "custom_tool_call"
    assert item["input"] == "*** Begin Patch"
    assert item["call_id"] == "tooluse_1"


def test_it_renders_thinking_as_a_reasoning_item_first() -> None:
    answer = message({"type": "thinking", "thinking": "plan", "signature": "s"}, text("Done"))

    output = anthropic_to_responses(answer, model="m", request=request())["output"]

    assert [item["type"] for item in output] == ["reasoning", "message"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "plan"}]


def test_it_restores_namespaced_tool_names() -> None:
    answer = message(tool_use("agents__spawn", {"task": "x"}), stop_reason="tool_use")

    (item,) = anthropic_to_responses(answer, model="m", request=request(NAMESPACE_TOOL))["output"]

    assert item["name"] == "spawn"
    assert item["namespace"] == "agents"


def test_it_maps_an_unambiguous_bare_name_back_to_its_namespace() -> None:
    answer = message(tool_use("spawn", {}), stop_reason="tool_use")

    (item,) = anthropic_to_responses(answer, model="m", request=request(NAMESPACE_TOOL))["output"]

    assert item["namespace"] == "agents"


def test_it_drops_calls_to_the_injected_noop_tool() -> None:
    answer = message(text("ok"), tool_use("noop", {}), stop_reason="tool_use")

    output = anthropic_to_responses(answer, model="m", request=request({"type": "web_search"}))[
        "output"
    ]

    assert [item["type"] for item in output] == ["message"]


def test_it_renders_loop_searches_as_web_search_call_items() -> None:
    search = {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "rust"},
    }
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}

    output = anthropic_to_responses(
        message(search, result, text("Found.")), model="m", request=request()
    )["output"]

    assert output[0] == {
        "type": "web_search_call",
        "id": "srvtoolu_1",
        "status": "completed",
        "action": {"type": "search", "query": "rust"},
    }
    assert output[1]["type"] == "message"


def test_it_marks_a_cut_response_incomplete() -> None:
    response = anthropic_to_responses(
        message(text("Hal"), stop_reason="max_tokens"), model="m", request=request()
    )

    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_it_reports_responses_usage_with_cached_tokens() -> None:
    usage = anthropic_to_responses(message(text("hi")), model="m", request=request())["usage"]

    assert usage == {
        "input_tokens": 15,
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 20,
    }


def test_it_streams_responses_events_in_order() -> None:
    answer = message(
        {"type": "thinking", "thinking": "plan", "signature": "s"},
        text("Patching."),
        tool_use("exec_command", {"cmd": "ls"}, "t1"),
        tool_use("apply_patch", {"input": "*** Begin"}, "t2"),
        stop_reason="tool_use",
    )

    stream = events(
        responses_stream_events(answer, model="m", request=request(EXEC_TOOL, CUSTOM_TOOL))
    )

    assert [name for name, _ in stream] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in stream] == list(range(len(stream)))
    completed = stream[-1][1]["response"]
    assert [item["type"] for item in completed["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
    ]
    assert stream[0][1]["response"]["status"] == "in_progress"
    assert stream[0][1]["response"]["id"] == completed["id"]


def test_it_carries_the_full_text_and_arguments_in_stream_deltas() -> None:
    answer = message(text("Hi"), tool_use("exec_command", {"cmd": "ls"}), stop_reason="tool_use")

    stream = dict(events(responses_stream_events(answer, model="m", request=request(EXEC_TOOL))))

    assert stream["response.output_text.delta"]["delta"] == "Hi"
    assert stream["response.function_call_arguments.done"]["arguments"] == '{"cmd":"ls"}'


def test_it_ends_a_cut_stream_with_response_incomplete() -> None:
    stream = events(
        responses_stream_events(
            message(text("Hal"), stop_reason="max_tokens"), model="m", request=request()
        )
    )

    assert stream[-1][0] == "response.incomplete"
    assert stream[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_it_numbers_the_rest_of_a_stream_after_an_early_head() -> None:
    ids = {"response_id": "resp_1", "created_at": 7}
    head = responses_stream_head(model="m", request=request(), **ids)
    rest = responses_stream_events(
        message(text("hi")), model="m", request=request(), head=False, **ids
    )

    stream = events(head + rest)

    assert [data["sequence_number"] for _, data in stream] == list(range(len(stream)))
    assert stream[0][0] == "response.created"
    assert {data["response"]["id"] for name, data in stream if "response" in data} == {"resp_1"}


def test_it_fails_a_started_responses_stream_with_a_code_codex_understands() -> None:
    failed = responses_failed_event(
        message="Upstream rate limit exceeded. Retry later.",
        error_type="rate_limit_error",
        model="m",
        request=request(),
        response_id="resp_1",
        created_at=7,
    )

    ((name, data),) = events(failed)
    assert name == "response.failed"
    assert data["sequence_number"] == 2
    assert data["response"]["status"] == "failed"
    assert data["response"]["error"]["code"] == "rate_limit_exceeded"


# --- errors ----------------------------------------------------------------------------------


def test_it_shapes_errors_like_openai() -> None:
    assert openai_error(400, "bad", "invalid_request_error") == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
    }


def test_it_names_the_offending_field_as_param() -> None:
    body = conversion_error_body(ConversionError("messages.0.role", "must be a string"))

    assert body["error"]["param"] == "messages.0.role"
    assert body["error"]["message"] == "messages.0.role: must be a string"
    assert body["error"]["type"] == "invalid_request_error"


def test_it_flags_a_full_context_window_as_context_length_exceeded() -> None:
    anthropic = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": CONTEXT_FULL.message,
        },
    }

    error = anthropic_error_to_openai(400, anthropic)["error"]

    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"


def test_it_names_a_refused_model_as_model_not_found() -> None:
    anthropic = {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: 'gpt-9' is not available."},
    }

    error = anthropic_error_to_openai(404, anthropic)["error"]

    assert error == {
        "message": "model: 'gpt-9' is not available.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
