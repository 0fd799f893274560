"""Assemble the non-stream Anthropic message from a complete upstream answer (spec §6.13).

The assembler is a thin subclass of `translate_machine.Machine` that collects the blocks the
machine decides instead of streaming them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from gateway.protocol.errors import AnthropicType, ErrorType, UpstreamFailure
from gateway.protocol.events import KiroEvent
from gateway.protocol.tokens import count_tokens
from gateway.protocol.translate import TranslateOptions, TranslationResult
from gateway.protocol.translate_machine import (
    REDACTED_THINKING_TOKENS,
    THINKING_SIGNATURE_PLACEHOLDER,
    Machine,
)

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


class _Assembler(Machine):
    """Collect the blocks of a non-stream response (spec §6.13)."""

    __slots__ = ("_redacted", "_texts", "_thinking_parts", "_thinking_signature", "_tool_blocks")

    def __init__(self, options: TranslateOptions) -> None:
        super().__init__(options, split_thinking=options.thinking and options.extract_thinking)
        self.begin()
        self._texts: list[str] = []
        self._thinking_parts: list[str] = []
        self._thinking_signature: str | None = None
        self._redacted: list[str] = []
        self._tool_blocks: list[dict[str, Any]] = []

    def on_text(self, text: str) -> None:
        self._texts.append(text)

    def on_open_thinking(self) -> None:
        self._thinking_block = True

    def on_thinking(self, text: str) -> None:
        self._thinking_block = True
        self._thinking_parts.append(text)

    def on_close_thinking(self, signature: str) -> None:
        if self._thinking_signature is None or signature != THINKING_SIGNATURE_PLACEHOLDER:
            self._thinking_signature = signature

    def on_close_text(self) -> None:
        pass

    def on_tool(self, tool_id: str, name: str, input_json: str) -> None:
        self._tool_blocks.append(
            {"type": "tool_use", "id": tool_id, "name": name, "input": _loads(input_json)}
        )

    def on_redacted(self, data: str) -> None:
        self._redacted.append(data)

    def on_failed(self, kind: str, message: str) -> None:
        pass

    def _output_estimate(self) -> int:
        # spec 6.10: non-stream output is counted on the final content, minimum 1
        total = count_tokens("".join(self._texts)) + count_tokens("".join(self._thinking_parts))
        total += sum(count_tokens(_compact(block["input"])) for block in self._tool_blocks)
        total += REDACTED_THINKING_TOKENS * len(self._redacted)
        return max(total, 1)

    def message(self) -> dict[str, Any]:
        """Finish and return the message; raise `UpstreamFailure` if the answer broke."""
        self.settle(thinking_only_rule=False)
        if self.failed:
            # spec 6.13: Z answers a cut tool call with its own type `upstream_tool_json_error`,
            # which no SDK knows; the client gets `api_error`, the record `tool_json_cut`.
            raise UpstreamFailure(
                self._error_kind or AnthropicType.API,
                self._error_message or "Upstream failed",
                kind=ErrorType(self._error_type or ErrorType.UPSTREAM_EXCEPTION),
            )
        content: list[dict[str, Any]] = []
        if self._thinking_block:
            content.append(
                {
                    "type": "thinking",
                    "thinking": "".join(self._thinking_parts),
                    "signature": self._thinking_signature or THINKING_SIGNATURE_PLACEHOLDER,
                }
            )
        content.extend({"type": "redacted_thinking", "data": data} for data in self._redacted)
        text = "".join(self._texts)
        if self._sanitizer is not None:
            text = text.strip()  # spec 6.13 (Z): leak-stripped and trimmed
        if text:
            content.append({"type": "text", "text": text})
        content.extend(self._tool_blocks)
        opts = self._opts
        return {
            "id": opts.message_id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": opts.model,
            "stop_reason": self._stop_reason,
            "stop_sequence": None,
            "usage": self.usage_dict(),
        }


def assemble_message(events: Iterable[KiroEvent], options: TranslateOptions) -> dict[str, Any]:
    """Build the non-stream Anthropic message from a complete upstream answer (spec §6.13).

    Raises `UpstreamFailure` (502) when the answer is broken — an upstream error frame, or a
    tool call without a valid JSON object input — rather than returning a partial success.
    A caller whose upstream read failed must not call this at all.
    """
    assembler = _Assembler(options)
    assembler.consume(events)
    return assembler.message()


def assemble_result(
    events: Iterable[KiroEvent], options: TranslateOptions
) -> tuple[dict[str, Any] | None, TranslationResult, UpstreamFailure | None]:
    """Like `assemble_message`, but also return the usage summary (even on failure)."""
    assembler = _Assembler(options)
    assembler.consume(events)
    try:
        message = assembler.message()
    except UpstreamFailure as failure:
        return None, assembler.result, failure
    return message, assembler.result, None
