"""Typed Kiro events decoded from event-stream messages (spec kiro-protocol §4.7, §5).

Pure data: no Django, no I/O. `eventstream.Message` -> `parse_message()` -> one of the
frozen dataclasses below (or None for frames the proxies drop).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Protocol


class _MessageLike(Protocol):
    @property
    def message_type(self) -> str: ...
    @property
    def event_type(self) -> str | None: ...
    @property
    def exception_type(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class AssistantResponse:
    content: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    name: str
    tool_use_id: str
    input: str
    stop: bool


@dataclass(frozen=True, slots=True)
class ContextUsage:
    percentage: float


@dataclass(frozen=True, slots=True)
class Metering:
    unit: str
    unit_plural: str
    usage: float


@dataclass(frozen=True, slots=True)
class TokenUsage:
    uncached_input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int


@dataclass(frozen=True, slots=True)
class Metadata:
    token_usage: TokenUsage | None


@dataclass(frozen=True, slots=True)
class Reasoning:
    text: str | None
    signature: str | None
    redacted_content: str | None


@dataclass(frozen=True, slots=True)
class UpstreamException:
    """An `exception` frame; only ContentLengthExceededException has an effect (§6.9)."""

    exception_type: str
    message: str


@dataclass(frozen=True, slots=True)
class UpstreamError:
    """An `error` frame (§4.7): logged, and a reason to end the stream with an error."""

    code: str
    message: str


KiroEvent = (
    AssistantResponse
    | ToolUse
    | ContextUsage
    | Metering
    | Metadata
    | Reasoning
    | UpstreamException
    | UpstreamError
)


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", errors="replace")


def _number(value: Any) -> float | int | None:
    """Return a finite JSON number, else None.

    json.loads accepts NaN, Infinity and 1e400 (-> inf); int() of those raises, so they must
    not reach the arithmetic downstream.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _int(value: Any) -> int:
    """Coerce a token count; negatives clamp to 0 (spec §5 metadataEvent)."""
    number = _number(value)
    return 0 if number is None else max(0, int(number))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


_raw_decode = json.JSONDecoder().raw_decode


def _load_json(payload: bytes) -> Any:
    """Parse a frame payload; raw_decode on str is ~3x cheaper than json.loads(bytes),
    which matters at 100k events/s. Anything unusual takes the strict path."""
    text = payload.decode("utf-8")  # invalid UTF-8 raises ValueError: the frame is dropped
    try:
        data, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace and the like; raises if truly invalid
    if end != len(text) and text[end:].strip():
        raise ValueError("trailing data after the JSON value")
    return data


def _parse_event(event_type: str | None, payload: bytes) -> KiroEvent | None:
    if event_type not in _EVENT_PARSERS:
        return None  # spec §4.7: unknown event types are ignored
    try:
        data = _load_json(payload)
    except (ValueError, RecursionError):
        return None  # spec §4.7: a payload that fails to parse drops the frame
    if not isinstance(data, dict):
        return None
    return _EVENT_PARSERS[event_type](data)


def _assistant(data: dict[str, Any]) -> KiroEvent | None:
    content = data.get("content", "")
    return AssistantResponse(content if isinstance(content, str) else "")


def _tool_use(data: dict[str, Any]) -> KiroEvent | None:
    name, tool_use_id = data.get("name"), data.get("toolUseId")
    if not isinstance(name, str) or not isinstance(tool_use_id, str):
        return None  # spec §5: name and toolUseId are required
    raw_input = data.get("input", "")
    if isinstance(raw_input, dict | list):
        raw_input = json.dumps(raw_input, ensure_ascii=False)
    return ToolUse(
        name=name,
        tool_use_id=tool_use_id,
        input=raw_input if isinstance(raw_input, str) else "",
        stop=data.get("stop") is True,
    )


def _context_usage(data: dict[str, Any]) -> KiroEvent | None:
    value = _number(data.get("contextUsagePercentage", 0))
    return ContextUsage(float(value or 0))


def _metering(data: dict[str, Any]) -> KiroEvent | None:
    usage = _number(data.get("usage", 0.0))
    return Metering(
        unit=_str_or_none(data.get("unit")) or "credit",
        unit_plural=_str_or_none(data.get("unitPlural")) or "credits",
        usage=float(usage or 0),
    )


def _metadata(data: dict[str, Any]) -> KiroEvent | None:
    raw = data.get("tokenUsage")
    if not isinstance(raw, dict):
        return Metadata(token_usage=None)
    return Metadata(
        token_usage=TokenUsage(
            uncached_input_tokens=_int(raw.get("uncachedInputTokens", 0)),
            output_tokens=_int(raw.get("outputTokens", 0)),
            cache_read_input_tokens=_int(raw.get("cacheReadInputTokens", 0)),
            cache_write_input_tokens=_int(raw.get("cacheWriteInputTokens", 0)),
        )
    )


def _reasoning(data: dict[str, Any]) -> KiroEvent | None:
    return Reasoning(
        text=_str_or_none(data.get("text")),
        signature=_str_or_none(data.get("signature")),
        redacted_content=_str_or_none(data.get("redactedContent")),
    )


_EVENT_PARSERS = {
    "assistantResponseEvent": _assistant,
    "toolUseEvent": _tool_use,
    "contextUsageEvent": _context_usage,
    "meteringEvent": _metering,
    "metadataEvent": _metadata,
    "reasoningContentEvent": _reasoning,
}


def parse_message(message: _MessageLike) -> KiroEvent | None:
    """Map one decoded frame to a typed event, or None when the proxies drop it (§4.7)."""
    kind = message.message_type
    if kind == "event":
        return _parse_event(message.event_type, message.payload)
    if kind == "exception":
        return UpstreamException(
            exception_type=message.exception_type or "UnknownException",
            message=_exception_text(message.payload),
        )
    if kind == "error":
        return UpstreamError(
            code=message.error_code or "UnknownError", message=_text(message.payload)
        )
    return None


def _exception_text(payload: bytes) -> str:
    text = _text(payload)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"]
    return text
