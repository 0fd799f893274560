"""Malformed request bodies for the fuzz tests: valid bodies shaped like the captured clients,
mutated (a value of another type anywhere, keys dropped or added, deep nesting, NULs, lone
surrogates, huge strings), and raw byte garbage. No Django here: the protocol tests use it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

HUGE = 64 * 1024  # the length of the huge strings; the HTTP fuzz sets its body limit to this
# Every endpoint that takes a body.
POST_PATHS = (
    "/v1/messages",
    "/cc/v1/messages",
    "/v1/messages/count_tokens",
    "/cc/v1/messages/count_tokens",
    "/v1/chat/completions",
    "/v1/responses",
)

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "Where"},
        "options": {
            "type": "object",
            "properties": {"depth": {"type": "integer", "minimum": 0}},
            "required": ["depth"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["path"],
}
# Shaped like the captured Claude Code, SDK and Codex requests, cut down.
MESSAGES_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "List the files."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_01", "name": "Glob", "input": {"path": "."}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": [{"type": "text", "text": "a.py\nb.py"}],
                },
                {"type": "text", "text": "And now?"},
            ],
        },
    ],
    "tools": [{"name": "Glob", "description": "Find files", "input_schema": SCHEMA}],
    "metadata": {"user_id": "user_abc_account__session_1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
    "temperature": 0.5,
}
PNG = (  # 1x1
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
# Claude Code 2.1's newer shapes, and every kind of block the conversion reads.
RICH_MESSAGES_BODY = {
    "model": "claude-opus-4-6",
    "max_tokens": 1024,
    "system": "You are terse.",
    "thinking": {"type": "adaptive", "display": "omitted"},
    "output_config": {"effort": "medium"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "tool_choice": {"type": "auto"},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look at these."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "document", "source": {"type": "text", "data": "notes"}, "title": "N"},
                {
                    "type": "search_result",
                    "source": "https://example.com",
                    "title": "Ex",
                    "content": [{"type": "text", "text": "found"}],
                },
            ],
        },
        {"role": "system", "content": "# Environment", "output_config": {"effort": "high"}},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {"query": "rust"},
                },
                {
                    "type": "web_search_tool_result",
                    "tool_use_id": "srvtoolu_1",
                    "content": [
                        {"type": "web_search_result", "url": "https://r.example", "title": "R"}
                    ],
                },
                {"type": "tool_use", "id": "toolu_02", "name": "Read", "input": {"path": "a.py"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "is_error": False,
                    "content": [
                        {"type": "text", "text": "print(1)"},
                        {"type": "tool_reference", "tool_name": "Glob"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                },
            ],
        },
    ],
    "tools": [
        {"name": "Read", "description": "Read a file", "input_schema": SCHEMA},
        {"name": "Glob", "input_schema": {"type": "object"}, "defer_loading": True},
    ],
}
WEB_SEARCH_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
    "messages": [{"role": "user", "content": "Perform a web search for the query: rust"}],
}
MIXED_SEARCH_BODY = {
    **WEB_SEARCH_BODY,
    "tools": [*WEB_SEARCH_BODY["tools"], *MESSAGES_BODY["tools"]],
}
# Every kind of body /v1/messages takes.
MESSAGES_BODIES = (MESSAGES_BODY, RICH_MESSAGES_BODY, WEB_SEARCH_BODY, MIXED_SEARCH_BODY)
COUNT_BODIES = [
    {key: body[key] for key in ("model", "system", "messages", "tools")}
    for body in (MESSAGES_BODY, RICH_MESSAGES_BODY)
]
CHAT_BODY = {
    "model": "claude-sonnet-4-5",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "say hi"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command": "echo hi"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "hi"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "Bash", "description": "Run", "parameters": SCHEMA},
        }
    ],
    "max_tokens": 256,
    "tool_choice": "auto",
    "reasoning_effort": "low",
    "stream_options": {"include_usage": True},
}
RESPONSES_BODY = {
    "model": "claude-sonnet-4-5",
    "instructions": "You are a coding agent.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "Sandbox: read-only."}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run"}]},
        {
            "type": "function_call",
            "name": "exec_command",
            "arguments": '{"cmd": "echo ok"}',
            "call_id": "call_1",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "ok\n"},
        {"type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin", "call_id": "c2"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done"},
        {"type": "reasoning", "summary": []},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "description": "Run", "parameters": SCHEMA},
        {"type": "custom", "name": "apply_patch", "description": "Patch files"},
        {
            "type": "namespace",
            "name": "mcp",
            "tools": [{"type": "function", "name": "fetch", "parameters": SCHEMA}],
        },
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "prompt_cache_key": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "reasoning": {"effort": "low"},
    "max_output_tokens": 256,
}


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deep:
    """Raw JSON nested `depth` levels, spliced in where a value was (json.dumps cannot)."""

    depth: int
    kind: str

    def raw(self) -> str:
        if self.kind == "[":
            return "[" * self.depth + "]" * self.depth
        return '{"a":' * self.depth + "1" + "}" * self.depth


ODD_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\ud800x",
        "x\udfff",
        "\ud83d\ude00",  # a valid pair once it is JSON: must be accepted
        "😀",
        "\\ud800",  # a backslash and text, not an escape
        "claude-sonnet-4-5",
        "web_search",
        "text",
        "tool_use",
        "user",
        "system",
        "\u202e\ufeff",
        # The words the conversions branch on: a value may land where another one is read.
        *("image", "document", "thinking", "redacted_thinking", "tool_result", "search_result"),
        *("server_tool_use", "web_search_tool_result", "tool_reference", "base64", "content"),
        *("adaptive", "enabled", "disabled", "assistant", "developer", "message", "function"),
        *("function_call", "function_call_output", "custom", "namespace", "input_text", "auto"),
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: Python writes them, JSON has no such values
    st.text(max_size=20),
    ODD_TEXT,
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8) | ODD_TEXT, SCALARS, max_size=3),
    st.builds(Deep, st.sampled_from([60, 127, 200, 990, 5000, 100_000]), st.sampled_from("[{")),
    st.just("x" * (HUGE + 1)),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON-like value (not the root itself)."""
    out = []
    if isinstance(value, dict):
        for key, child in value.items():
            out += [(*prefix, key), *paths(child, (*prefix, key))]
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += [(*prefix, index), *paths(child, (*prefix, index))]
    return out


def _parent(body: Any, path: tuple) -> Any:
    for step in path[:-1]:
        body = body[step]
    return body


def encode(body: Any) -> bytes:
    """Serialize like a client would, splicing in Deep values as raw text."""
    deep: dict[str, Deep] = {}

    def default(value: Any) -> Any:
        if isinstance(value, Deep):
            marker = f"__deep_{len(deep)}__"
            deep[marker] = value
            return marker
        raise TypeError(type(value))

    text = json.dumps(body, default=default)
    for marker, value in deep.items():
        text = text.replace(json.dumps(marker), value.raw())
    return text.encode()


@st.composite
def mutated(draw: st.DrawFn, bodies: Sequence[dict[str, Any]], *, streams: bool = False) -> bytes:
    """One of `bodies` with one or two values replaced, dropped or added."""
    body = json.loads(json.dumps(draw(st.sampled_from(bodies))))
    if streams:
        body["stream"] = draw(st.sampled_from([True, False]))
    for _ in range(draw(st.integers(1, 2))):
        candidates = paths(body)
        if not candidates:
            break
        where = draw(st.sampled_from(candidates))
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        parent = _parent(body, where)
        if action == "replace":
            parent[where[-1]] = draw(VALUES)
        elif action == "drop" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "drop":
            parent.pop(where[-1])
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.text(max_size=8) | ODD_TEXT)] = draw(VALUES)
        elif isinstance(parent[where[-1]], list):
            parent[where[-1]].append(draw(VALUES))
    return encode(body)


@st.composite
def garbage(draw: st.DrawFn, bodies: Sequence[dict[str, Any]]) -> bytes:
    """Bytes that are no JSON object: random, cut, not UTF-8, NULs, UTF-16, deep, a scalar."""
    valid = encode(draw(st.sampled_from(bodies)))
    kinds = ["bytes", "bad utf-8", "cut", "nul", "utf-16", "bom", "deep", "not an object"]
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "not an object":
        return encode(draw(VALUES))
    if kind == "deep":
        return b"[" * 100_000
    at = draw(st.integers(0, len(valid)))
    if kind == "bad utf-8":
        return valid[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + valid[at:]
    if kind == "cut":
        return valid[:at]
    if kind == "nul":
        return valid[:at] + b"\x00" + valid[at:]
    if kind == "utf-16":
        return valid.decode().encode("utf-16")
    return b"\xef\xbb\xbf" + valid
