"""Translate OpenAI Chat Completions and Responses traffic to Anthropic and back (spec §12).

Both endpoints run an Anthropic request through the normal `/v1/messages` path (§3-§11).
A non-streaming answer is the finished message, translated here. A stream is rendered live
from the Kiro events by gateway/protocol/openai_stream.py; only Responses answers of the
web-search loop (§11.5), which is not live, get their events synthesized from the finished
message here, as Z does for every stream (§12). Pure: dicts in, dicts and bytes out.

Where we follow Z and where we differ (each is marked in the code):

* Web search (§12.2): the Z the spec describes adds the native `web_search_20250305` tool, a
  "search for time-sensitive facts" nudge and, without other tools, a dummy `noop` tool to
  *every* Responses request. We add them only when the client itself declared a hosted
  `web_search` tool (Codex does unless its user disabled web search) and `inject_web_search`
  is on, so a user's opt-out is honoured and other requests keep their prompt untouched.
  Later Z releases made the same change.
* Bad input is a 400 naming the field (`messages.2.tool_calls.0.id: required string`) instead
  of a silently dropped message; `n > 1` and `previous_response_id` (we store nothing) are
  refused rather than answered wrongly.
* Content we cannot forward (remote image URLs, files, audio) leaves a visible note for the
  model instead of vanishing, and `reasoning_effort: "minimal"` becomes `low` (§3.16 would
  otherwise read the unknown tier as `high`).
* `tool_choice: "none"` withholds the tools (Kiro has no tool_choice, §12.1 says it is
  ignored downstream); a reply the model sends anyway cannot call a tool it never saw.
* Chat streams (openai_stream.py) follow OpenAI's `stream_options.include_usage` (a final
  `choices: []` chunk) when asked for; otherwise usage rides on the finish chunk as in Z.
  Thinking, when the model produced some, is returned as `reasoning_content` (chat) or a
  `reasoning` item (Responses).
* Namespaced Responses tools are flattened to `ns__name`; an upstream call to the bare `name`
  is mapped back when exactly one namespace declares it (as later Z does).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.protocol import errors, sse
from gateway.protocol.classify import CONTEXT_FULL, INPUT_TOO_LONG
from gateway.protocol.models import ConversionError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "anthropic_error_to_openai",
    "anthropic_to_chat",
    "anthropic_to_responses",
    "chat_include_usage",
    "chat_to_anthropic",
    "chat_usage",
    "client_wants_stream",
    "conversion_error_body",
    "custom_input",
    "finish_reason",
    "item_id",
    "new_completion_id",
    "new_response_id",
    "openai_error",
    "response_error",
    "response_shell",
    "responses_failed_event",
    "responses_status",
    "responses_stream_events",
    "responses_stream_head",
    "responses_to_anthropic",
    "responses_usage",
    "tool_table",
]

#: spec 12.1 / 12.2: the output budget when the client names none.
DEFAULT_MAX_TOKENS: Final = 32_000
#: spec 12.2: namespace and tool name are joined this way (Anthropic names allow no `.`).
NAMESPACE_SEPARATOR: Final = "__"
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
EMPTY_SCHEMA: Final[dict[str, Any]] = {"type": "object", "properties": {}}
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
IMAGE_OMITTED: Final = "[image omitted: only base64 data: URLs are supported by this gateway]"
_PART_OMITTED: Final = "[{kind} omitted: not supported by this gateway]"
_TEXT_PARTS: Final = frozenset({"text", "input_text", "output_text"})
_UNSUPPORTED_PARTS: Final = frozenset({"file", "input_file", "input_audio", "audio"})
_TOOL_CALL_ITEMS: Final = frozenset({"function_call", "custom_tool_call"})
_TOOL_OUTPUT_ITEMS: Final = frozenset({"function_call_output", "custom_tool_call_output"})
# spec 12.1: headers that may carry the client's session id, in order.
_SESSION_HEADERS: Final = ("x-session-affinity", "x-client-request-id", "session_id", "session-id")
#: Anthropic stop reasons that mean the answer was cut (chat `length`, Responses incomplete).
LENGTH_STOPS: Final = frozenset({"max_tokens", "model_context_window_exceeded"})
# Responses `error.code`s that Codex acts on (retry, compaction) for Anthropic error types.
_RESPONSES_CODES: Final = {
    "rate_limit_error": "rate_limit_exceeded",
    "overloaded_error": "server_is_overloaded",
    "invalid_request_error": "invalid_prompt",
}

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
ToolKind = Literal["function", "custom"]


# --- errors ----------------------------------------------------------------------------------


def openai_error(
    status: int,
    message: str,
    type: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Build OpenAI's error body `{"error": {message, type, param, code}}`.

    `type` is the Anthropic type of the failure (protocol.errors), or None to go by the
    status; it becomes OpenAI's type and default code (`openai_error_fields`)."""
    kind, default_code = errors.openai_error_fields(type, status)
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }


def conversion_error_body(error: ConversionError) -> dict[str, Any]:
    """Render a ConversionError as the 400 body, with the offending field as `param`."""
    return openai_error(400, str(error), "invalid_request_error", param=error.field or None)


def anthropic_error_to_openai(status: int, body: object) -> dict[str, Any]:
    """Reshape an inner Anthropic error body for an OpenAI client (Z passes it through).

    A full context window gets OpenAI's `context_length_exceeded` code, which Codex answers
    by compacting the conversation.
    """
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    message = error.get("message")
    message = message if isinstance(message, str) and message else "Upstream request failed."
    kind = error.get("type")
    code = None
    if message in (CONTEXT_FULL.message, INPUT_TOO_LONG.message):
        code = "context_length_exceeded"
    if status == 404 and kind == "not_found_error":
        # The inner request's only 404: strict model resolution refused the model
        # (protocol.catalogue.ModelNotListed); OpenAI names it so.
        return openai_error(
            404, message, "invalid_request_error", param="model", code="model_not_found"
        )
    return openai_error(status, message, kind if isinstance(kind, str) else None, code=code)


# --- shared request helpers ------------------------------------------------------------------


def client_wants_stream(body: Mapping[str, Any]) -> bool:
    """Tell whether the client asked for a stream (the converted body says `stream: false`;
    the view streams it live, or synthesizes the events of a web-search loop, §12)."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ConversionError("stream", "must be a boolean")
    return stream is True


def chat_include_usage(body: Mapping[str, Any]) -> bool:
    """Tell whether a chat stream must end with OpenAI's separate usage chunk."""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _require_body(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ConversionError("body", "must be a JSON object")
    return body


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConversionError("model", "required string")
    return model


def _max_tokens(body: Mapping[str, Any], keys: Sequence[str]) -> int:
    """Return the first given output limit of `keys`, else the §12 default."""
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConversionError(key, "must be an integer")
        if value <= 0:
            raise ConversionError(key, "must be greater than 0")
        return value
    return DEFAULT_MAX_TOKENS


def _effort(raw: object, path: str, model: str) -> str | None:
    """Map an OpenAI reasoning effort to `output_config.effort` (spec 12.1, 12.2)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConversionError(path, "must be a string")
    effort = raw.strip().lower()
    # Ours: §3.16 reads "none" on a Claude model, and any unknown tier, as `high` — the
    # opposite of what "none" and "minimal" ask for. GPT models understand "none" (§3.16).
    if effort == "none" and not model.lower().startswith("gpt"):
        return None
    return "low" if effort == "minimal" else effort or None


def _session_user_id(prompt_cache_key: object, headers: Mapping[str, str] | None) -> str | None:
    """Find the client's session UUID (spec 12.1) as `metadata.user_id` (§3.15)."""
    candidates: list[object] = [prompt_cache_key]
    if headers:
        lowered = {str(key).lower(): value for key, value in headers.items()}
        # Ours: `session-id` too; proxies such as nginx drop headers with underscores.
        candidates += [lowered.get(name) for name in _SESSION_HEADERS]
    for candidate in candidates:
        if not isinstance(candidate, str):
            continue
        try:
            session = uuid.UUID(candidate.strip().removeprefix("session_"))
        except ValueError:
            continue
        return f"session_{session}"
    return None


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a message, merging with a previous message of the same role (§12.1)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(url: object) -> dict[str, Any]:
    """Turn a `data:<mime>;base64,<data>` URL into an image block, else a note (spec 12.1)."""
    if isinstance(url, Mapping):
        url = url.get("url")
    if not isinstance(url, str) or not url.startswith("data:"):
        return _text(IMAGE_OMITTED)
    header, comma, data = url[len("data:") :].partition(",")
    media_type, *params = header.split(";")
    if not comma or "base64" not in (param.strip().lower() for param in params):
        return _text(IMAGE_OMITTED)
    source = {"type": "base64", "media_type": media_type.strip().lower(), "data": data}
    return {"type": "image", "source": source}


def _content_blocks(content: object, path: str) -> list[dict[str, Any]]:
    """Convert message content (a string or typed parts) to Anthropic blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)] if content else []
    if not isinstance(content, list):
        raise ConversionError(path, "must be a string or a list of content parts")
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        part_path = f"{path}.{index}"
        if not isinstance(part, Mapping):
            raise ConversionError(part_path, "must be an object")
        kind = part.get("type")
        if not isinstance(kind, str):
            raise ConversionError(f"{part_path}.type", "must be a string")
        if kind in _TEXT_PARTS or kind == "refusal":
            key = "refusal" if kind == "refusal" else "text"
            text = part.get(key)
            if not isinstance(text, str):
                raise ConversionError(f"{part_path}.{key}", "must be a string")
            if text:
                blocks.append(_text(text))
        elif kind in ("image_url", "input_image"):
            blocks.append(_image(part.get("image_url")))
        elif kind in _UNSUPPORTED_PARTS:
            blocks.append(_text(_PART_OMITTED.format(kind=kind)))
        else:
            raise ConversionError(f"{part_path}.type", f"unsupported content part type {kind!r}")
    return blocks


def _system_texts(content: object, path: str) -> list[str]:
    """Collect the non-empty texts of a system/developer message."""
    return [block["text"] for block in _content_blocks(content, path) if block["type"] == "text"]


def _tool_result_content(content: object, path: str) -> str | list[dict[str, Any]]:
    """Return a tool output as a string, or as blocks when it carries images."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return _dumps(content)
    blocks = _content_blocks(content, path)
    if all(block["type"] == "text" for block in blocks):
        return "\n".join(block["text"] for block in blocks)
    return blocks


def _arguments(raw: object) -> dict[str, Any]:
    """Parse tool-call arguments into an input object; `{}` when they are not one (§12.1)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        if isinstance(parsed, dict):
            return parsed
    return {}


def _required_str(mapping: Mapping[str, Any], key: str, path: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise ConversionError(f"{path}.{key}", "required string")
    return value


def _schema(parameters: object, path: str) -> dict[str, Any]:
    if parameters is None:
        return copy.deepcopy(EMPTY_SCHEMA)
    if not isinstance(parameters, Mapping):
        raise ConversionError(path, "must be a JSON schema object")
    return dict(parameters)


def _function_tool(tool: Mapping[str, Any], path: str, name: str) -> dict[str, Any]:
    """Convert one function declaration; nested (chat) or flat (Responses) form."""
    nested = tool.get("function")
    spec = nested if isinstance(nested, Mapping) else tool
    spec_path = f"{path}.function" if isinstance(nested, Mapping) else path
    converted: dict[str, Any] = {"name": name}
    description = spec.get("description")
    if isinstance(description, str) and description:
        converted["description"] = description
    converted["input_schema"] = _schema(spec.get("parameters"), f"{spec_path}.parameters")
    return converted


def _function_name(tool: Mapping[str, Any], path: str) -> str:
    nested = tool.get("function")
    if isinstance(nested, Mapping):
        return _required_str(nested, "name", f"{path}.function")
    return _required_str(tool, "name", path)


def _tool_choice(raw: object, path: str) -> dict[str, Any] | None:
    """Convert tool_choice (ignored downstream, §12.1, except that `none` withholds tools)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        choices = {"auto": "auto", "required": "any", "none": "none"}
        if raw not in choices:
            raise ConversionError(path, "must be 'auto', 'required', 'none' or an object")
        return {"type": choices[raw]}
    if not isinstance(raw, Mapping):
        raise ConversionError(path, "must be a string or an object")
    kind = raw.get("type")
    if kind in ("function", "custom"):
        nested = raw.get(kind)
        spec = nested if isinstance(nested, Mapping) else raw
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ConversionError(f"{path}.name", "required string")
        namespace = raw.get("namespace")
        return {
            "type": "tool",
            "name": _flat(namespace if isinstance(namespace, str) else None, name),
        }
    # allowed_tools, hosted tools, mcp: let the model choose.
    return {"type": "auto"}


# --- chat completions: request ---------------------------------------------------------------


def chat_to_anthropic(
    body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Convert a Chat Completions request into a non-streaming Anthropic body (spec 12.1)."""
    body = _require_body(body)
    model = _model(body)
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
            system += _system_texts(_chat_content(message, path), f"{path}.content")
        elif role == "user":
            _append(turns, "user", _content_blocks(_chat_content(message, path), f"{path}.content"))
        elif role == "assistant":
            _append(turns, "assistant", _chat_assistant(message, path))
        elif role == "tool":
            _append(turns, "user", [_chat_tool_result(message, path)])
        else:
            raise ConversionError(
                f"{path}.role",
                f"must be 'system', 'developer', 'user', 'assistant' or 'tool', got {role!r}",
            )
    if not turns:
        raise ConversionError("messages", "must contain a user message")

    tools = _chat_tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), "tool_choice")
    return _anthropic_body(
        model=model,
        max_tokens=_max_tokens(body, ("max_completion_tokens", "max_tokens")),
        system=system,
        turns=turns,
        tools=tools,
        tool_choice=choice,
        effort=_effort(body.get("reasoning_effort"), "reasoning_effort", model),
        user_id=_session_user_id(body.get("prompt_cache_key"), headers),
    )


def _chat_content(message: Mapping[str, Any], path: str) -> object:
    if "content" not in message:
        raise ConversionError(f"{path}.content", "required")
    return message["content"]


def _chat_assistant(message: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    """Convert an assistant message: text, then its tool_calls as tool_use (spec 12.1)."""
    blocks = _content_blocks(message.get("content"), f"{path}.content")
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
        call_id = _required_str(call, "id", call_path)
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise ConversionError(f"{call_path}.function", "required object")
        name = _required_str(function, "name", f"{call_path}.function")
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": name,
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks


def _chat_tool_result(message: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Convert a `tool` message into a user tool_result (spec 12.1)."""
    tool_call_id = _required_str(message, "tool_call_id", path)
    content = _tool_result_content(message.get("content"), f"{path}.content")
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
        tools.append(_function_tool(tool, path, _function_name(tool, path)))
    return tools


def _anthropic_body(
    *,
    model: str,
    max_tokens: int,
    system: list[str],
    turns: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_choice: dict[str, Any] | None,
    effort: str | None,
    user_id: str | None,
) -> dict[str, Any]:
    """Assemble the inner Anthropic request, non-streaming (the view decides, spec 12)."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if system:
        body["system"] = [_text(text) for text in system]
    body["messages"] = turns
    # Ours: `none` withholds the tools; Kiro itself has no tool_choice.
    if tools and (tool_choice is None or tool_choice["type"] != "none"):
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    if effort:
        body["output_config"] = {"effort": effort}
    if user_id is not None:
        body["metadata"] = {"user_id": user_id}
    body["stream"] = False
    return body


# --- assembled Anthropic message, read once ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ToolCall:
    id: str
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class _Reply:
    """The parts of an assembled Anthropic message (assemble.assemble_result) we render."""

    text: str
    reasoning: str
    calls: tuple[_ToolCall, ...]
    searches: tuple[tuple[str, str], ...]  # (server tool id, query)
    stop_reason: str | None
    usage: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Mapping[str, Any]) -> _Reply:
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[_ToolCall] = []
        searches: list[tuple[str, str]] = []
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
            elif kind == "tool_use":
                call = _ToolCall(
                    str(block.get("id", "")), str(block.get("name", "")), block.get("input")
                )
                calls.append(call)
            elif kind == "server_tool_use" and block.get("name") == "web_search":
                # spec 11.5: searches the loop ran; shown as web_search_call items.
                tool_input = block.get("input")
                query = tool_input.get("query") if isinstance(tool_input, Mapping) else None
                searches.append((str(block.get("id", "")), query if isinstance(query, str) else ""))
        usage = message.get("usage")
        stop = message.get("stop_reason")
        return cls(
            text="".join(texts),
            reasoning="\n\n".join(part for part in reasoning if part),
            calls=tuple(calls),
            searches=tuple(searches),
            stop_reason=stop if isinstance(stop, str) else None,
            usage=usage if isinstance(usage, Mapping) else {},
        )


def _tokens(usage: Mapping[str, Any]) -> tuple[int, int, int]:
    """Return (prompt, completion, cache read); prompt counts cache writes and reads."""

    def number(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    read = number("cache_read_input_tokens")
    prompt = number("input_tokens") + number("cache_creation_input_tokens") + read
    return prompt, number("output_tokens"), read


def _credits(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Return the credit_* fields of the usage, if the upstream metered the request."""
    keys = ("credit_usage", "credit_unit", "credit_unit_plural")
    return {key: usage[key] for key in keys if key in usage}


def _arguments_json(value: Any) -> str:
    return _dumps(value if value is not None else {})


# --- chat completions: response --------------------------------------------------------------


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
    reply = _Reply.of(message)
    tool_calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": _arguments_json(call.input)},
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


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Render an Anthropic usage object as a chat completion's `usage`."""
    prompt, completion, read = _tokens(usage)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        **_credits(usage),
    }


# --- responses: request ----------------------------------------------------------------------


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


def _flat(namespace: str | None, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


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
        name = _function_name(entry, path)
        tool = _function_tool(entry, path, _flat(namespace, name))
    elif kind == "custom":
        name = _required_str(entry, "name", path)
        tool = {
            "name": _flat(namespace, name),
            "description": _custom_description(entry),
            "input_schema": copy.deepcopy(CUSTOM_TOOL_SCHEMA),
        }
    elif kind == "namespace":
        group = _required_str(entry, "name", path)
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
    body = _require_body(body)
    model = _model(body)
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
        _append(turns, "user", [_text(raw_input)] if raw_input else [])
    elif isinstance(raw_input, list):
        for index, item in enumerate(raw_input):
            _input_item(item, f"input.{index}", system, turns)
    else:
        raise ConversionError("input", "must be a string or a list of items")
    if not turns:
        raise ConversionError("input", "must contain a user message")

    table = tool_table(body)
    choice = _tool_choice(body.get("tool_choice"), "tool_choice")
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
    return _anthropic_body(
        model=model,
        max_tokens=_max_tokens(body, ("max_output_tokens",)),
        system=system,
        turns=turns,
        tools=tools,
        tool_choice=choice,
        effort=_effort((reasoning or {}).get("effort"), "reasoning.effort", model),
        user_id=_session_user_id(body.get("prompt_cache_key"), headers),
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
        name = _required_str(item, "name", path)
        namespace = item.get("namespace")
        if kind == "custom_tool_call":
            raw = item.get("input")
            tool_input: dict[str, Any] = {CUSTOM_INPUT_KEY: raw if isinstance(raw, str) else ""}
        else:
            tool_input = _arguments(item.get("arguments"))
        flat = _flat(namespace if isinstance(namespace, str) else None, name)
        block = {"type": "tool_use", "id": call_id, "name": flat, "input": tool_input}
        _append(turns, "assistant", [block])
    elif kind in _TOOL_OUTPUT_ITEMS:
        call_id = _required_str(item, "call_id", path)
        content = _tool_result_content(item.get("output"), f"{path}.output")
        _append(
            turns, "user", [{"type": "tool_result", "tool_use_id": call_id, "content": content}]
        )
    elif kind is None or kind == "message":
        role = item.get("role")
        content_path = f"{path}.content"
        if role in ("system", "developer"):
            system += _system_texts(item.get("content"), content_path)
        elif role in ("user", "assistant"):
            _append(turns, role, _content_blocks(item.get("content"), content_path))
        else:
            raise ConversionError(
                f"{path}.role",
                f"must be 'system', 'developer', 'user' or 'assistant', got {role!r}",
            )
    # Everything else — reasoning, web_search_call, compaction (spec 12.2), additional_tools
    # (read by _tool_entries), and item types newer than this code — carries no dialogue.


# --- responses: response ---------------------------------------------------------------------


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
    return _arguments_json(value)


def _output_items(reply: _Reply, table: ToolTable, status: str) -> list[dict[str, Any]]:
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
                "arguments": _arguments_json(call.input),
                "status": "completed",
            }
        if declared is not None and declared.namespace:
            item["namespace"] = declared.namespace
        items.append(item)
    return items


def responses_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Render an Anthropic usage object as a Responses `usage`."""
    prompt, completion, read = _tokens(usage)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": read},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
        **_credits(usage),
    }


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
    reply = _Reply.of(message)
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


class _Events:
    """Numbered Responses SSE events (`sequence_number` counts from `start`)."""

    __slots__ = ("_next", "parts")

    def __init__(self, start: int = 0) -> None:
        self._next = start
        self.parts: list[str] = []

    def add(self, kind: str, payload: Mapping[str, Any]) -> None:
        data = {"type": kind, "sequence_number": self._next, **payload}
        self._next += 1
        self.parts.append(sse.encode_text(kind, data))

    def to_bytes(self) -> bytes:
        return sse.to_bytes("".join(self.parts))


def responses_stream_head(
    *,
    model: str,
    request: Mapping[str, Any],
    response_id: str,
    created_at: int,
) -> bytes:
    """Return `response.created` + `response.in_progress`, sendable before the answer.

    Codex times out a silent stream; a view can send these at once, then the rest with
    `responses_stream_events(..., head=False)` (whose numbering continues at 2).
    """
    shell = response_shell(
        response_id=response_id, created_at=created_at, model=model, request=request
    )
    events = _Events()
    _head(events, shell)
    return events.to_bytes()


def _head(events: _Events, shell: Mapping[str, Any]) -> None:
    events.add("response.created", {"response": shell})
    events.add("response.in_progress", {"response": shell})


def responses_stream_events(
    message: Mapping[str, Any],
    *,
    model: str,
    request: Mapping[str, Any],
    response_id: str | None = None,
    created_at: int | None = None,
    head: bool = True,
) -> bytes:
    """Synthesize the Responses SSE stream of a finished message (spec 12.2)."""
    response = anthropic_to_responses(
        message, model=model, request=request, response_id=response_id, created_at=created_at
    )
    events = _Events(start=0 if head else 2)
    if head:
        shell = {**response, "status": "in_progress", "output": [], "usage": None}
        shell["incomplete_details"] = None
        _head(events, shell)
    for index, item in enumerate(response["output"]):
        _item_events(events, index, item)
    final = "response.completed" if response["status"] == "completed" else "response.incomplete"
    events.add(final, {"response": response})
    return events.to_bytes()


def _item_events(events: _Events, index: int, item: Mapping[str, Any]) -> None:
    """Emit added, the content events, and done for one output item (spec 12.2)."""
    kind = item["type"]
    where = {"item_id": item["id"], "output_index": index}
    if kind == "message":
        events.add(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "status": "in_progress", "content": []}},
        )
        part = item["content"][0]
        text = part["text"]
        empty_part = {**part, "text": ""}
        events.add("response.content_part.added", {**where, "content_index": 0, "part": empty_part})
        events.add(
            "response.output_text.delta",
            {**where, "content_index": 0, "delta": text, "logprobs": []},
        )
        events.add(
            "response.output_text.done",
            {**where, "content_index": 0, "text": text, "logprobs": []},
        )
        events.add("response.content_part.done", {**where, "content_index": 0, "part": part})
    elif kind == "reasoning":
        events.add(
            "response.output_item.added", {"output_index": index, "item": {**item, "summary": []}}
        )
        summary = item["summary"][0]
        text = summary["text"]
        at = {**where, "summary_index": 0}
        events.add(
            "response.reasoning_summary_part.added",
            {**at, "part": {"type": "summary_text", "text": ""}},
        )
        events.add("response.reasoning_summary_text.delta", {**at, "delta": text})
        events.add("response.reasoning_summary_text.done", {**at, "text": text})
        events.add("response.reasoning_summary_part.done", {**at, "part": summary})
    elif kind == "function_call":
        arguments = item["arguments"]
        events.add(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "arguments": "", "status": "in_progress"}},
        )
        events.add("response.function_call_arguments.delta", {**where, "delta": arguments})
        events.add(
            "response.function_call_arguments.done",
            {**where, "name": item["name"], "arguments": arguments},
        )
    elif kind == "custom_tool_call":
        tool_input = item["input"]
        events.add(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "input": "", "status": "in_progress"}},
        )
        events.add("response.custom_tool_call_input.delta", {**where, "delta": tool_input})
        events.add("response.custom_tool_call_input.done", {**where, "input": tool_input})
    else:  # web_search_call
        events.add(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "status": "in_progress"}},
        )
    events.add("response.output_item.done", {"output_index": index, "item": item})


def response_error(message: str, error_type: str) -> dict[str, Any]:
    """Build a failed response's `error`; the Anthropic error type becomes a code Codex acts
    on (retry, compaction)."""
    code = _RESPONSES_CODES.get(error_type, "server_error")
    if message in (CONTEXT_FULL.message, INPUT_TOO_LONG.message):
        code = "context_length_exceeded"
    return {"code": code, "message": message}


def responses_failed_event(
    *,
    message: str,
    error_type: str = "api_error",
    model: str,
    request: Mapping[str, Any],
    response_id: str,
    created_at: int,
    sequence_number: int = 2,
) -> bytes:
    """Return `response.failed` for a stream whose head was sent (number 2 follows it).

    `error_type` is the Anthropic error type; it becomes a code Codex acts on.
    """
    shell = response_shell(
        response_id=response_id, created_at=created_at, model=model, request=request
    )
    shell["status"] = "failed"
    shell["error"] = response_error(message, error_type)
    events = _Events(start=sequence_number)
    events.add("response.failed", {"response": shell})
    return events.to_bytes()
