"""Synthesize the Responses SSE events of a finished message (spec §12.2).

Live streams are rendered from the Kiro events by gateway/protocol/openai_stream.py; only the
answers of the web-search loop (§11.5), which is not live, get their events built here from the
finished message, as Z does for every stream (§12): the head (`response.created`,
`response.in_progress`) a view can send at once, the events of each output item, and
`response.completed` / `response.incomplete`, or `response.failed` after a break.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.protocol import sse
from gateway.protocol.openai_responses import anthropic_to_responses, response_error, response_shell

__all__ = ["responses_failed_event", "responses_stream_events", "responses_stream_head"]


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
