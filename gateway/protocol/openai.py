"""Translate OpenAI Chat Completions and Responses traffic to Anthropic and back (spec §12).

Both endpoints run an Anthropic request through the normal `/v1/messages` path (§3-§11).
A non-streaming answer is the finished message, translated back. A stream is rendered live
from the Kiro events by gateway/protocol/openai_stream.py; only Responses answers of the
web-search loop (§11.5), which is not live, get their events synthesized from the finished
message, as Z does for every stream (§12). Pure: dicts in, dicts and bytes out.

This module holds the errors in OpenAI's shape and what both endpoints share: the request
helpers that build the inner Anthropic body from OpenAI parts (content, tools, tool_choice,
`anthropic_body`) and `Reply`, the finished Anthropic message read once, with its usage in
either API's shape. The endpoints themselves: gateway/protocol/openai_chat.py (Chat
Completions, §12.1), gateway/protocol/openai_responses.py (Responses, §12.2) and
gateway/protocol/openai_responses_events.py (the synthesized Responses events).

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
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.protocol import errors
from gateway.protocol.classify import CONTEXT_FULL, INPUT_TOO_LONG
from gateway.protocol.models import ConversionError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "anthropic_error_to_openai",
    "chat_usage",
    "client_wants_stream",
    "conversion_error_body",
    "openai_error",
    "responses_usage",
]

#: spec 12.1 / 12.2: the output budget when the client names none.
DEFAULT_MAX_TOKENS: Final = 32_000
#: spec 12.2: namespace and tool name are joined this way (Anthropic names allow no `.`).
NAMESPACE_SEPARATOR: Final = "__"
EMPTY_SCHEMA: Final[dict[str, Any]] = {"type": "object", "properties": {}}
IMAGE_OMITTED: Final = "[image omitted: only base64 data: URLs are supported by this gateway]"
_PART_OMITTED: Final = "[{kind} omitted: not supported by this gateway]"
_TEXT_PARTS: Final = frozenset({"text", "input_text", "output_text"})
_UNSUPPORTED_PARTS: Final = frozenset({"file", "input_file", "input_audio", "audio"})
# spec 12.1: headers that may carry the client's session id, in order.
_SESSION_HEADERS: Final = ("x-session-affinity", "x-client-request-id", "session_id", "session-id")
#: Anthropic stop reasons that mean the answer was cut (chat `length`, Responses incomplete).
LENGTH_STOPS: Final = frozenset({"max_tokens", "model_context_window_exceeded"})

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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


def require_body(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ConversionError("body", "must be a JSON object")
    return body


def request_model(body: Mapping[str, Any]) -> str:
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


def append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a message, merging with a previous message of the same role (§12.1)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(url: object) -> dict[str, Any]:
    """Turn a `data:<mime>;base64,<data>` URL into an image block, else a note (spec 12.1)."""
    if isinstance(url, Mapping):
        url = url.get("url")
    if not isinstance(url, str) or not url.startswith("data:"):
        return text_block(IMAGE_OMITTED)
    header, comma, data = url[len("data:") :].partition(",")
    media_type, *params = header.split(";")
    if not comma or "base64" not in (param.strip().lower() for param in params):
        return text_block(IMAGE_OMITTED)
    source = {"type": "base64", "media_type": media_type.strip().lower(), "data": data}
    return {"type": "image", "source": source}


def content_blocks(content: object, path: str) -> list[dict[str, Any]]:
    """Convert message content (a string or typed parts) to Anthropic blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_block(content)] if content else []
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
                blocks.append(text_block(text))
        elif kind in ("image_url", "input_image"):
            blocks.append(_image(part.get("image_url")))
        elif kind in _UNSUPPORTED_PARTS:
            blocks.append(text_block(_PART_OMITTED.format(kind=kind)))
        else:
            raise ConversionError(f"{part_path}.type", f"unsupported content part type {kind!r}")
    return blocks


def system_texts(content: object, path: str) -> list[str]:
    """Collect the non-empty texts of a system/developer message."""
    return [block["text"] for block in content_blocks(content, path) if block["type"] == "text"]


def tool_result_content(content: object, path: str) -> str | list[dict[str, Any]]:
    """Return a tool output as a string, or as blocks when it carries images."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return _dumps(content)
    blocks = content_blocks(content, path)
    if all(block["type"] == "text" for block in blocks):
        return "\n".join(block["text"] for block in blocks)
    return blocks


def tool_arguments(raw: object) -> dict[str, Any]:
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


def required_str(mapping: Mapping[str, Any], key: str, path: str) -> str:
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


def function_tool(tool: Mapping[str, Any], path: str, name: str) -> dict[str, Any]:
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


def function_name(tool: Mapping[str, Any], path: str) -> str:
    nested = tool.get("function")
    if isinstance(nested, Mapping):
        return required_str(nested, "name", f"{path}.function")
    return required_str(tool, "name", path)


def flat_tool_name(namespace: str | None, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def convert_tool_choice(raw: object, path: str) -> dict[str, Any] | None:
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
            "name": flat_tool_name(namespace if isinstance(namespace, str) else None, name),
        }
    # allowed_tools, hosted tools, mcp: let the model choose.
    return {"type": "auto"}


def anthropic_body(
    request: Mapping[str, Any],
    *,
    model: str,
    max_tokens_keys: Sequence[str],
    system: list[str],
    turns: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_choice: dict[str, Any] | None,
    raw_effort: object,
    effort_path: str,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Assemble the inner Anthropic request, non-streaming (the view decides, spec 12).

    From the client's `request` it reads, in this order, the output limit (the first of
    `max_tokens_keys` given), the reasoning effort (`raw_effort`, found at `effort_path`) and
    the session id."""
    max_tokens = _max_tokens(request, max_tokens_keys)
    effort = _effort(raw_effort, effort_path, model)
    user_id = _session_user_id(request.get("prompt_cache_key"), headers)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if system:
        body["system"] = [text_block(text) for text in system]
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


# --- the assembled Anthropic message, read once -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _ToolCall:
    id: str
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class Reply:
    """The parts of an assembled Anthropic message (assemble.assemble_result) we render."""

    text: str
    reasoning: str
    calls: tuple[_ToolCall, ...]
    searches: tuple[tuple[str, str], ...]  # (server tool id, query)
    stop_reason: str | None
    usage: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Mapping[str, Any]) -> Reply:
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


def arguments_json(value: Any) -> str:
    """Render a tool call's input as compact JSON (`{}` when it has none)."""
    return _dumps(value if value is not None else {})


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
