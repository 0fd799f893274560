"""Translate OpenAI Responses to Anthropic and back (spec §12.2).

The request becomes a non-streaming Anthropic body (the view decides how to answer), its tools
read into a `ToolTable` (flattened namespaces, free-text `custom` tools, the hosted web search);
a finished Anthropic message becomes a `response` object. Streams are rendered live by
gateway/protocol/openai_stream.py (`ResponsesStream`), or synthesized from a finished message by
gateway/protocol/openai_responses_events.py. What this shares with the chat endpoint lives in
gateway/protocol/openai.py.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.protocol.classify import CONTEXT_FULL, INPUT_TOO_LONG
from gateway.protocol.models import ConversionError
from gateway.protocol.openai import (
    EMPTY_SCHEMA,
    LENGTH_STOPS,
    Reply,
    anthropic_body,
    append_turn,
    arguments_json,
    content_blocks,
    convert_tool_choice,
    flat_tool_name,
    function_name,
    function_tool,
    request_model,
    require_body,
    required_str,
    responses_usage,
    system_texts,
    text_block,
    tool_arguments,
    tool_result_content,
)

__all__ = [
    "anthropic_to_responses",
    "custom_input",
    "item_id",
    "new_response_id",
    "response_error",
    "response_shell",
    "responses_status",
    "responses_to_anthropic",
    "tool_table",
]

#: spec 12.2: the one field a free-text (`custom`) tool's wrapped schema has.
CUSTOM_INPUT_KEY: Final = "input"
CUSTOM_TOOL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        CUSTOM_INPUT_KEY: {
            "type": "string",
            "description": "The raw input text for this tool, exactly as the tool expects it; "
            "do not wrap it in JSON.",
        }
    },
    "required": [CUSTOM_INPUT_KEY],
    "additionalProperties": False,
}
#: spec 12.2: the native tool that routes a request through the §11.5 loop.
NATIVE_WEB_SEARCH_TOOL: Final[dict[str, Any]] = {
    "type": "web_search_20250305",
    "name": "web_search",
    "max_uses": 5,
}
#: spec 12.2: keeps a search-only request off the single-tool path (§11.2), which would search
#: the user's whole message verbatim.
NOOP_TOOL: Final[dict[str, Any]] = {
    "name": "noop",
    "description": "Placeholder; never call this tool.",
    "input_schema": EMPTY_SCHEMA,
}
# Our wording of Z's nudge (spec 12.2).
WEB_SEARCH_NUDGE: Final = (
    "A web_search tool returning live results is available. Use it before answering anything "
    "time-sensitive (news, current events, prices, releases, recent results, or facts newer "
    "than your training data), and never claim something did not happen without searching."
)
_TOOL_CALL_ITEMS: Final = frozenset({"function_call", "custom_tool_call"})
_TOOL_OUTPUT_ITEMS: Final = frozenset({"function_call_output", "custom_tool_call_output"})
# Responses `error.code`s that Codex acts on (retry, compaction) for Anthropic error types.
_RESPONSES_CODES: Final = {
    "rate_limit_error": "rate_limit_exceeded",
    "overloaded_error": "server_is_overloaded",
    "invalid_request_error": "invalid_prompt",
}

ToolKind = Literal["function", "custom"]


# --- request ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Declared:
    """A client tool as the Responses API declared it (spec 12.2)."""

    kind: ToolKind
    name: str
    namespace: str | None


@dataclass(slots=True)
class ToolTable:
    """The request's tools, flattened, and how to map model-side names back."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    declared: dict[str, _Declared] = field(default_factory=dict)
    hosted_web_search: bool = False

    def resolve(self, flat_name: str) -> _Declared | None:
        """Find the declaration of a model-side name; a bare name must be unambiguous."""
        found = self.declared.get(flat_name)
        if found is not None:
            return found
        matches = [item for item in self.declared.values() if item.name == flat_name]
        return matches[0] if len(matches) == 1 else None


def _tool_entries(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """List the tool declarations: top-level `tools`, then `additional_tools` input items."""
    raw = body.get("tools")
    if raw is not None and not isinstance(raw, list):
        raise ConversionError("tools", "must be a list")
    entries = [(f"tools.{index}", tool) for index, tool in enumerate(raw or [])]
    items = body.get("input")
    for index, item in enumerate(items if isinstance(items, list) else []):
        # Codex 0.144+ may declare tools in an `additional_tools` input item.
        if isinstance(item, Mapping) and item.get("type") == "additional_tools":
            extra = item.get("tools")
            if not isinstance(extra, list):
                raise ConversionError(f"input.{index}.tools", "must be a list")
            entries += [(f"input.{index}.tools.{i}", tool) for i, tool in enumerate(extra)]
    return entries


def tool_table(body: Mapping[str, Any]) -> ToolTable:
    """Read the tools of a Responses body: what the model sees, and how names map back."""
    table = ToolTable()
    for path, entry in _tool_entries(body):
        _declare(table, entry, path, namespace=None, prefix="")
    return table


def _declare(
    table: ToolTable, entry: object, path: str, *, namespace: str | None, prefix: str
) -> None:
    """Add one Responses tool (function, custom, namespace, hosted) to the table (spec 12.2)."""
    if not isinstance(entry, Mapping):
        raise ConversionError(path, "must be an object")
    kind = entry.get("type", "function")
    if not isinstance(kind, str):
        raise ConversionError(f"{path}.type", "must be a string")
    if kind == "function":
        name = function_name(entry, path)
        tool = function_tool(entry, path, flat_tool_name(namespace, name))
    elif kind == "custom":
        name = required_str(entry, "name", path)
        tool = {
            "name": flat_tool_name(namespace, name),
            "description": _custom_description(entry),
            "input_schema": copy.deepcopy(CUSTOM_TOOL_SCHEMA),
        }
    elif kind == "namespace":
        group = required_str(entry, "name", path)
        members = entry.get("tools")
        if namespace is not None or not isinstance(members, list):
            return  # nested groups are not part of the protocol; an empty group declares nothing
        about = entry.get("description")
        inner = f"{about.strip()}\n\n" if isinstance(about, str) and about.strip() else ""
        for index, member in enumerate(members):
            _declare(table, member, f"{path}.tools.{index}", namespace=group, prefix=inner)
        return
    else:
        # spec 12.2: hosted tools other than web search (file_search, local_shell, ...) have
        # no Kiro counterpart and are left out.
        table.hosted_web_search |= kind.startswith("web_search")
        return
    if prefix:
        tool["description"] = prefix + tool.get("description", "")
    flat = tool["name"]
    if flat in table.declared:
        return
    table.declared[flat] = _Declared(kind, name, namespace)
    table.tools.append(tool)


def _custom_description(entry: Mapping[str, Any]) -> str:
    """Describe a free-text tool, with its grammar when it has one (spec 12.2)."""
    description = entry.get("description")
    text = description if isinstance(description, str) else ""
    grammar = entry.get("format")
    if isinstance(grammar, Mapping) and isinstance(grammar.get("definition"), str):
        syntax = grammar.get("syntax") if isinstance(grammar.get("syntax"), str) else "grammar"
        text += f"\n\nThe input must follow this {syntax} grammar:\n{grammar['definition']}"
    return text


def responses_to_anthropic(
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    inject_web_search: bool = True,
) -> dict[str, Any]:
    """Convert a Responses request into a non-streaming Anthropic body (spec 12.2).

    With `inject_web_search`, a client-declared hosted `web_search` tool is answered by the
    gateway: the native tool (plus a nudge, plus `noop` when it would be alone) sends the
    request through the §11.5 loop. Without it, the declaration is dropped.
    """
    body = require_body(body)
    model = request_model(body)
    if body.get("previous_response_id") is not None:
        raise ConversionError(
            "previous_response_id", "not supported: this gateway stores no responses"
        )
    system: list[str] = []
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise ConversionError("instructions", "must be a string")
    if instructions and instructions.strip():
        system.append(instructions)

    turns: list[dict[str, Any]] = []
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        append_turn(turns, "user", [text_block(raw_input)] if raw_input else [])
    elif isinstance(raw_input, list):
        for index, item in enumerate(raw_input):
            _input_item(item, f"input.{index}", system, turns)
    else:
        raise ConversionError("input", "must be a string or a list of items")
    if not turns:
        raise ConversionError("input", "must contain a user message")

    table = tool_table(body)
    choice = convert_tool_choice(body.get("tool_choice"), "tool_choice")
    tools = list(table.tools)
    withheld = choice is not None and choice["type"] == "none"
    declared_search = any(tool["name"] == "web_search" for tool in tools)
    if inject_web_search and table.hosted_web_search and not withheld and not declared_search:
        if not tools:
            tools.append(copy.deepcopy(NOOP_TOOL))
        tools.append(copy.deepcopy(NATIVE_WEB_SEARCH_TOOL))
        system.append(WEB_SEARCH_NUDGE)

    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, Mapping):
        raise ConversionError("reasoning", "must be an object")
    return anthropic_body(
        body,
        model=model,
        max_tokens_keys=("max_output_tokens",),
        system=system,
        turns=turns,
        tools=tools,
        tool_choice=choice,
        raw_effort=(reasoning or {}).get("effort"),
        effort_path="reasoning.effort",
        headers=headers,
    )


def _input_item(item: object, path: str, system: list[str], turns: list[dict[str, Any]]) -> None:
    """Convert one Responses input item (spec 12.2)."""
    if not isinstance(item, Mapping):
        raise ConversionError(path, "must be an object")
    kind = item.get("type")
    if kind is not None and not isinstance(kind, str):
        raise ConversionError(f"{path}.type", "must be a string")
    if kind in _TOOL_CALL_ITEMS:
        call_id = item.get("call_id") or item.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise ConversionError(f"{path}.call_id", "required string")
        name = required_str(item, "name", path)
        namespace = item.get("namespace")
        if kind == "custom_tool_call":
            raw = item.get("input")
            tool_input: dict[str, Any] = {CUSTOM_INPUT_KEY: raw if isinstance(raw, str) else ""}
        else:
            tool_input = tool_arguments(item.get("arguments"))
        flat = flat_tool_name(namespace if isinstance(namespace, str) else None, name)
        block = {"type": "tool_use", "id": call_id, "name": flat, "input": tool_input}
        append_turn(turns, "assistant", [block])
    elif kind in _TOOL_OUTPUT_ITEMS:
        call_id = required_str(item, "call_id", path)
        content = tool_result_content(item.get("output"), f"{path}.output")
        append_turn(
            turns, "user", [{"type": "tool_result", "tool_use_id": call_id, "content": content}]
        )
    elif kind is None or kind == "message":
        role = item.get("role")
        content_path = f"{path}.content"
        if role in ("system", "developer"):
            system += system_texts(item.get("content"), content_path)
        elif role in ("user", "assistant"):
            append_turn(turns, role, content_blocks(item.get("content"), content_path))
        else:
            raise ConversionError(
                f"{path}.role",
                f"must be 'system', 'developer', 'user' or 'assistant', got {role!r}",
            )
    # Everything else — reasoning, web_search_call, compaction (spec 12.2), additional_tools
    # (read by _tool_entries), and item types newer than this code — carries no dialogue.


# --- response ---------------------------------------------------------------------------------


def new_response_id() -> str:
    """Return a fresh `resp_<32 hex>` id."""
    return f"resp_{uuid.uuid4().hex}"


def item_id(prefix: str) -> str:
    """Return a fresh output item id such as `msg_<32 hex>`."""
    return f"{prefix}_{uuid.uuid4().hex}"


def custom_input(value: Any) -> str:
    """Unwrap a free-text tool's `{"input": string}` (spec 12.2), tolerating model slips."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get(CUSTOM_INPUT_KEY)
        if isinstance(inner, str):
            return inner
        if len(value) == 1:
            (only,) = value.values()
            if isinstance(only, str):
                return only
    return arguments_json(value)


def _output_items(reply: Reply, table: ToolTable, status: str) -> list[dict[str, Any]]:
    """Build the output items: reasoning, searches, message, then tool calls (spec 12.2)."""
    items: list[dict[str, Any]] = []
    if reply.reasoning:
        items.append(
            {
                "type": "reasoning",
                "id": item_id("rs"),
                "summary": [{"type": "summary_text", "text": reply.reasoning}],
            }
        )
    items.extend(
        {
            "type": "web_search_call",
            "id": search_id or item_id("ws"),
            "status": "completed",
            "action": {"type": "search", "query": query},
        }
        for search_id, query in reply.searches
    )
    if reply.text:
        items.append(
            {
                "type": "message",
                "id": item_id("msg"),
                "status": "completed" if status == "completed" else "incomplete",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        )
    for call in reply.calls:
        declared = table.resolve(call.name)
        if declared is None and call.name == NOOP_TOOL["name"]:
            continue  # our placeholder (spec 12.2); the client never declared it
        name = declared.name if declared is not None else call.name
        if declared is not None and declared.kind == "custom":
            item: dict[str, Any] = {
                "type": "custom_tool_call",
                "id": item_id("ctc"),
                "call_id": call.id,
                "name": name,
                "input": custom_input(call.input),
                "status": "completed",
            }
        else:
            item = {
                "type": "function_call",
                "id": item_id("fc"),
                "call_id": call.id,
                "name": name,
                "arguments": arguments_json(call.input),
                "status": "completed",
            }
        if declared is not None and declared.namespace:
            item["namespace"] = declared.namespace
        items.append(item)
    return items


def response_shell(
    *, response_id: str, created_at: int, model: str, request: Mapping[str, Any]
) -> dict[str, Any]:
    """Build the response object minus output and usage, echoing the request's settings."""
    reasoning = request.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, Mapping) else {}
    tools = request.get("tools")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False,
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": tools if isinstance(tools, list) else [],
        "truncation": "disabled",
        "usage": None,
        "metadata": {},
    }


def responses_status(stop_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """Return a Responses `status` and `incomplete_details` for the stop reason (spec 12.2):
    `incomplete` when the output was cut (`max_output_tokens`) or refused (`content_filter`,
    ours), else `completed` with no details."""
    if stop_reason in LENGTH_STOPS:
        return "incomplete", {"reason": "max_output_tokens"}
    if stop_reason == "refusal":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def anthropic_to_responses(
    message: Mapping[str, Any],
    *,
    model: str,
    request: Mapping[str, Any],
    response_id: str | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """Render an assembled Anthropic message as a Responses `response` object (spec 12.2).

    `request` is the client's Responses body: it says which tools were custom and which
    belonged to a namespace, and its settings are echoed back.
    """
    reply = Reply.of(message)
    response = response_shell(
        response_id=response_id or new_response_id(),
        created_at=created_at if created_at is not None else int(time.time()),
        model=model,
        request=request,
    )
    status, response["incomplete_details"] = responses_status(reply.stop_reason)
    response["status"] = status
    response["output"] = _output_items(reply, tool_table(request), status)
    response["usage"] = responses_usage(reply.usage)
    return response


def response_error(message: str, error_type: str) -> dict[str, Any]:
    """Build a failed response's `error`; the Anthropic error type becomes a code Codex acts
    on (retry, compaction)."""
    code = _RESPONSES_CODES.get(error_type, "server_error")
    if message in (CONTEXT_FULL.message, INPUT_TOO_LONG.message):
        code = "context_length_exceeded"
    return {"code": code, "message": message}
