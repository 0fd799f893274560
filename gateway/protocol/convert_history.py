"""Repair the history of a conversion into what Kiro accepts (spec §3.7, §3.9-§3.13).

Same-role runs are merged and the history is closed with an assistant turn, every
tool_result must answer a tool_use of the turn right before it (and vice versa), and the
declared tools are converted, with placeholders for tools only the history calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.protocol.convert_turns import (
    TOOL_ONLY_CONTENT,
    AssistantTurn,
    ConversionState,
    Rule,
    Turn,
    UserTurn,
)
from gateway.protocol.models import ConversionError
from gateway.protocol.tools import (
    HIDDEN_CLAUDE_CODE_TOOLS,
    KiroTool,
    convert_tool,
    placeholder_tool,
)

__all__ = ["alternate", "declare_tools", "repair_tool_pairing"]

# spec 3.7: the assistant turn that closes a history ending with a user turn.
FILLER_ASSISTANT = "OK"
# Ours (no proxy has it): a history that opens with an assistant turn gets this user turn in
# front.
FILLER_USER = "Hello."


def alternate(turns: list[Turn], state: ConversionState) -> list[Turn]:
    """Merge same-role runs and close with an assistant turn (spec 3.7)."""
    merged: list[Turn] = []
    for turn in turns:
        previous = merged[-1] if merged else None
        if isinstance(turn, UserTurn) and isinstance(previous, UserTurn):
            state.fire(Rule.MERGE_CONSECUTIVE_USER)
            merged[-1] = _merge_users(previous, turn)
        elif isinstance(turn, AssistantTurn) and isinstance(previous, AssistantTurn):
            state.fire(Rule.MERGE_CONSECUTIVE_ASSISTANT)
            merged[-1] = _merge_assistants(previous, turn)
        else:
            merged.append(turn)
    if merged and isinstance(merged[0], AssistantTurn):
        # The proxies let such a history start with an assistant turn right after the
        # system pair's assistant; Kiro expects user/assistant pairs, so open with a user.
        state.fire(Rule.INSERT_PLACEHOLDER_USER)
        merged.insert(0, UserTurn([FILLER_USER]))
    if merged and isinstance(merged[-1], UserTurn):
        state.fire(Rule.INSERT_PLACEHOLDER_ASSISTANT)
        merged.append(AssistantTurn(FILLER_ASSISTANT))
    return merged


def _merge_users(first: UserTurn, second: UserTurn) -> UserTurn:
    """Merge two user turns: non-empty texts joined with a newline (spec 3.7)."""
    texts = [text for text in (first.text(), second.text()) if text]
    return UserTurn(
        ["\n".join(texts)] if texts else [],
        first.images + second.images,
        first.results + second.results,
    )


def _merge_assistants(first: AssistantTurn, second: AssistantTurn) -> AssistantTurn:
    """Merge two assistant turns: non-blank contents joined by a blank line (spec 3.7)."""
    contents = [c for c in (first.content, second.content) if c.strip()]
    tool_uses = first.tool_uses + second.tool_uses
    content = "\n\n".join(contents) if contents else (TOOL_ONLY_CONTENT if tool_uses else "")
    return AssistantTurn(content, tool_uses)


def repair_tool_pairing(history: list[Turn], current: UserTurn, state: ConversionState) -> None:
    """Make every tool_result answer a tool_use of the turn right before it, and vice versa.

    spec 3.9 checks only the current message against all of history; Kiro (like Anthropic)
    wants each assistant turn's calls answered in the very next user turn, so we check
    every user turn against its predecessor. Every §3.9 case still comes out the same.
    """
    turns = [*history, current]
    seen: set[str] = set()
    for turn in turns:
        if not isinstance(turn, AssistantTurn):
            continue
        unique = []
        for use in turn.tool_uses:
            if use["toolUseId"] in seen:
                state.fire(Rule.DROP_DUPLICATE_TOOL_USE)
                continue
            seen.add(use["toolUseId"])
            unique.append(use)
        turn.tool_uses = unique
    all_ids = seen
    for position, turn in enumerate(turns):
        if not isinstance(turn, UserTurn):
            continue
        previous = turns[position - 1] if position else None
        offered = (
            [use["toolUseId"] for use in previous.tool_uses]
            if isinstance(previous, AssistantTurn)
            else []
        )
        answered: set[str] = set()
        kept = []
        for result in turn.results:
            result_id = result["toolUseId"]
            if result_id in offered and result_id not in answered:
                answered.add(result_id)
                kept.append(result)
            elif result_id in all_ids:
                state.fire(Rule.DROP_DUPLICATE_TOOL_RESULT)
            else:
                state.fire(Rule.DROP_ORPHAN_TOOL_RESULT)
        turn.results = kept
        if isinstance(previous, AssistantTurn) and len(answered) < len(previous.tool_uses):
            state.fire(Rule.DROP_ORPHAN_TOOL_USE)
            # spec 3.9: the content is left as is (possibly " ").
            previous.tool_uses = [u for u in previous.tool_uses if u["toolUseId"] in answered]


def declare_tools(raw: object, history: list[Turn], state: ConversionState) -> list[KiroTool]:
    """Convert the client tools, then declare placeholders for history-only tools (3.10-3.13)."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConversionError("tools", "must be a list")
    mode = state.options.tool_mode
    specs: list[KiroTool] = []
    names: set[str] = set()
    for index, tool in enumerate(raw):
        path = f"tools.{index}"
        if not isinstance(tool, Mapping):
            raise ConversionError(path, "must be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise ConversionError(f"{path}.name", "required string")
        if mode == "claude-code" and name in HIDDEN_CLAUDE_CODE_TOOLS:
            state.fire(Rule.HIDE_TOOL)
            continue
        converted = convert_tool(tool, mode=mode)
        kiro_name = converted.spec["toolSpecification"]["name"]
        if kiro_name.lower() in names:
            state.fire(Rule.DROP_DUPLICATE_TOOL)
            continue
        names.add(kiro_name.lower())
        specs.append(converted.spec)
        if kiro_name != name:
            state.tool_name_map.setdefault(kiro_name, name)
        for happened, rule in (
            (converted.shortened, Rule.SHORTEN_TOOL_NAME),
            (converted.truncated, Rule.TRUNCATE_TOOL_DESCRIPTION),
            (converted.schema_repaired, Rule.NORMALIZE_TOOL_SCHEMA),
            (converted.claude_code, Rule.MAP_CLAUDE_CODE_TOOL),
        ):
            if happened:
                state.fire(rule)
    for turn in history:
        if not isinstance(turn, AssistantTurn):
            continue
        for use in turn.tool_uses:
            if use["name"].lower() not in names:
                # spec 3.10: Kiro refuses history calls to undeclared tools.
                state.fire(Rule.PLACEHOLDER_TOOL)
                names.add(use["name"].lower())
                specs.append(placeholder_tool(use["name"]))
    return specs
