"""Render Kiro events live as OpenAI streams (spec kiro-protocol §12, §6).

Two subclasses of `translate_machine.Machine` (through a common base here), so that blocks,
tools, stop reason, usage and failures are decided exactly as on `/v1/messages`; only the
rendering differs. Both offer the `translate.Renderer` interface that `dispatch.relay` drives,
and translate what one upstream read delivered into one bytes object (PERF-NOTES).

* `ChatStream`: `chat.completion.chunk`s. A role chunk first; `content` deltas as text
  arrives; `reasoning_content` deltas for thinking (the machine only thinks when the request
  asked for reasoning); a tool call, once its input is complete JSON (§6.4), as one delta with
  id and name and one with the whole `function.arguments`; a finish chunk; OpenAI's
  `choices: []` usage chunk when `stream_options.include_usage` asked for it (otherwise the
  usage rides on the finish chunk, as in Z); `data: [DONE]`.
* `ResponsesStream`: the Responses event sequence with `sequence_number`s from 0:
  `response.created`, `response.in_progress`, then per output item `output_item.added`, its
  content events and `output_item.done` (`message`: `content_part.added`,
  `output_text.delta`…, `output_text.done`, `content_part.done`; `reasoning`: the
  `reasoning_summary_*` events; `function_call`: `function_call_arguments.delta` / `.done`;
  free-text tools: `custom_tool_call_input.delta` / `.done`), and `response.completed`
  (`response.incomplete` when the output was cut) carrying every item and the usage.

A failure after the head was sent (an upstream error frame, a broken body, a cut tool call,
§6.12) ends the stream with an error, never a normal finish: chat sends a chunk with an
`error` object, on which the openai SDK raises, and no `[DONE]`; Responses sends
`response.failed`, which Codex reports (and retries for the codes it knows). Keep-alives are
SSE comments, which every client ignores.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from gateway.protocol import sse
from gateway.protocol.errors import ErrorType
from gateway.protocol.events import KiroEvent
from gateway.protocol.openai import anthropic_error_to_openai, chat_usage, responses_usage
from gateway.protocol.openai_chat import finish_reason
from gateway.protocol.openai_responses import (
    NOOP_TOOL,
    custom_input,
    item_id,
    response_error,
    response_shell,
    responses_status,
    tool_table,
)
from gateway.protocol.translate import TranslateOptions
from gateway.protocol.translate_machine import Machine

__all__ = ["KEEP_ALIVE", "ChatStream", "ResponsesStream"]

#: An SSE comment: keeps the connection busy while the upstream is silent.
KEEP_ALIVE: Final = b": keep-alive\n\n"
_DONE: Final = "data: [DONE]\n\n"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_json_str = sse.json_string


class _OpenAIStream(Machine):
    """What both OpenAI renderers share: the SSE text collected per upstream read, the
    keep-alive, and the `translate.Renderer` steps around the machine. A subclass renders its
    head in `start()` and the normal end in `_end()`."""

    __slots__ = ("_buffer",)

    def __init__(self, options: TranslateOptions) -> None:
        super().__init__(options, split_thinking=options.thinking)
        self._buffer: list[str] = []

    @staticmethod
    def ping() -> bytes:
        """Return the keep-alive (an SSE comment)."""
        return KEEP_ALIVE

    def start(self) -> bytes:
        """Open the stream (the subclass's head)."""
        raise NotImplementedError

    def feed(self, events: Iterable[KiroEvent]) -> bytes:
        """Translate the events of one upstream read into one chunk of SSE."""
        prefix = self.start() if self.fresh else b""
        self.consume(events)
        return prefix + self._flush() if prefix else self._flush()

    def finish(self) -> bytes:
        """End the stream after the upstream body ended (`_end()` renders the normal end)."""
        prefix = self.start() if self.fresh else b""
        if not self.open:
            return prefix + self._flush()
        self.settle(thinking_only_rule=False)  # may fail: a cut tool call (§6.4)
        if self.finished:
            self._end()
        return prefix + self._flush()

    def fail(self, kind: str, message: str, error_type: ErrorType) -> bytes:
        """End the stream with an error after an upstream break (§6.12): `on_failed` renders
        it (chat: an error chunk; Responses: `response.failed`)."""
        prefix = self.start() if self.fresh else b""
        if self.open:
            self.abort(kind, message, error_type)
        return prefix + self._flush()

    def _end(self) -> None:
        """Render the normal end of the answer after `settle()` finished it."""
        raise NotImplementedError

    def _flush(self) -> bytes:
        return sse.flush(self._buffer)


class ChatStream(_OpenAIStream):
    """Render Kiro events as `chat.completion.chunk`s, one bytes object per upstream read."""

    __slots__ = ("_calls", "_chunk_head", "_chunk_tail", "_include_usage", "_shell")

    def __init__(
        self, options: TranslateOptions, *, completion_id: str, created: int, include_usage: bool
    ) -> None:
        super().__init__(options)
        self._calls = 0
        self._include_usage = include_usage
        shell = _dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": options.model,
            }
        )
        self._shell = "data: " + shell[:-1]  # the chunk's fields before `choices`
        self._chunk_head = self._shell + ',"choices":[{"index":0,"delta":'
        self._chunk_tail = ',"logprobs":null,"finish_reason":null}]}\n\n'

    def start(self) -> bytes:
        """Open the stream with the role chunk."""
        if not self.begin():
            return b""
        return sse.to_bytes(self._delta('{"role":"assistant","content":""}'))

    def _end(self) -> None:
        """The finish chunk, the usage and `[DONE]`."""
        reason = finish_reason(self.stop_reason, has_calls=self._calls > 0)
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        end = f'{self._shell},"choices":[{_dumps(choice)}]'
        usage = _dumps(chat_usage(self.usage_dict()))
        if self._include_usage:  # OpenAI's shape: a last chunk without choices
            self._buffer.append(f'{end}}}\n\n{self._shell},"choices":[],"usage":{usage}}}\n\n')
        else:  # Z: the usage rides on the finish chunk
            self._buffer.append(f'{end},"usage":{usage}}}\n\n')
        self._buffer.append(_DONE)

    # -- hooks -----------------------------------------------------------------------------

    def on_text(self, text: str) -> None:
        self.produced = True
        self._buffer.append(f'{self._chunk_head}{{"content":{_json_str(text)}}}{self._chunk_tail}')

    def on_open_thinking(self) -> None:
        pass

    def on_thinking(self, text: str) -> None:
        self.produced = True
        self._buffer.append(
            f'{self._chunk_head}{{"reasoning_content":{_json_str(text)}}}{self._chunk_tail}'
        )

    def on_close_thinking(self, signature: str) -> None:
        pass

    def on_close_text(self) -> None:
        pass

    def on_tool(self, tool_id: str, name: str, input_json: str) -> None:
        index = self._calls
        self._calls = index + 1
        self.produced = True
        call = {"index": index, "id": tool_id, "type": "function"}
        head = {"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]}
        arguments = f'{{"tool_calls":[{{"index":{index},"function":{{"arguments":'
        self._buffer.append(self._delta(_dumps(head)))
        self._buffer.append(self._delta(f"{arguments}{_json_str(input_json)}}}}}]}}"))

    def on_redacted(self, data: str) -> None:
        pass  # chat has no place for redacted reasoning

    def on_failed(self, kind: str, message: str) -> None:
        error = anthropic_error_to_openai(502, {"error": {"type": kind, "message": message}})
        self._buffer.append(f"data: {_dumps(error)}\n\n")

    # -- internals -------------------------------------------------------------------------

    def _delta(self, delta_json: str) -> str:
        return f"{self._chunk_head}{delta_json}{self._chunk_tail}"


# Output items of a Responses stream that are open while their content streams.
_NO_ITEM: Final = 0
_MESSAGE: Final = 1
_REASONING: Final = 2

_TEXT_DELTA: Final = (
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    '"sequence_number":'
)
_SUMMARY_DELTA: Final = (
    "event: response.reasoning_summary_text.delta\n"
    'data: {"type":"response.reasoning_summary_text.delta","sequence_number":'
)


class ResponsesStream(_OpenAIStream):
    """Render Kiro events as Responses API events, one bytes object per upstream read.

    `request` is the client's Responses body: its tools say which calls are free-text tools
    and which belong to a namespace (names are restored as in
    `openai_responses.anthropic_to_responses`), and its settings are echoed in the response
    object.
    """

    __slots__ = (
        "_items",
        "_next_index",
        "_open_id",
        "_open_index",
        "_open_kind",
        "_parts",
        "_seq",
        "_shell",
        "_table",
        "_where",
    )

    def __init__(
        self,
        options: TranslateOptions,
        *,
        response_id: str,
        created_at: int,
        request: Mapping[str, Any],
    ) -> None:
        super().__init__(options)
        self._shell = response_shell(
            response_id=response_id, created_at=created_at, model=options.model, request=request
        )
        self._table = tool_table(request)
        self._seq = 0
        self._items: list[dict[str, Any]] = []  # finished output items, in output order
        self._next_index = 0
        self._open_kind = _NO_ITEM
        self._open_id = ""
        self._open_index = -1
        self._parts: list[str] = []
        self._where = ""  # the open item's `item_id` and `output_index` fields, pre-rendered

    def start(self) -> bytes:
        """Open the stream: `response.created` and `response.in_progress`."""
        if not self.begin():
            return b""
        self._add("response.created", {"response": self._shell})
        self._add("response.in_progress", {"response": self._shell})
        return self._flush()

    def _end(self) -> None:
        """`response.completed`, or `response.incomplete` when the output was cut."""
        response = dict(self._shell)
        status, response["incomplete_details"] = responses_status(self.stop_reason)
        self._close_item(status)
        response["status"] = status
        response["output"] = self._items
        response["usage"] = responses_usage(self.usage_dict())
        self._add(f"response.{status}", {"response": response})

    # -- hooks -----------------------------------------------------------------------------

    def on_text(self, text: str) -> None:
        if self._open_kind != _MESSAGE:
            self._open_message()
        self.produced = True
        self._parts.append(text)
        seq = self._seq
        self._seq = seq + 1
        self._buffer.append(
            f'{_TEXT_DELTA}{seq}{self._where},"content_index":0,'
            f'"delta":{_json_str(text)},"logprobs":[]}}\n\n'
        )

    def on_open_thinking(self) -> None:
        self._close_item("completed")
        self._open("reasoning", {"summary": []})
        self._open_kind = _REASONING
        self._add(
            "response.reasoning_summary_part.added",
            {**self._at(), "summary_index": 0, "part": {"type": "summary_text", "text": ""}},
        )

    def on_thinking(self, text: str) -> None:
        if self._open_kind != _REASONING:
            self.on_open_thinking()
        self.produced = True
        self._parts.append(text)
        seq = self._seq
        self._seq = seq + 1
        self._buffer.append(
            f'{_SUMMARY_DELTA}{seq}{self._where},"summary_index":0,"delta":{_json_str(text)}}}\n\n'
        )

    def on_close_thinking(self, signature: str) -> None:
        if self._open_kind == _REASONING:
            self._close_item("completed")

    def on_close_text(self) -> None:
        if self._open_kind == _MESSAGE:
            self._close_item("completed")

    def on_tool(self, tool_id: str, name: str, input_json: str) -> None:
        self._close_item("completed")
        declared = self._table.resolve(name)
        if declared is None and name == NOOP_TOOL["name"]:
            return  # our placeholder (spec 12.2); the client never declared it
        self.produced = True
        client_name = declared.name if declared is not None else name
        custom = declared is not None and declared.kind == "custom"
        kind, key = ("custom_tool_call", "input") if custom else ("function_call", "arguments")
        value = custom_input(json.loads(input_json)) if custom else input_json
        item: dict[str, Any] = {
            "type": kind,
            "id": item_id("ctc" if custom else "fc"),
            "call_id": tool_id,
            "name": client_name,
            key: value,
            "status": "completed",
        }
        if declared is not None and declared.namespace:
            item["namespace"] = declared.namespace
        index = self._next_index
        self._next_index = index + 1
        where = {"item_id": item["id"], "output_index": index}
        pending = {**item, key: "", "status": "in_progress"}
        self._add("response.output_item.added", {"output_index": index, "item": pending})
        if custom:
            self._add("response.custom_tool_call_input.delta", {**where, "delta": value})
            self._add("response.custom_tool_call_input.done", {**where, "input": value})
        else:
            self._add("response.function_call_arguments.delta", {**where, "delta": value})
            done = {**where, "name": client_name, "arguments": value}
            self._add("response.function_call_arguments.done", done)
        self._add("response.output_item.done", {"output_index": index, "item": item})
        self._items.append(item)

    def on_redacted(self, data: str) -> None:
        pass  # not requested as encrypted reasoning; nothing a client can show

    def on_failed(self, kind: str, message: str) -> None:
        response = dict(self._shell)
        response["status"] = "failed"
        response["error"] = response_error(message, kind)
        response["output"] = self._items
        response["usage"] = responses_usage(self.usage_dict())
        self._add("response.failed", {"response": response})

    # -- internals -------------------------------------------------------------------------

    def _add(self, kind: str, payload: Mapping[str, Any]) -> None:
        seq = self._seq
        self._seq = seq + 1
        data = _dumps({"type": kind, "sequence_number": seq, **payload})
        self._buffer.append(f"event: {kind}\ndata: {data}\n\n")

    def _at(self) -> dict[str, Any]:
        return {"item_id": self._open_id, "output_index": self._open_index}

    def _open(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Add an output item whose content streams (a message or a reasoning item)."""
        index = self._next_index
        self._next_index = index + 1
        self._open_id = item_id("msg" if kind == "message" else "rs")
        self._open_index = index
        self._parts = []
        self._where = f',"item_id":"{self._open_id}","output_index":{index}'
        item = {"type": kind, "id": self._open_id, **fields}
        self._add("response.output_item.added", {"output_index": index, "item": item})

    def _open_message(self) -> None:
        self._close_item("completed")
        self._open("message", {"status": "in_progress", "role": "assistant", "content": []})
        self._open_kind = _MESSAGE
        part = {"type": "output_text", "text": "", "annotations": []}
        self._add("response.content_part.added", {**self._at(), "content_index": 0, "part": part})

    def _close_item(self, status: str) -> None:
        """Finish the open message or reasoning item, if any."""
        kind = self._open_kind
        if kind == _NO_ITEM:
            return
        self._open_kind = _NO_ITEM
        text = "".join(self._parts)
        at = self._at()
        if kind == _MESSAGE:
            part = {"type": "output_text", "text": text, "annotations": []}
            self._add(
                "response.output_text.done",
                {**at, "content_index": 0, "text": text, "logprobs": []},
            )
            self._add("response.content_part.done", {**at, "content_index": 0, "part": part})
            item: dict[str, Any] = {
                "type": "message",
                "id": self._open_id,
                "status": status,
                "role": "assistant",
                "content": [part],
            }
        else:
            summary = {"type": "summary_text", "text": text}
            self._add(
                "response.reasoning_summary_text.done", {**at, "summary_index": 0, "text": text}
            )
            self._add(
                "response.reasoning_summary_part.done", {**at, "summary_index": 0, "part": summary}
            )
            item = {"type": "reasoning", "id": self._open_id, "summary": [summary]}
        self._add("response.output_item.done", {"output_index": self._open_index, "item": item})
        self._items.append(item)
