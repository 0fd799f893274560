"""Real client captures (../shared/spec/clients) must convert into well-formed Kiro bodies."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.protocol.convert import (
    SYSTEM_POLICY,
    Conversion,
    ConvertOptions,
    Rule,
    convert_request,
    encode_body,
)

CLIENTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec" / "clients"
CAPTURES = [
    "claude-code-turn1.json",
    "claude-code-turn2-tool-result.json",
    "anthropic-sdk-stream.json",
]
OPTIONS = ConvertOptions(conversation_id="conv", agent_continuation_id="agent")


def load(name: str) -> dict[str, Any]:
    return json.loads((CLIENTS / name).read_text())["body"]


def convert(name: str) -> Conversion:
    return convert_request(load(name), options=OPTIONS)


def roles(conversion: Conversion) -> list[str]:
    entries = conversion.kiro_body["conversationState"].get("history", [])
    return ["user" if "userInputMessage" in e else "assistant" for e in entries] + ["user"]


@pytest.mark.parametrize("name", CAPTURES)
def test_it_converts_the_capture_with_strict_alternation(name: str) -> None:
    conversion = convert(name)
    sequence = roles(conversion)
    assert sequence[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(sequence))
    assert json.loads(encode_body(conversion.kiro_body)) == conversion.kiro_body


@pytest.mark.parametrize("name", CAPTURES)
def test_it_answers_every_tool_use_in_the_next_turn(name: str) -> None:
    conversation = convert(name).kiro_body["conversationState"]
    turns = [*conversation.get("history", []), conversation["currentMessage"]]
    for previous, turn in itertools.pairwise(turns):
        if "userInputMessage" not in turn:
            continue
        context = turn["userInputMessage"].get("userInputMessageContext", {})
        answered = [result["toolUseId"] for result in context.get("toolResults", [])]
        offered = [
            use["toolUseId"]
            for use in previous.get("assistantResponseMessage", {}).get("toolUses", [])
        ]
        assert sorted(answered) == sorted(offered)


@pytest.mark.parametrize("name", CAPTURES[:2])
def test_it_folds_claude_codes_system_message(name: str) -> None:
    conversion = convert(name)
    first = conversion.kiro_body["conversationState"]["history"][0]["userInputMessage"]["content"]
    assert first.startswith(
        "<thinking_mode>adaptive</thinking_mode><thinking_effort>medium</thinking_effort>\n"
    )
    assert "You are a Claude agent" in first
    assert "# Environment" in first
    assert first.endswith(SYSTEM_POLICY)
    assert "x-anthropic-billing-header" not in first
    assert {Rule.FOLD_SYSTEM_MESSAGE, Rule.DROP_BILLING_HEADER} <= set(conversion.rules)


@pytest.mark.parametrize("name", CAPTURES[:2])
def test_it_declares_claude_codes_tools(name: str) -> None:
    conversion = convert(name)
    context = conversion.kiro_body["conversationState"]["currentMessage"]["userInputMessage"][
        "userInputMessageContext"
    ]
    names = [tool["toolSpecification"]["name"] for tool in context["tools"]]
    assert len(names) == 12
    assert {"Agent", "execute_bash", "str_replace", "fs_write", "read_file"} <= set(names)
    assert conversion.tool_name_map["execute_bash"] == "Bash"


def test_it_keeps_claude_codes_session_and_effort() -> None:
    conversion = convert("claude-code-turn1.json")
    assert conversion.conversation_id == "495eee66-fafd-4d59-8d29-26ce3103c847"
    assert conversion.model.upstream_id == "claude-opus-5.5"
    assert conversion.kiro_body["additionalModelRequestFields"] == {
        "output_config": {"effort": "medium"}
    }
    current = conversion.kiro_body["conversationState"]["currentMessage"]["userInputMessage"]
    assert current["content"].endswith("\nsay hi")


def test_it_carries_the_bash_round_trip() -> None:
    conversation = convert("claude-code-turn2-tool-result.json").kiro_body["conversationState"]
    use = conversation["history"][-1]["assistantResponseMessage"]["toolUses"][0]
    assert use == {
        "toolUseId": "toolu_2d5bf7a708ca4405be231b10",
        "name": "execute_bash",
        "input": {"command": "echo recorder-tool-ok-$((6*7))"},
    }
    results = conversation["currentMessage"]["userInputMessage"]["userInputMessageContext"][
        "toolResults"
    ]
    assert results == [
        {
            "toolUseId": "toolu_2d5bf7a708ca4405be231b10",
            "content": [{"text": "recorder-tool-ok-42"}],
            "status": "success",
        }
    ]


def test_it_converts_the_sdk_request_without_history() -> None:
    conversion = convert("anthropic-sdk-stream.json")
    conversation = conversion.kiro_body["conversationState"]
    assert "history" not in conversation
    assert conversation["currentMessage"]["userInputMessage"]["content"] == "say hi"
    assert conversion.rules == ()


def test_it_converts_claude_code_in_raw_mode_too() -> None:
    options = ConvertOptions(tool_mode="raw")
    conversion = convert_request(load("claude-code-turn2-tool-result.json"), options=options)
    use = conversion.kiro_body["conversationState"]["history"][-1]["assistantResponseMessage"][
        "toolUses"
    ][0]
    assert use["name"] == "Bash"
    assert use["input"]["description"] == "Print a marker string"
