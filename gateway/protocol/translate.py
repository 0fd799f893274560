"""Translate Kiro events into Anthropic Messages SSE or JSON (spec kiro-protocol §6): what a
translation takes and what it gives.

`TranslateOptions` are the per-request facts, `TranslationResult` what the caller records once
the answer is over, and `Renderer` the interface `dispatch.relay` drives for a streamed answer.
The translation itself:

* gateway/protocol/translate_machine.py: `Machine`, the one state machine that decides blocks,
  thinking, tools, stop reason and usage (and where we follow Z or go beyond both proxies);
* gateway/protocol/anthropic_stream.py: `StreamTranslator`, its Anthropic SSE renderer;
* gateway/protocol/assemble.py: `assemble_message` / `assemble_result`, the non-stream JSON
  message (§6.13);
* gateway/protocol/sanitize.py: the text sanitizers the machine runs text through (§6.7);
* gateway/protocol/openai_stream.py: the OpenAI stream renderers (§12).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.protocol.errors import ErrorType
from gateway.protocol.events import KiroEvent
from gateway.protocol.tokens import CacheEstimate


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    """The per-request facts the translation needs.

    `tool_names` maps upstream tool names to the client's (shortened → original, §3.12; Kiro
    built-in → client name in Z's Claude Code mode, §3.13). `declared_tools` are the client's
    tool names; when empty, `<invoke>` reclamation is off. `restore_tool_input` rewrites a
    parsed tool input back to the client's shape (§3.13), given the upstream tool name.
    `extract_thinking` applies to `assemble_message` only (§6.13). `reasoning` renders native
    reasoning as thinking even when the request asked for no thinking (an OpenAI client that
    set a reasoning effort, §12); without it, such reasoning is text (§6.6).
    """

    model: str
    message_id: str
    thinking: bool = False
    input_tokens: int = 1
    context_window: int = 200_000
    tool_names: Mapping[str, str] = field(default_factory=dict)
    declared_tools: frozenset[str] = frozenset()
    cc_mode: bool = False
    emit_credits: bool = True
    cache: CacheEstimate | None = None
    sanitize: bool = True
    extract_thinking: bool = True
    restore_tool_input: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
    reasoning: bool = False


@dataclass(frozen=True, slots=True)
class TranslationResult:
    """What the caller records once the response is over (or broke)."""

    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    credits: float
    metered: bool
    tool_calls: int
    produced_output: bool
    finished: bool
    had_error: bool
    error_type: str | None = None
    error_message: str | None = None


def new_message_id() -> str:
    """Return a fresh `msg_<32 hex>` id (spec §6.2)."""
    return f"msg_{uuid.uuid4().hex}"


class Renderer(Protocol):
    """A streaming renderer of one answer, as `dispatch.relay` drives it.

    `start()` once (the head the client gets as soon as the upstream answered), `feed()` per
    upstream read (one bytes object each, PERF-NOTES), then `finish()` at the end of the
    upstream body, or `fail()` when it broke; `ping()` between reads keeps the client waiting.
    `failed` turns true when the answer ended in error; `summary()` is what gets recorded.
    """

    @property
    def failed(self) -> bool: ...

    def start(self) -> bytes: ...

    def feed(self, events: Iterable[KiroEvent]) -> bytes: ...

    def finish(self) -> bytes: ...

    def fail(self, kind: str, message: str, error_type: ErrorType) -> bytes: ...

    def ping(self) -> bytes: ...

    def summary(self) -> TranslationResult: ...
