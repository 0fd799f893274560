from __future__ import annotations

import base64
import io
import json
import random
from typing import Any

import pytest
from PIL import Image

from gateway.protocol.convert import (
    SYSTEM_POLICY,
    Conversion,
    ConversionError,
    ConvertOptions,
    Rule,
    convert_request,
    encode_body,
    web_search_mode,
)
from gateway.protocol.tools import restore_tool_call

RAW = ConvertOptions(
    tool_mode="raw", conversation_id="conv-fixed", agent_continuation_id="agent-fixed"
)
CLAUDE_CODE = ConvertOptions(conversation_id="conv-fixed", agent_continuation_id="agent-fixed")
LONG_NAME = "mcp__plugin_very_long_server_name__extremely_long_tool_name_exceeds_63"


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_use(tool_id: str, name: str = "get_weather", **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def tool_result(tool_id: str, content: Any = "ok", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content, **extra}


def png(width: int = 8, height: int = 8) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "green").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image(data: str, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def convert(
    messages: list[dict[str, Any]], options: ConvertOptions = RAW, **fields: Any
) -> Conversion:
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "messages": messages}
    return convert_request({**body, **fields}, options=options)


def state(conversion: Conversion) -> dict[str, Any]:
    return conversion.kiro_body["conversationState"]


def current(conversion: Conversion) -> dict[str, Any]:
    return state(conversion)["currentMessage"]["userInputMessage"]


def history(conversion: Conversion) -> list[dict[str, Any]]:
    return state(conversion).get("history", [])


def contents(conversion: Conversion) -> list[tuple[str, str]]:
    out = []
    for entry in history(conversion):
        kind = next(iter(entry))
        out.append(("user" if kind == "userInputMessage" else "assistant", entry[kind]["content"]))
    return out


def tool_names(conversion: Conversion) -> list[str]:
    tools = current(conversion)["userInputMessageContext"].get("tools", [])
    return [tool["toolSpecification"]["name"] for tool in tools]


# --- spec 13.3 conformance cases ------------------------------------------------------------


def test_it_prefixes_the_system_turn_with_thinking_tags() -> None:  # case 35
    conversion = convert(
        [user("hi")], system="S", thinking={"type": "enabled", "budget_tokens": 8000}
    )
    assert history(conversion)[0]["userInputMessage"]["content"] == (
        "<thinking_mode>enabled</thinking_mode><max_thinking_length>8000</max_thinking_length>"
        f"\nS\n{SYSTEM_POLICY}"
    )
    assert history(conversion)[1] == {
        "assistantResponseMessage": {"content": "I will follow these instructions."}
    }


def test_it_clamps_the_thinking_budget() -> None:  # case 35
    conversion = convert([user("hi")], thinking={"type": "enabled", "budget_tokens": 30000})
    assert conversion.thinking.budget_tokens == 24576
    assert "<max_thinking_length>24576</max_thinking_length>" in contents(conversion)[0][1]
    assert Rule.CLAMP_THINKING_BUDGET in conversion.rules


def test_it_honours_a_lower_budget_cap() -> None:
    options = ConvertOptions(tool_mode="raw", thinking_budget_cap=4000)
    conversion = convert([user("hi")], options, thinking={"type": "enabled"})
    assert conversion.thinking.budget_tokens == 4000


def test_it_turns_the_opus_thinking_suffix_into_adaptive_thinking() -> None:  # case 36
    conversion = convert_request(
        {"model": "claude-opus-4-6-thinking", "messages": [user("hi")]}, options=RAW
    )
    assert contents(conversion)[0][1] == (
        "<thinking_mode>adaptive</thinking_mode><thinking_effort>high</thinking_effort>"
    )
    assert conversion.kiro_body["additionalModelRequestFields"] == {
        "output_config": {"effort": "high"}
    }
    assert Rule.THINKING_FROM_MODEL_SUFFIX in conversion.rules


def test_it_turns_other_thinking_suffixes_into_enabled_thinking() -> None:
    conversion = convert_request(
        {"model": "claude-sonnet-4-5-20250929-thinking", "messages": [user("hi")]}, options=RAW
    )
    assert conversion.thinking.type == "enabled"
    assert "<max_thinking_length>20000</max_thinking_length>" in contents(conversion)[0][1]


def test_it_pairs_consecutive_users_with_ok() -> None:  # case 37
    conversion = convert([user("A"), user("B")])
    assert contents(conversion) == [("user", "A"), ("assistant", "OK")]
    assert current(conversion)["content"] == "B"
    assert Rule.INSERT_PLACEHOLDER_ASSISTANT in conversion.rules


def test_it_merges_consecutive_assistants() -> None:  # case 38
    conversion = convert([user("q"), assistant("X"), assistant("Y"), user("next")])
    assert contents(conversion) == [("user", "q"), ("assistant", "X\n\nY")]
    assert Rule.MERGE_CONSECUTIVE_ASSISTANT in conversion.rules


def test_it_merges_consecutive_users_in_history() -> None:
    conversion = convert(
        [user("a"), user([{"type": "text", "text": "b"}]), assistant("x"), user("c")]
    )
    assert contents(conversion)[0] == ("user", "a\nb")
    assert Rule.MERGE_CONSECUTIVE_USER in conversion.rules


def test_it_sends_a_space_for_tool_only_assistant_turns() -> None:  # case 39
    conversion = convert(
        [user("q"), assistant([tool_use("t1", city="Paris")]), user([tool_result("t1")])]
    )
    entry = history(conversion)[1]["assistantResponseMessage"]
    assert entry == {
        "content": " ",
        "toolUses": [{"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}],
    }


def test_it_drops_an_orphan_tool_result() -> None:  # case 40
    conversion = convert([user([tool_result("nobody")])])
    assert "toolResults" not in current(conversion)["userInputMessageContext"]
    assert Rule.DROP_ORPHAN_TOOL_RESULT in conversion.rules


def test_it_drops_a_tool_use_without_result() -> None:  # case 40
    conversion = convert([user("q"), assistant([tool_use("t1")]), user("never mind")])
    assert history(conversion)[1]["assistantResponseMessage"] == {"content": " "}
    assert Rule.DROP_ORPHAN_TOOL_USE in conversion.rules


def test_it_drops_a_duplicate_tool_result() -> None:  # case 40
    conversion = convert(
        [
            user("q"),
            assistant([tool_use("t1")]),
            user([tool_result("t1")]),
            assistant("done"),
            user([tool_result("t1", "again"), {"type": "text", "text": "thanks"}]),
        ]
    )
    assert "toolResults" not in current(conversion)["userInputMessageContext"]
    assert current(conversion)["content"] == "thanks"
    assert Rule.DROP_DUPLICATE_TOOL_RESULT in conversion.rules


def test_it_keeps_the_same_result_twice_only_once() -> None:
    conversion = convert(
        [user("q"), assistant([tool_use("t1")]), user([tool_result("t1"), tool_result("t1")])]
    )
    assert len(current(conversion)["userInputMessageContext"]["toolResults"]) == 1


def test_it_drops_a_tool_use_reusing_an_id() -> None:
    conversion = convert(
        [user("q"), assistant([tool_use("t1"), tool_use("t1")]), user([tool_result("t1")])]
    )
    assert len(history(conversion)[1]["assistantResponseMessage"]["toolUses"]) == 1
    assert Rule.DROP_DUPLICATE_TOOL_USE in conversion.rules


def test_it_drops_orphan_results_inside_history_too() -> None:
    conversion = convert(
        [user([tool_result("ghost"), {"type": "text", "text": "q"}]), assistant("a"), user("b")]
    )
    assert "userInputMessageContext" not in history(conversion)[0]["userInputMessage"]
    assert Rule.DROP_ORPHAN_TOOL_RESULT in conversion.rules


def test_it_declares_a_placeholder_for_history_only_tools() -> None:  # case 41
    conversion = convert(
        [user("q"), assistant([tool_use("t1", name="read")]), user([tool_result("t1")])]
    )
    tools = current(conversion)["userInputMessageContext"]["tools"]
    assert tools == [
        {
            "toolSpecification": {
                "name": "read",
                "description": "Tool used in conversation history",
                "inputSchema": {
                    "json": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object",
                        "properties": {},
                        "required": [],
                        "additionalProperties": True,
                    }
                },
            }
        }
    ]
    assert Rule.PLACEHOLDER_TOOL in conversion.rules


def test_it_matches_declared_tools_case_insensitively() -> None:
    conversion = convert(
        [user("q"), assistant([tool_use("t1", name="READ")]), user([tool_result("t1")])],
        tools=[{"name": "read", "input_schema": {"type": "object"}}],
    )
    assert tool_names(conversion) == ["read"]


def test_it_drops_a_trailing_prefill() -> None:  # case 42
    conversion = convert([user("q"), assistant("partial")])
    assert current(conversion)["content"] == "q"
    assert "history" not in state(conversion)
    assert Rule.PREFILL_DROPPED in conversion.rules


@pytest.mark.parametrize(
    "user_id",
    [
        "user_x_account__session_8bb5523b-ec7c-4540-a9ca-beb6d79f1552",
        json.dumps({"device_id": "d", "session_id": "8bb5523b-ec7c-4540-a9ca-beb6d79f1552"}),
    ],
)
def test_it_takes_the_conversation_id_from_the_session(user_id: str) -> None:  # case 43
    conversion = convert([user("q")], metadata={"user_id": user_id})
    assert state(conversion)["conversationId"] == "8bb5523b-ec7c-4540-a9ca-beb6d79f1552"


def test_it_ignores_session_ids_that_are_not_uuids() -> None:
    conversion = convert([user("q")], metadata={"user_id": "session_" + "x" * 36})
    assert state(conversion)["conversationId"] == "conv-fixed"


def test_it_generates_fresh_ids_by_default() -> None:
    body = {"model": "claude-sonnet-4-6", "messages": [user("q")]}
    first = convert_request(body, options=ConvertOptions())
    second = convert_request(body, options=ConvertOptions())
    assert state(first)["conversationId"] != state(second)["conversationId"]
    assert state(first)["agentContinuationId"] != state(second)["agentContinuationId"]


def test_it_drops_unsupported_image_media_types() -> None:  # case 45
    conversion = convert([user([image(png(), "image/jpg"), {"type": "text", "text": "see"}])])
    assert "images" not in current(conversion)
    assert Rule.DROP_UNSUPPORTED_IMAGE in conversion.rules


def test_it_sends_png_images() -> None:  # case 45
    data = png()
    conversion = convert([user([image(data)])])
    assert current(conversion)["images"] == [{"format": "png", "source": {"bytes": data}}]


def test_it_repairs_null_schema_members() -> None:  # case 46
    tool = {"name": "t", "input_schema": {"type": "object", "properties": None, "required": None}}
    conversion = convert([user("q")], tools=[tool])
    spec = current(conversion)["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert spec["inputSchema"]["json"] == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": True,
    }
    assert Rule.NORMALIZE_TOOL_SCHEMA in conversion.rules


def test_it_truncates_long_descriptions() -> None:  # case 47
    tools = [{"name": "Write", "description": "d" * 12_000, "input_schema": {}}]
    conversion = convert([user("q")], tools=tools)
    spec = current(conversion)["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert spec["description"] == "d" * 10_000
    assert Rule.TRUNCATE_TOOL_DESCRIPTION in conversion.rules


@pytest.mark.parametrize("name", ["Write", "Edit", "Bash"])
def test_it_appends_the_chunking_suffix_in_raw_mode(name: str) -> None:  # case 47
    conversion = convert([user("q")], tools=[{"name": name, "description": "Short."}])
    spec = current(conversion)["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert spec["description"].startswith("Short.\n- IMPORTANT: ")


def test_it_marks_every_user_turn_with_origin_and_model() -> None:  # case 48
    conversion = convert([user("a"), assistant("b"), user("c")], system="S")
    assert state(conversion)["chatTriggerType"] == "MANUAL"
    assert state(conversion)["agentTaskType"] == "vibe"
    users = [e["userInputMessage"] for e in history(conversion) if "userInputMessage" in e]
    for message in [*users, current(conversion)]:
        assert (message["origin"], message["modelId"]) == ("AI_EDITOR", "claude-sonnet-4.5")


def test_it_shortens_long_tool_names_and_maps_them_back() -> None:  # case 20, spec 3.12
    conversion = convert([user("q")], tools=[{"name": LONG_NAME, "input_schema": {}}])
    short = "mcp__plugin_very_long_server_name__extremely_long_tool_1336a06e"
    assert tool_names(conversion) == [short]
    assert len(short.encode()) == 63
    assert conversion.tool_name_map == {short: LONG_NAME}
    assert restore_tool_call(short, {"a": 1}, conversion.tool_name_map) == (LONG_NAME, {"a": 1})
    assert Rule.SHORTEN_TOOL_NAME in conversion.rules


def test_it_shortens_history_tool_names_the_same_way() -> None:
    conversion = convert(
        [user("q"), assistant([tool_use("t1", name=LONG_NAME)]), user([tool_result("t1")])],
        tools=[{"name": LONG_NAME}],
    )
    use = history(conversion)[1]["assistantResponseMessage"]["toolUses"][0]
    assert use["name"] == tool_names(conversion)[0]


# --- body shape (spec 2) -------------------------------------------------------------------


def test_it_builds_the_spec_example_body() -> None:  # spec 2.11
    conversion = convert_request(
        {
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 1024,
            "system": "You are terse.",
            "thinking": {"type": "enabled", "budget_tokens": 8000},
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Get current weather",
                    "input_schema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ],
            "messages": [
                user("Weather in Paris?"),
                assistant(
                    [{"type": "text", "text": "Checking."}, tool_use("toolu_01", city="Paris")]
                ),
                user([tool_result("toolu_01", "18°C")]),
            ],
        },
        options=ConvertOptions(
            tool_mode="raw",
            conversation_id="0b4445e1-f5be-49e1-87ce-62bbc28ad705",
            agent_continuation_id="6f1c2d8e-0b7a-4c1e-9a55-2f0e8d1b3c44",
            profile_arn="arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK",
            env_state=False,
        ),
    )
    model = "claude-sonnet-4.5"
    assert conversion.kiro_body == {
        "conversationState": {
            "agentContinuationId": "6f1c2d8e-0b7a-4c1e-9a55-2f0e8d1b3c44",
            "agentTaskType": "vibe",
            "chatTriggerType": "MANUAL",
            "currentMessage": {
                "userInputMessage": {
                    "userInputMessageContext": {
                        "toolResults": [
                            {
                                "toolUseId": "toolu_01",
                                "content": [{"text": "18°C"}],
                                "status": "success",
                            }
                        ],
                        "tools": [
                            {
                                "toolSpecification": {
                                    "name": "get_weather",
                                    "description": "Get current weather",
                                    "inputSchema": {
                                        "json": {
                                            "type": "object",
                                            "properties": {"city": {"type": "string"}},
                                            "required": ["city"],
                                            "additionalProperties": True,
                                        }
                                    },
                                }
                            }
                        ],
                    },
                    "content": "",
                    "modelId": model,
                    "origin": "AI_EDITOR",
                }
            },
            "conversationId": "0b4445e1-f5be-49e1-87ce-62bbc28ad705",
            "history": [
                {
                    "userInputMessage": {
                        "content": "<thinking_mode>enabled</thinking_mode><max_thinking_length>8000"
                        f"</max_thinking_length>\nYou are terse.\n{SYSTEM_POLICY}",
                        "modelId": model,
                        "origin": "AI_EDITOR",
                    }
                },
                {"assistantResponseMessage": {"content": "I will follow these instructions."}},
                {
                    "userInputMessage": {
                        "content": "Weather in Paris?",
                        "modelId": model,
                        "origin": "AI_EDITOR",
                    }
                },
                {
                    "assistantResponseMessage": {
                        "content": "Checking.",
                        "toolUses": [
                            {
                                "toolUseId": "toolu_01",
                                "name": "get_weather",
                                "input": {"city": "Paris"},
                            }
                        ],
                    }
                },
            ],
        },
        "profileArn": "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK",
    }


def test_it_lays_fields_out_in_struct_order() -> None:  # spec 2.10
    conversion = convert([user("a"), assistant("b"), user([image(png()), tool_result("x")])])
    assert list(state(conversion)) == [
        "agentContinuationId",
        "agentTaskType",
        "chatTriggerType",
        "currentMessage",
        "conversationId",
        "history",
    ]
    assert list(current(conversion)) == [
        "userInputMessageContext",
        "content",
        "modelId",
        "images",
        "origin",
    ]


def test_it_encodes_compact_sorted_utf8() -> None:  # spec 2.10
    conversion = convert([user("héllo")], profile_arn=None)
    encoded = encode_body(conversion.kiro_body)
    assert "héllo".encode() in encoded
    assert b": " not in encoded and b", " not in encoded
    assert encoded.startswith(b'{"conversationState":{"agentContinuationId":')
    assert json.loads(encoded) == conversion.kiro_body


def test_it_adds_env_state_on_current_and_history_tool_turns() -> None:  # spec 2.4 (Z)
    conversion = convert(
        [
            user("q"),
            assistant([tool_use("t1")]),
            user([tool_result("t1")]),
            assistant("a"),
            user("z"),
        ],
        ConvertOptions(tool_mode="raw", working_directory="/srv"),
    )
    env = {"operatingSystem": "macos", "currentWorkingDirectory": "/srv"}
    assert current(conversion)["userInputMessageContext"]["envState"] == env
    assert history(conversion)[2]["userInputMessage"]["userInputMessageContext"]["envState"] == env


def test_it_keeps_the_context_even_when_empty() -> None:  # spec 2.3
    conversion = convert([user("q")], ConvertOptions(tool_mode="raw", env_state=False))
    assert current(conversion)["userInputMessageContext"] == {}


def test_it_marks_error_tool_results() -> None:  # spec 2.7
    conversion = convert(
        [user("q"), assistant([tool_use("t1")]), user([tool_result("t1", "boom", is_error=True)])]
    )
    assert current(conversion)["userInputMessageContext"]["toolResults"] == [
        {"toolUseId": "t1", "content": [{"text": "boom"}], "status": "error", "isError": True}
    ]


def test_it_builds_the_cli_variant() -> None:  # spec 1.3
    options = ConvertOptions(tool_mode="raw", endpoint="cli", profile_arn="arn:x")
    conversion = convert([user("a"), assistant("b"), user("c")], options)
    assert "agentContinuationId" not in state(conversion)
    assert "profileArn" not in conversion.kiro_body
    assert current(conversion)["origin"] == "KIRO_CLI"
    assert current(conversion)["modelId"] == "claude-sonnet-4.5"
    assert history(conversion)[0]["userInputMessage"] == {"content": "a", "origin": "KIRO_CLI"}


def test_it_sets_the_profile_arn_on_ide_bodies_only_when_given() -> None:  # spec 1.2
    assert "profileArn" not in convert([user("q")]).kiro_body
    options = ConvertOptions(tool_mode="raw", profile_arn="arn:p")
    assert convert([user("q")], options).kiro_body["profileArn"] == "arn:p"


# --- system, thinking, effort --------------------------------------------------------------


def test_it_joins_system_blocks_with_newlines() -> None:
    blocks = [
        {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "B"},
    ]
    conversion = convert([user("q")], system=blocks)
    assert contents(conversion)[0] == ("user", f"A\nB\n{SYSTEM_POLICY}")


def test_it_treats_an_empty_system_list_as_absent() -> None:
    conversion = convert([user("q")], system=[])
    assert "history" not in state(conversion)


def test_it_keeps_the_thinking_prefix_when_system_is_blank() -> None:
    conversion = convert(
        [user("q")], system="", thinking={"type": "enabled", "budget_tokens": 2000}
    )
    assert contents(conversion)[0][1].startswith("<thinking_mode>enabled</thinking_mode>")


def test_it_does_not_repeat_thinking_tags_already_in_system() -> None:
    conversion = convert(
        [user("q")],
        system="<thinking_mode>enabled</thinking_mode> S",
        thinking={"type": "enabled", "budget_tokens": 2000},
    )
    assert contents(conversion)[0][1].startswith("<thinking_mode>enabled</thinking_mode> S")


def test_it_folds_system_messages_into_the_system_turn() -> None:
    messages = [user("q"), {"role": "system", "content": [{"type": "text", "text": "ENV"}]}]
    conversion = convert(messages, system="S")
    assert contents(conversion)[0] == ("user", f"S\nENV\n{SYSTEM_POLICY}")
    assert current(conversion)["content"] == "q"
    assert Rule.FOLD_SYSTEM_MESSAGE in conversion.rules
    assert Rule.PREFILL_DROPPED not in conversion.rules


def test_it_drops_the_claude_code_billing_header() -> None:
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
        {"type": "text", "text": "S"},
    ]
    conversion = convert([user("q")], system=system)
    assert contents(conversion)[0] == ("user", f"S\n{SYSTEM_POLICY}")
    assert Rule.DROP_BILLING_HEADER in conversion.rules


def test_it_uses_the_effort_for_adaptive_thinking() -> None:
    conversion = convert(
        [user("q")], thinking={"type": "adaptive"}, output_config={"effort": "Medium"}
    )
    assert "<thinking_effort>medium</thinking_effort>" in contents(conversion)[0][1]


def test_it_takes_the_effort_of_a_folded_system_message() -> None:
    messages = [user("q"), {"role": "system", "content": "E", "output_config": {"effort": "low"}}]
    conversion = convert(messages, thinking={"type": "adaptive"})
    assert conversion.thinking.effort == "low"


def test_it_ignores_disabled_thinking() -> None:
    conversion = convert([user("q")], thinking={"type": "disabled"})
    assert not conversion.thinking.enabled
    assert "history" not in state(conversion)


@pytest.mark.parametrize(
    ("model", "fields", "expected"),
    [
        (
            "claude-sonnet-4-6",
            {"output_config": {"effort": "low"}},
            {"output_config": {"effort": "low"}},
        ),
        (
            "claude-sonnet-4-6",
            {"output_config": {"effort": "x-high"}},
            {"output_config": {"effort": "high"}},
        ),
        (
            "claude-opus-4-7",
            {"output_config": {"effort": "x_high"}},
            {"output_config": {"effort": "xhigh"}},
        ),
        (
            "claude-opus-4-7",
            {"output_config": {"effort": "bogus"}},
            {"output_config": {"effort": "high"}},
        ),
        (
            "claude-opus-4-7",
            {"thinking": {"type": "enabled", "budget_tokens": 3000}},
            {"output_config": {"effort": "low"}},
        ),
        (
            "claude-opus-4-7",
            {"thinking": {"type": "enabled", "budget_tokens": 10000}},
            {"output_config": {"effort": "medium"}},
        ),
        (
            "claude-opus-4-7",
            {"thinking": {"type": "adaptive"}},
            {"output_config": {"effort": "high"}},
        ),
        ("gpt-5.6-sol", {"output_config": {"effort": "none"}}, {"reasoning": {"effort": "none"}}),
        (
            "claude-opus-4-7",
            {"output_config": {"effort": "none"}},
            {"output_config": {"effort": "high"}},
        ),
    ],
)
def test_it_maps_effort_to_native_reasoning(
    model: str, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    body = {"model": model, "messages": [user("q")], **fields}
    assert convert_request(body, options=RAW).kiro_body["additionalModelRequestFields"] == expected


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("claude-sonnet-4-5-20250929", {"output_config": {"effort": "low"}}),
        ("claude-opus-4-7", {}),
        ("claude-opus-4-7", {"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}}),
        ("claude-opus-4-6", {"thinking": {"type": "enabled", "budget_tokens": 5000}}),
        ("claude-opus-4-6", {"output_config": {"effort": "low"}}),
    ],
)
def test_it_withholds_native_reasoning(model: str, fields: dict[str, Any]) -> None:
    body = {"model": model, "messages": [user("q")], **fields}
    assert "additionalModelRequestFields" not in convert_request(body, options=RAW).kiro_body


# --- content -------------------------------------------------------------------------------


def test_it_folds_thinking_into_assistant_history() -> None:
    turn = assistant(
        [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "answer"},
        ]
    )
    conversion = convert([user("q"), turn, user("next")])
    assert contents(conversion)[1] == ("assistant", "<thinking>hmm</thinking>\n\nanswer")


def test_it_drops_empty_history_messages() -> None:
    conversion = convert(
        [user("q"), assistant([{"type": "redacted_thinking", "data": "x"}]), user("r")]
    )
    assert contents(conversion) == [("user", "q"), ("assistant", "OK")]
    assert Rule.DROP_EMPTY_MESSAGE in conversion.rules


def test_it_opens_a_history_that_starts_with_an_assistant_with_a_user() -> None:
    conversion = convert([assistant("Hi, how can I help?"), user("q")], system="S")
    roles = [role for role, _ in contents(conversion)]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert contents(conversion)[2] == ("user", "Hello.")
    assert Rule.INSERT_PLACEHOLDER_USER in conversion.rules


def test_it_lifts_tool_result_images() -> None:
    data = png()
    result = tool_result("t1", [image(data)])
    conversion = convert([user("q"), assistant([tool_use("t1")]), user([result])])
    assert current(conversion)["images"] == [{"format": "png", "source": {"bytes": data}}]
    assert current(conversion)["userInputMessageContext"]["toolResults"][0]["content"] == [
        {"text": "[image attached]"}
    ]
    assert Rule.LIFT_TOOL_RESULT_IMAGE in conversion.rules


def test_it_joins_tool_result_text_blocks() -> None:
    result = tool_result("t1", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    conversion = convert([user("q"), assistant([tool_use("t1")]), user([result])])
    assert current(conversion)["userInputMessageContext"]["toolResults"][0]["content"] == [
        {"text": "a\nb"}
    ]


def test_it_dedupes_repeated_history_images() -> None:
    data = png()
    messages = [
        user([image(data)]),
        assistant("a"),
        user([image(data)]),
        assistant("b"),
        user([image(data)]),
    ]
    conversion = convert(messages)
    assert len(history(conversion)[0]["userInputMessage"]["images"]) == 1
    assert history(conversion)[2]["userInputMessage"]["content"] == (
        "[image omitted: identical to an earlier screenshot]"
    )
    assert len(current(conversion)["images"]) == 1
    assert Rule.DEDUPE_HISTORY_IMAGE in conversion.rules


def test_it_resizes_big_images_in_messages() -> None:
    rng = random.Random(3)
    raw = Image.frombytes("RGB", (2000, 1500), rng.randbytes(2000 * 1500 * 3))
    buffer = io.BytesIO()
    raw.save(buffer, format="PNG")
    conversion = convert([user([image(base64.b64encode(buffer.getvalue()).decode())])])
    assert current(conversion)["images"][0]["format"] == "jpeg"
    assert Rule.RESIZE_IMAGE in conversion.rules


def test_it_turns_text_documents_into_text() -> None:
    document = {
        "type": "document",
        "title": "Notes",
        "source": {"type": "text", "media_type": "text/plain", "data": "line"},
    }
    conversion = convert([user([document, {"type": "text", "text": "summarise"}])])
    assert current(conversion)["content"] == "Notes\nline\nsummarise"


def test_it_replaces_pdfs_with_a_note() -> None:
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    conversion = convert([user([document])])
    assert "PDF" in current(conversion)["content"]
    assert Rule.OMIT_PDF_DOCUMENT in conversion.rules


def test_it_writes_server_tool_blocks_into_history_text() -> None:
    turn = assistant(
        [
            {
                "type": "server_tool_use",
                "id": "srv1",
                "name": "web_search",
                "input": {"query": "rust"},
            },
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srv1",
                "content": [
                    {"type": "web_search_result", "title": "Rust", "url": "https://rust-lang.org"}
                ],
            },
            {"type": "text", "text": "Rust is a language."},
        ]
    )
    conversion = convert([user("q"), turn, user("more")])
    text = contents(conversion)[1][1]
    assert '[web_search call: {"query":"rust"}]' in text
    assert "- Rust <https://rust-lang.org>" in text
    assert text.endswith("Rust is a language.")
    assert "toolUses" not in history(conversion)[1]["assistantResponseMessage"]
    assert Rule.SERIALIZE_SERVER_TOOL in conversion.rules


def test_it_drops_tool_use_blocks_sent_by_the_user() -> None:
    conversion = convert([user([tool_use("t1"), {"type": "text", "text": "q"}])])
    assert current(conversion)["content"] == "q"
    assert Rule.DROP_MISPLACED_BLOCK in conversion.rules


def test_it_sends_an_empty_current_content_as_is() -> None:  # spec 3.19
    conversion = convert([user("q"), assistant([tool_use("t1")]), user([tool_result("t1")])])
    assert current(conversion)["content"] == ""


def test_it_tolerates_fields_the_anthropic_api_accepts() -> None:
    conversion = convert(
        [user([{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}])],
        metadata={"user_id": "u"},
        context_management={"edits": []},
        stop_sequences=["X"],
        temperature=0.3,
        top_p=0.9,
        top_k=5,
        service_tier="auto",
        container="c",
        mcp_servers=[],
        tool_choice={"type": "auto"},
        something_new={"a": 1},
        stream=True,
    )
    assert conversion.stream
    assert current(conversion)["content"] == "q"


# --- tools ---------------------------------------------------------------------------------


def test_it_gives_blank_descriptions_the_tool_name() -> None:
    conversion = convert([user("q")], tools=[{"name": "lookup", "description": "  "}])
    spec = current(conversion)["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert spec["description"] == "lookup"


def test_it_strips_draft_2020_schema_constructs() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "anyOf": [
            {"type": "object", "properties": {"a": {"type": "integer", "exclusiveMinimum": 0}}}
        ],
        "type": "string",
    }
    conversion = convert([user("q")], tools=[{"name": "t", "input_schema": schema}])
    json_schema = current(conversion)["userInputMessageContext"]["tools"][0]["toolSpecification"][
        "inputSchema"
    ]["json"]
    assert json_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": [],
        "additionalProperties": True,
    }


def test_it_drops_duplicate_tools() -> None:
    conversion = convert([user("q")], tools=[{"name": "t"}, {"name": "T"}])
    assert tool_names(conversion) == ["t"]
    assert Rule.DROP_DUPLICATE_TOOL in conversion.rules


def test_it_maps_claude_code_tools_to_kiro_builtins() -> None:
    conversion = convert(
        [
            user("q"),
            assistant([tool_use("t1", name="Write", file_path="/a", content="x")]),
            user([tool_result("t1")]),
        ],
        CLAUDE_CODE,
        tools=[{"name": "Write", "description": "w", "input_schema": {}}, {"name": "fs_append"}],
    )
    assert tool_names(conversion) == ["fs_write"]
    use = history(conversion)[1]["assistantResponseMessage"]["toolUses"][0]
    assert (use["name"], use["input"]) == ("fs_write", {"path": "/a", "text": "x"})
    assert conversion.tool_name_map == {"fs_write": "Write"}
    assert {Rule.MAP_CLAUDE_CODE_TOOL, Rule.HIDE_TOOL} <= set(conversion.rules)


def test_it_maps_claude_code_read_ranges_both_ways() -> None:
    conversion = convert(
        [
            user("q"),
            assistant([tool_use("t1", name="Read", file_path="/f", offset=10, limit=5, pages="1")]),
            user([tool_result("t1")]),
        ],
        CLAUDE_CODE,
    )
    use = history(conversion)[1]["assistantResponseMessage"]["toolUses"][0]
    assert use["input"] == {
        "path": "/f",
        "start_line": 10,
        "end_line": 14,
        "explanation": "Mapped from Claude Code Read tool.",
    }
    restored = restore_tool_call("read_file", use["input"], conversion.tool_name_map)
    assert restored == ("Read", {"file_path": "/f", "offset": 10, "limit": 5})


def test_it_maps_grep_back_keeping_unknown_keys() -> None:
    restored = restore_tool_call(
        "grep_search",
        {"query": "x", "includePattern": "*.py", "caseSensitive": True, "path": "/src"},
        {"grep_search": "Grep"},
    )
    assert restored == (
        "Grep",
        {"pattern": "x", "glob": "*.py", "case_sensitive": True, "path": "/src"},
    )


def test_it_leaves_raw_mode_tools_alone() -> None:
    conversion = convert([user("q")], tools=[{"name": "Read", "input_schema": {}}])
    assert tool_names(conversion) == ["Read"]
    assert restore_tool_call("Read", {"file_path": "/f"}, conversion.tool_name_map) == (
        "Read",
        {"file_path": "/f"},
    )


def test_it_gives_native_web_search_a_query_schema() -> None:
    tools = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 8},
        {"name": "other"},
    ]
    conversion = convert([user("q")], tools=tools)
    spec = current(conversion)["userInputMessageContext"]["tools"][0]["toolSpecification"]
    assert spec["inputSchema"]["json"]["required"] == ["query"]
    assert conversion.web_search == "mixed"


@pytest.mark.parametrize(
    ("tools", "mode"),
    [
        ([{"type": "web_search_20250305", "name": "web_search"}], "only"),
        ([{"type": "web_search_20250305", "name": "web_search"}, {"name": "x"}], "mixed"),
        ([{"name": "web_search", "input_schema": {}}], "none"),
        ([], "none"),
        (None, "none"),
    ],
)
def test_it_tells_the_web_search_mode(tools: Any, mode: str) -> None:
    assert web_search_mode({"tools": tools}) == mode


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [user("q")]}, "model: required"),
        ({"model": "", "messages": [user("q")]}, "model: "),
        ({"model": "m", "messages": "hi"}, "messages: must be a list"),
        ({"model": "m", "messages": []}, "messages: must not be empty"),
        ({"model": "m", "messages": [assistant("a")]}, "messages: must contain at least one user"),
        ({"model": "m", "messages": ["hi"]}, "messages.0: must be an object"),
        ({"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages.0.role: "),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages.0.content: required"),
        ({"model": "m", "messages": [user(5)]}, "messages.0.content: must be a string or a list"),
        (
            {
                "model": "m",
                "messages": [
                    user("a"),
                    assistant("b"),
                    user([{"type": "text", "text": "x"}, {"type": "foo"}]),
                ],
            },
            "messages.2.content.1: unknown block type 'foo'",
        ),
        ({"model": "m", "messages": [user([{"text": "x"}])]}, "messages.0.content.0.type: "),
        (
            {"model": "m", "messages": [user([{"type": "text", "text": 3}])]},
            "messages.0.content.0.text: ",
        ),
        (
            {"model": "m", "messages": [user("q")], "tools": [{"description": "d"}]},
            "tools.0.name: ",
        ),
        ({"model": "m", "messages": [user("q")], "tools": {"name": "x"}}, "tools: must be a list"),
        ({"model": "m", "messages": [user("q")], "system": 5}, "system: "),
        ({"model": "m", "messages": [user("q")], "system": [{"type": "image"}]}, "system.0: "),
        (
            {"model": "m", "messages": [user("q")], "max_tokens": 0},
            "max_tokens: must be greater than 0",
        ),
        ({"model": "m", "messages": [user("q")], "thinking": "on"}, "thinking: must be an object"),
        (
            {
                "model": "m",
                "messages": [user("q")],
                "thinking": {"type": "enabled", "budget_tokens": "x"},
            },
            "thinking.budget_tokens: ",
        ),
        (
            {"model": "m", "messages": [user([{"type": "tool_result", "content": "x"}])]},
            "messages.0.content.0.tool_use_id: ",
        ),
        (
            {
                "model": "m",
                "messages": [
                    user("q"),
                    assistant([{"type": "tool_use", "id": "t", "input": {}}]),
                    user("r"),
                ],
            },
            "messages.1.content.0.name: ",
        ),
        (
            {
                "model": "m",
                "messages": [
                    user([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}])
                ],
            },
            "messages.0.content.0.source.type: url images are not supported",
        ),
        (
            {"model": "m", "messages": [user([image("@@@@")])]},
            "messages.0.content.0.source.data: image data is not valid base64",
        ),
    ],
)
def test_it_refuses_bad_input_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError) as caught:
        convert_request(body, options=RAW)
    assert str(caught.value).startswith(message)


def test_for_endpoint_matches_a_direct_cli_conversion() -> None:
    from gateway.protocol.convert import for_endpoint

    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    }
    fixed = {"conversation_id": "c", "agent_continuation_id": "a"}
    ide = convert_request(body, options=ConvertOptions(**fixed)).kiro_body
    cli = convert_request(body, options=ConvertOptions(endpoint="cli", **fixed)).kiro_body

    assert for_endpoint(ide, endpoint="cli", profile_arn="arn:x") == cli
    assert for_endpoint(ide, endpoint="ide", profile_arn="arn:x")["profileArn"] == "arn:x"
    assert "profileArn" not in for_endpoint(ide, endpoint="ide", profile_arn=None)
