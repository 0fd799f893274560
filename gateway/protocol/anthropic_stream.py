"""Render Kiro events as Anthropic Messages SSE (spec kiro-protocol §6.1-§6.12).

`StreamTranslator` is the `translate.Renderer` of `/v1/messages`: a thin subclass of
`translate_machine.Machine` that writes the machine's blocks as SSE text and hands out one
bytes object per upstream read (PERF-NOTES).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

from gateway.protocol import sse
from gateway.protocol.errors import ErrorType
from gateway.protocol.events import KiroEvent
from gateway.protocol.translate import TranslateOptions
from gateway.protocol.translate_machine import Machine

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_json_str = sse.json_string

# Block kinds.
_NONE: Final = 0
_TEXT_BLOCK: Final = 1
_THINKING_BLOCK: Final = 2

_BLOCK_START: Final = "event: content_block_start\ndata: "
_DELTA_HEAD: Final = 'event: content_block_delta\ndata: {"delta":{'
_TEXT_DELTA_HEAD: Final = _DELTA_HEAD + '"text":'


def _delta_tail(kind: str, index: int) -> str:
    return f',"type":"{kind}"}},"index":{index},"type":"content_block_delta"}}\n\n'


def _block_stop(index: int) -> str:
    return f'event: content_block_stop\ndata: {{"index":{index},"type":"content_block_stop"}}\n\n'


class StreamTranslator(Machine):
    """Render Kiro events as Anthropic SSE, one bytes object per upstream read.

    Call `start()` once, `feed()` per upstream read, then `finish()` — or `fail()` when the
    upstream breaks. In `cc_mode` (/cc/v1, §6.11) everything is held back until `finish()`,
    so that `message_start` carries the final input tokens; the caller sends `ping()`s
    meanwhile.
    """

    __slots__ = ("_buffer", "_index", "_open_index", "_open_kind", "_tail")

    def __init__(self, options: TranslateOptions) -> None:
        super().__init__(options, split_thinking=options.thinking)
        self._buffer: list[str] = []
        self._index = 0
        self._open_kind = _NONE
        self._open_index = -1
        self._tail = ""

    @staticmethod
    def ping() -> bytes:
        """Return the keep-alive event (spec §6.1)."""
        return sse.PING

    def start(self) -> bytes:
        """Open the message: `message_start` and, without thinking, text block 0 (§6.2-6.3)."""
        if not self.begin():
            return b""
        if not self._opts.cc_mode:
            self._buffer.append(self._message_start(self._opts.input_tokens, 0, 0))
        if not self._opts.thinking:
            self._open_text()  # spec 6.3: block 0 exists even for a pure tool call
        return self._drain()

    def feed(self, events: Iterable[KiroEvent]) -> bytes:
        """Translate the events of one upstream read into one SSE chunk."""
        prefix = self.start() if self.fresh else b""
        self.consume(events)
        return prefix + self._drain() if prefix else self._drain()

    def finish(self) -> bytes:
        """End the message after the upstream body ended normally (spec §6.8)."""
        if self.fresh:
            self.start()
        if not self.open:
            return self._drain()
        self.settle(thinking_only_rule=True)
        if not self.finished:
            return self._drain()
        self._close_open()
        out = self._buffer
        out.append(
            "event: message_delta\ndata: "
            + sse.dumps(
                {
                    "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                    "type": "message_delta",
                    "usage": self.usage_dict(),
                }
            )
            + '\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
        )
        if self._opts.cc_mode:
            uncached, _, creation, read = self._usage()
            out.insert(0, self._message_start(uncached, creation, read))
        return self._flush()

    def fail(self, kind: str, message: str, error_type: ErrorType) -> bytes:
        """End the stream with an Anthropic `error` event after an upstream break (§6.12);
        `kind` is the client's Anthropic type, `error_type` the record's."""
        self.begin()  # a failure before the start fails the answer all the same
        if not self.open:
            return b""
        self._fail(kind, message, error_type)
        return self._drain()

    # -- internals -------------------------------------------------------------------------

    def _drain(self) -> bytes:
        if self._opts.cc_mode and not self.failed:
            return b""  # spec 6.11: held until finish
        return self._flush()

    def _flush(self) -> bytes:
        return sse.flush(self._buffer)

    def _message_start(self, input_tokens: int, creation: int, read: int) -> str:
        opts = self._opts
        return sse.encode_text(
            "message_start",
            {
                "message": {
                    "content": [],
                    "id": opts.message_id,
                    "model": opts.model,
                    "role": "assistant",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "type": "message",
                    "usage": {
                        "cache_creation_input_tokens": creation,
                        "cache_read_input_tokens": read,
                        "input_tokens": input_tokens,
                        "output_tokens": 1,
                    },
                },
                "type": "message_start",
            },
        )

    def _new_block(self, content_block: str) -> int:
        index = self._index
        self._index = index + 1
        self._buffer.append(
            f'{_BLOCK_START}{{"content_block":{content_block},"index":{index},'
            '"type":"content_block_start"}\n\n'
        )
        return index

    def _open_text(self) -> None:
        self._close_open()
        index = self._new_block('{"text":"","type":"text"}')
        self._open_kind = _TEXT_BLOCK
        self._open_index = index
        self._tail = _delta_tail("text_delta", index)

    def _close_open(self) -> None:
        if self._open_kind != _NONE:
            self._buffer.append(_block_stop(self._open_index))
            self._open_kind = _NONE

    def on_text(self, text: str) -> None:
        if self._open_kind != _TEXT_BLOCK:
            self._open_text()
        self._non_thinking_block = True
        self.produced = True
        self._buffer.append(f"{_TEXT_DELTA_HEAD}{_json_str(text)}{self._tail}")

    def on_close_text(self) -> None:
        if self._open_kind == _TEXT_BLOCK:
            self._close_open()

    def on_open_thinking(self) -> None:
        self._close_open()
        index = self._new_block('{"thinking":"","type":"thinking"}')
        self._open_kind = _THINKING_BLOCK
        self._open_index = index
        self._tail = _delta_tail("thinking_delta", index)
        self._thinking_block = True

    def on_thinking(self, text: str) -> None:
        if self._open_kind != _THINKING_BLOCK:
            self.on_open_thinking()
        self.produced = True
        self._buffer.append(f'{_DELTA_HEAD}"thinking":{_json_str(text)}{self._tail}')

    def on_close_thinking(self, signature: str) -> None:
        if self._open_kind != _THINKING_BLOCK:
            return
        index = self._open_index
        # spec 6.5 (Z): an empty thinking_delta, then the signature, then the stop
        signature_tail = _delta_tail("signature_delta", index)
        self._buffer.append(
            f'{_DELTA_HEAD}"thinking":""{self._tail}'
            f'{_DELTA_HEAD}"signature":{_json_str(signature)}{signature_tail}'
        )
        self._close_open()

    def on_tool(self, tool_id: str, name: str, input_json: str) -> None:
        self._close_open()
        block = _compact({"id": tool_id, "input": {}, "name": name, "type": "tool_use"})
        index = self._new_block(block)
        self.produced = True
        self._buffer.append(
            f'{_DELTA_HEAD}"partial_json":{_json_str(input_json)}'
            f"{_delta_tail('input_json_delta', index)}{_block_stop(index)}"
        )

    def on_redacted(self, data: str) -> None:
        self._close_open()
        index = self._new_block(_compact({"data": data, "type": "redacted_thinking"}))
        self.produced = True
        self._buffer.append(_block_stop(index))

    def on_failed(self, kind: str, message: str) -> None:
        buffer = self._buffer
        if self._opts.cc_mode:
            buffer.clear()  # nothing was sent but pings: the error is the whole answer
        buffer.append(
            sse.encode_text("error", {"error": {"message": message, "type": kind}, "type": "error"})
        )
