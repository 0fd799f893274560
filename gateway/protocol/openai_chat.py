"""Translate OpenAI Chat Completions to Anthropic and back (spec §12.1).

The request becomes a non-streaming Anthropic body (the view decides how to answer); a finished
Anthropic message becomes a `chat.completion`. Streams are rendered live by
gateway/protocol/openai_stream.py (`ChatStream`). What this shares with the Responses endpoint
lives in gateway/protocol/openai.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from gateway.protocol.models import ConversionError
from gateway.protocol.openai import (
    LENGTH_STOPS,
    Reply,
    anthropic_body,
    append_turn,
    arguments_json,
    chat_usage,
    content_blocks,
    convert_tool_choice,
    function_name,
    function_tool,
    request_model,
    require_body,
    required_str,
    system_texts,
    tool_arguments,
    tool_result_content,
)

__all__ = [
    "anthropic_to_chat",
    "chat_include_usage",
    "chat_to_anthropic",
    "finish_reason",
    "new_completion_id",
]


def chat_include_usage(body: Mapping[str, Any]) -> bool:
    """Tell whether a chat stream must end with OpenAI's separate usage chunk."""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def chat_to_anthropic(
    body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Convert a Chat Completions request into a non-streaming Anthropic body (spec 12.1)."""
    body = require_body(body)
    model = request_model(body)
    n = body.get("n")
    if n is not None and n != 1:
        raise ConversionError("n", "only 1 choice is supported")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConversionError("messages", "must be a non-empty list")

    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        path = f"messages.{index}"
        if not isinstance(message, Mapping):
            raise ConversionError(path, "must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system += system_texts(_chat_content(message, path), f"{path}.content")
        elif role == "user":
            append_turn(
                turns, "user", content_blocks(_chat_content(message, path), f"{path}.content")
            )
        elif role == "assistant":
            append_turn(turns, "assistant", _chat_assistant(message, path))
        elif role == "tool":
            append_turn(turns, "user", [_chat_tool_result(message, path)])
        else:
            raise ConversionError(
                f"{path}.role",
                f"must be 'system', 'developer', 'user', 'assistant' or 'tool', got {role!r}",
            )
    if not turns:
        raise ConversionError("messages", "must contain a user message")

    tools = _chat_tools(body.get("tools"))
    choice = convert_tool_choice(body.get("tool_choice"), "tool_choice")
    return anthropic_body(
        body,
        model=model,
        max_tokens_keys=("max_completion_tokens", "max_tokens"),
        system=system,
        turns=turns,
        tools=tools,
        tool_choice=choice,
        raw_effort=body.get("reasoning_effort"),
        effort_path="reasoning_effort",
        headers=headers,
    )


def _chat_content(message: Mapping[str, Any], path: str) -> object:
    if "content" not in message:
        raise ConversionError(f"{path}.content", "required")
    return message["content"]


def _chat_assistant(message: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    """Convert an assistant message: text, then its tool_calls as tool_use (spec 12.1)."""
    blocks = content_blocks(message.get("content"), f"{path}.content")
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise ConversionError(f"{path}.tool_calls", "must be a list")
    for index, call in enumerate(calls):
        call_path = f"{path}.tool_calls.{index}"
        if not isinstance(call, Mapping):
            raise ConversionError(call_path, "must be an object")
        if call.get("type", "function") != "function":
            raise ConversionError(f"{call_path}.type", "only 'function' tool calls are supported")
        call_id = required_str(call, "id", call_path)
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise ConversionError(f"{call_path}.function", "required object")
        name = required_str(function, "name", f"{call_path}.function")
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": name,
                "input": tool_arguments(function.get("arguments")),
            }
        )
    return blocks


def _chat_tool_result(message: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Convert a `tool` message into a user tool_result (spec 12.1)."""
    tool_call_id = required_str(message, "tool_call_id", path)
    content = tool_result_content(message.get("content"), f"{path}.content")
    return {"type": "tool_result", "tool_use_id": tool_call_id, "content": content}


def _chat_tools(raw: object) -> list[dict[str, Any]]:
    """Convert `[{type: function, function: {...}}]` into Anthropic tools (spec 12.1)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConversionError("tools", "must be a list")
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(raw):
        path = f"tools.{index}"
        if not isinstance(tool, Mapping):
            raise ConversionError(path, "must be an object")
        if tool.get("type", "function") != "function":
            raise ConversionError(f"{path}.type", "only 'function' tools are supported")
        tools.append(function_tool(tool, path, function_name(tool, path)))
    return tools


def new_completion_id() -> str:
    """Return a fresh `chatcmpl-<32 hex>` id (spec 12.1)."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def anthropic_to_chat(
    message: Mapping[str, Any],
    *,
    model: str,
    completion_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """Render an assembled Anthropic message as a `chat.completion` (spec 12.1)."""
    reply = Reply.of(message)
    tool_calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": arguments_json(call.input)},
        }
        for call in reply.calls
    ]
    answer: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not tool_calls else None,
        "refusal": None,
    }
    if reply.reasoning:
        answer["reasoning_content"] = reply.reasoning
    if tool_calls:
        answer["tool_calls"] = tool_calls
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": answer,
                "logprobs": None,
                "finish_reason": finish_reason(reply.stop_reason, has_calls=bool(reply.calls)),
            }
        ],
        "usage": chat_usage(reply.usage),
    }


def finish_reason(stop_reason: str | None, *, has_calls: bool) -> str:
    """Map the stop reason (spec 12.1); `refusal` → `content_filter` is ours."""
    if stop_reason == "tool_use":
        return "tool_calls"
    if stop_reason in LENGTH_STOPS:
        return "length"
    if stop_reason == "refusal":
        return "content_filter"
    return "tool_calls" if has_calls else "stop"
