"""Random message sequences always give alternating history with paired tool results."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol.convert import ConvertOptions, convert_request

IDS = st.sampled_from(["t1", "t2", "t3", "t4"])
NAMES = st.sampled_from(["Read", "Bash", "lookup", "Write"])
TEXT = st.sampled_from(["", " ", "hi", "more text"])

text_block = TEXT.map(lambda text: {"type": "text", "text": text})
tool_use = st.builds(
    lambda tool_id, name: {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
    IDS,
    NAMES,
)
tool_result = st.builds(
    lambda tool_id, error: {
        "type": "tool_result",
        "tool_use_id": tool_id,
        "content": "r",
        "is_error": error,
    },
    IDS,
    st.booleans(),
)
thinking = st.just({"type": "thinking", "thinking": "t", "signature": "s"})
user = st.builds(
    lambda content: {"role": "user", "content": content},
    st.one_of(TEXT, st.lists(st.one_of(text_block, tool_result), max_size=4)),
)
assistant = st.builds(
    lambda content: {"role": "assistant", "content": content},
    st.one_of(TEXT, st.lists(st.one_of(text_block, tool_use, thinking), max_size=4)),
)
system = st.builds(lambda text: {"role": "system", "content": text}, TEXT)
conversations = st.lists(st.one_of(user, assistant, system), min_size=1, max_size=12).filter(
    lambda messages: any(message["role"] == "user" for message in messages)
)


@settings(max_examples=300, deadline=None)
@given(
    messages=conversations,
    system_prompt=st.one_of(st.none(), TEXT),
    mode=st.sampled_from(["raw", "claude-code"]),
)
def test_it_always_builds_a_well_formed_conversation(
    messages: list[dict[str, Any]], system_prompt: str | None, mode: str
) -> None:
    body: dict[str, Any] = {"model": "claude-sonnet-4-6", "messages": messages}
    if system_prompt is not None:
        body["system"] = system_prompt
    conversation = convert_request(body, options=ConvertOptions(tool_mode=mode))
    state = conversation.kiro_body["conversationState"]
    turns = [*state.get("history", []), state["currentMessage"]]
    kinds = ["user" if "userInputMessage" in turn else "assistant" for turn in turns]
    assert kinds[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(kinds))

    context = state["currentMessage"]["userInputMessage"]["userInputMessageContext"]
    declared = {tool["toolSpecification"]["name"].lower() for tool in context.get("tools", [])}
    for previous, turn in itertools.pairwise(turns):
        if "assistantResponseMessage" in turn:
            assert "tools" not in turn["assistantResponseMessage"]
            for use in turn["assistantResponseMessage"].get("toolUses", []):
                assert use["name"].lower() in declared
            continue
        results = turn["userInputMessage"].get("userInputMessageContext", {}).get("toolResults", [])
        offered = previous.get("assistantResponseMessage", {}).get("toolUses", [])
        assert sorted(r["toolUseId"] for r in results) == sorted(u["toolUseId"] for u in offered)
