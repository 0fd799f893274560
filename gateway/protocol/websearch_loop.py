"""Run Anthropic's web_search among other tools as Z's agentic loop (spec kiro-protocol §11.5).

Pure, like `gateway.protocol.websearch` (the MCP search and its rendering), which it builds
on: the dispatcher does the I/O and feeds the answers to the `WebSearchLoop` state machine::

    loop = WebSearchLoop(body, options)
    while not loop.done:
        conversion = loop.next_request()               # send conversion.kiro_body upstream
        queries = loop.feed_round(events, complete=read_ok)   # may raise UpstreamFailure
        if queries:
            loop.add_search_results([search(q) for q in queries])  # may raise UpstreamFailure
    loop.finish_stream()  # or loop.finish_message(); loop.result for the usage record

Where we differ from Z (each is marked in the code), besides the searches and blocks of
`gateway.protocol.websearch`:

* The final usage is summed over all rounds, `message_delta` carries the full usage plus
  `server_tool_use.web_search_requests`, and reasoning is returned as standard thinking
  blocks instead of Z's top-level `kiro_thinking` string.
* A web_search call without a usable query is answered to the model as an `invalid_input`
  error (and shown to the client as `web_search_tool_result_error`) instead of searching "".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from gateway.protocol.assemble import assemble_result
from gateway.protocol.convert import Conversion, ConvertOptions, convert_request
from gateway.protocol.errors import ErrorType, UpstreamFailure
from gateway.protocol.events import KiroEvent, ToolUse
from gateway.protocol.models import ConversionError
from gateway.protocol.tokens import count_all_tokens
from gateway.protocol.tools import restore_tool_call
from gateway.protocol.translate import TranslateOptions, TranslationResult
from gateway.protocol.websearch import (
    WEB_SEARCH,
    SearchError,
    SearchOutcome,
    new_search_message_id,
    new_server_tool_id,
    render_stream,
    search_blocks,
    start_usage,
    summary_text,
)

__all__ = [
    "MAX_SEARCH_ROUNDS",
    "WebSearchLoop",
    "default_translate_options",
    "query_from_input",
]

#: spec 11.5: at most this many rounds are answered with searches and sent back upstream.
MAX_SEARCH_ROUNDS: Final = 5
# spec 11.5 step 5: the exact client-facing texts.
EMPTY_ROUND_MESSAGE: Final = "Upstream returned no assistant text or tool call after a tool result."
READ_ERROR_MESSAGE: Final = (
    "Upstream response stream ended unexpectedly during the web_search loop."
)
# Ours: the tool_result the model gets for a web_search call without a query.
MISSING_QUERY_MESSAGE: Final = (
    "web_search was called without a search query; "
    'call it again with a non-empty string in "query".'
)
QUERY_KEYS: Final = ("query", "search_query", "q", "queries")
OVERRIDE_STOP_REASONS: Final = frozenset({"max_tokens", "model_context_window_exceeded"})
_MAX_NESTING: Final = 8

TranslateOptionsFactory = Callable[[Conversion, Mapping[str, Any]], TranslateOptions]


def query_from_input(tool_input: object) -> str:
    """Find the query in a web_search call's input (spec 11.5 step 2), or return ""."""
    if not isinstance(tool_input, Mapping):
        return _text_of(tool_input, 0)
    for key in QUERY_KEYS:
        query = _text_of(tool_input.get(key), 0)
        if query:
            return query
    return ""


def _text_of(value: object, depth: int) -> str:
    """Return a stripped string, the first non-empty one of a list, or a nested text/value."""
    if depth > _MAX_NESTING:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        for item in value:
            text = _text_of(item, depth + 1)
            if text:
                return text
        return ""
    if isinstance(value, Mapping):
        for key in ("text", "value", *QUERY_KEYS):
            text = _text_of(value.get(key), depth + 1)
            if text:
                return text
    return ""


def default_translate_options(
    conversion: Conversion, payload: Mapping[str, Any], *, message_id: str
) -> TranslateOptions:
    """Build the options that interpret one loop round's events.

    The input estimate E is recounted on the round's payload, which grows each round.
    """
    raw_tools = payload.get("tools")
    tools = [t for t in raw_tools if isinstance(t, Mapping)] if isinstance(raw_tools, list) else []
    names = frozenset(t["name"] for t in tools if isinstance(t.get("name"), str))
    name_map = conversion.tool_name_map

    def restore(kiro_name: str, value: dict[str, Any]) -> dict[str, Any]:
        restored = restore_tool_call(kiro_name, value, name_map)[1]
        return restored if isinstance(restored, dict) else value

    return TranslateOptions(
        model=conversion.model.requested,
        message_id=message_id,
        thinking=conversion.thinking.enabled,
        input_tokens=count_all_tokens(
            conversion.model.requested, payload.get("system"), payload.get("messages", []), tools
        ),
        context_window=conversion.model.context_window,
        tool_names=name_map,
        declared_tools=names,
        restore_tool_input=restore,
    )


@dataclass(frozen=True, slots=True)
class _Call:
    """A web_search call of a round waiting for its search."""

    tool_id: str
    query: str


@dataclass(frozen=True, slots=True)
class _Round:
    """The interpreted answer of one upstream round."""

    thinking: tuple[dict[str, Any], ...]
    text: str
    calls: tuple[dict[str, Any], ...]  # tool_use blocks, client names, in order
    stop_reason: str | None  # an override (max_tokens, context window) or None


# Loop states.
_READY: Final = "ready"  # next_request() may be called
_AWAITING_ROUND: Final = "awaiting_round"  # feed_round() expected
_AWAITING_SEARCH: Final = "awaiting_search"  # add_search_results() expected
_DONE: Final = "done"
_FAILED: Final = "failed"


class WebSearchLoop:
    """Run Z's web_search agentic loop (spec 11.5) as a pure state machine.

    The caller sends each `next_request()` upstream, decodes the whole answer, and passes the
    events to `feed_round()`; the queries it returns are searched through MCP and the parsed
    outcomes handed back with `add_search_results()`, in order. When `done`, the answer is
    rendered by `finish_stream()` or `finish_message()`. Failures are raised as
    `UpstreamFailure`; `result` holds the usage of every round either way.
    """

    __slots__ = (
        "_body",
        "_conversion",
        "_creation",
        "_credit_unit",
        "_credit_unit_plural",
        "_credits",
        "_emit_credits",
        "_error",
        "_factory",
        "_final",
        "_final_stop",
        "_finishing",
        "_input",
        "_message_id",
        "_messages",
        "_metered",
        "_model",
        "_options",
        "_output",
        "_pairs",
        "_pending",
        "_read",
        "_retried",
        "_round",
        "_rounds",
        "_search_rounds",
        "_searches",
        "_state",
        "_translate_options",
    )

    def __init__(
        self,
        body: Mapping[str, Any],
        options: ConvertOptions,
        *,
        translate_options: TranslateOptionsFactory | None = None,
        message_id: str | None = None,
    ) -> None:
        messages = body.get("messages") if isinstance(body, Mapping) else None
        if not isinstance(messages, list):
            raise ConversionError("messages", "must be a list")
        self._body = body
        self._messages: list[Any] = list(messages)
        self._options = options
        self._factory = translate_options
        self._message_id = message_id or new_search_message_id()
        model = body.get("model")
        self._model = model if isinstance(model, str) else ""
        self._state = _READY
        self._conversion: Conversion | None = None
        self._translate_options: TranslateOptions | None = None
        self._round: _Round | None = None
        self._pending: list[_Call] = []
        self._pairs: list[dict[str, Any]] = []
        self._final: list[dict[str, Any]] | None = None
        self._final_stop: str | None = None
        self._finishing = False
        self._retried = False
        self._rounds = 0
        self._search_rounds = 0
        self._searches = 0
        self._input = self._output = self._creation = self._read = 0
        self._credits = 0.0
        self._metered = False
        self._credit_unit = "credit"
        self._credit_unit_plural = "credits"
        self._emit_credits = True
        self._error: UpstreamFailure | None = None
        # Converted now, so that a malformed body is a ConversionError here (a 400 before a
        # stream starts), not in the middle of a stream. Later rounds add only our blocks.
        self._prepare()

    # -- state --------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Tell whether the answer is ready to render."""
        return self._state == _DONE

    @property
    def rounds(self) -> int:
        """Count the upstream rounds fed so far, retries included."""
        return self._rounds

    @property
    def searches(self) -> int:
        """Count the MCP searches answered so far."""
        return self._searches

    @property
    def result(self) -> TranslationResult:
        """Summarise usage over all rounds, for the usage record (also after a failure)."""
        content = self._final or []
        return TranslationResult(
            stop_reason=self._stop_reason() if self._state == _DONE else None,
            input_tokens=self._input,
            output_tokens=self._output,
            cache_creation_input_tokens=self._creation,
            cache_read_input_tokens=self._read,
            credits=self._credits,
            metered=self._metered,
            tool_calls=sum(1 for block in content if block["type"] == "tool_use"),
            produced_output=bool(content),
            finished=self._state == _DONE,
            had_error=self._state == _FAILED,
            error_type=self._error.kind if self._error is not None else None,
            error_message=self._error.message if self._error is not None else None,
        )

    # -- driving ------------------------------------------------------------------------------

    def next_request(self) -> Conversion:
        """Return the Kiro request of the next round (the same one again for a retry)."""
        if self._state == _AWAITING_ROUND and self._conversion is not None:
            return self._conversion  # the caller is retrying the upstream call
        if self._state != _READY:
            raise RuntimeError(f"next_request() called in state {self._state}")
        self._prepare()
        self._state = _AWAITING_ROUND
        assert self._conversion is not None
        return self._conversion

    def _prepare(self) -> None:
        """Convert the next round's request, unless it is converted already."""
        if self._conversion is not None:
            return
        payload = self._payload()
        conversion = convert_request(payload, options=self._options)
        if self._rounds == 0:
            # One logical turn: every round keeps the first round's ids.
            state = conversion.kiro_body["conversationState"]
            self._options = replace(
                self._options,
                conversation_id=conversion.conversation_id,
                agent_continuation_id=state.get("agentContinuationId"),
            )
        factory = self._factory or self._default_factory
        translate = factory(conversion, payload)
        # spec 11.5 step 3: a leaked <invoke> is never reclaimed as a web_search call
        self._translate_options = replace(
            translate, declared_tools=translate.declared_tools - {WEB_SEARCH}
        )
        self._conversion = conversion

    def feed_round(self, events: Iterable[KiroEvent], *, complete: bool = True) -> list[str]:
        """Interpret one round's events; return the queries to search now (maybe none).

        `complete=False` says the upstream body broke off: the round's usage is kept and the
        loop fails (spec 11.5 step 5). After an empty round that follows a tool result the
        loop stays unfinished and `next_request()` returns the same request once more.
        """
        if self._state != _AWAITING_ROUND or self._translate_options is None:
            raise RuntimeError(f"feed_round() called in state {self._state}")
        events = list(events)
        message, summary, failure = assemble_result(events, self._translate_options)
        self._add_usage(summary, message)
        self._rounds += 1
        if not complete:
            raise self._fail(
                UpstreamFailure(
                    "api_error", READ_ERROR_MESSAGE, 502, kind=ErrorType.STREAM_INTERRUPTED
                )
            )
        if failure is not None or message is None:
            # Z parses broken tool JSON as {} and searches on; we refuse, like §6.13 does.
            raise self._fail(failure or UpstreamFailure("api_error", "Upstream failed", 502))
        structured = {event.tool_use_id for event in events if isinstance(event, ToolUse)}
        current = _interpret(message, structured)

        empty = not current.text and not current.calls and current.stop_reason is None
        if empty and self._after_tool_result():
            if not self._retried:  # spec 11.5 step 5: retry once ...
                self._retried = True
                self._state = _READY
                return []
            # ... then fail
            raise self._fail(
                UpstreamFailure("api_error", EMPTY_ROUND_MESSAGE, 502, kind=ErrorType.EMPTY_ANSWER)
            )
        self._retried = False

        searching = (
            bool(current.calls)
            and all(call["name"] == WEB_SEARCH for call in current.calls)
            and self._search_rounds < MAX_SEARCH_ROUNDS
        )
        self._round = current
        self._conversion = None
        self._finishing = not searching
        self._pending = [
            _Call(call["id"], query_from_input(call["input"]))
            for call in current.calls
            if call["name"] == WEB_SEARCH
        ]
        self._state = _AWAITING_SEARCH
        queries = [call.query for call in self._pending if call.query]
        if not queries:
            self._resolve([])
        return queries

    def add_search_results(self, results: Sequence[SearchOutcome]) -> None:
        """Hand over the outcomes of the queries `feed_round()` returned, in the same order.

        A failed search fails the loop, as in Z (spec 11.5); "no results" does not.
        """
        if self._state != _AWAITING_SEARCH:
            raise RuntimeError(f"add_search_results() called in state {self._state}")
        expected = sum(1 for call in self._pending if call.query)
        if len(results) != expected:
            raise ValueError(f"expected {expected} search outcomes, got {len(results)}")
        for outcome in results:
            if outcome.failed:
                raise self._fail(outcome.failure())
        self._searches += len(results)
        self._resolve(list(results))

    # -- rendering ----------------------------------------------------------------------------

    def finish_message(self) -> dict[str, Any]:
        """Render the finished loop as a non-stream Anthropic message (spec 11.5 step 4)."""
        content = self._finished_content()
        return {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": self._model,
            "stop_reason": self._stop_reason(),
            "stop_sequence": None,
            "usage": self._usage(),
        }

    def finish_stream(self) -> bytes:
        """Render the finished loop as one pre-built SSE body (spec 11.5 step 4)."""
        content = self._finished_content()
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The stream is built after the last round: the summed input is known.
            "usage": start_usage(self._input, self._creation, self._read),
        }
        delta = {"delta": {"stop_reason": self._stop_reason()}, "usage": self._usage()}
        return render_stream(message, content, delta)

    # -- internals ----------------------------------------------------------------------------

    def _default_factory(
        self, conversion: Conversion, payload: Mapping[str, Any]
    ) -> TranslateOptions:
        return default_translate_options(conversion, payload, message_id=self._message_id)

    def _payload(self) -> dict[str, Any]:
        return {**self._body, "messages": self._messages}

    def _fail(self, failure: UpstreamFailure) -> UpstreamFailure:
        self._state = _FAILED
        self._error = failure
        return failure

    def _add_usage(self, summary: TranslationResult, message: dict[str, Any] | None) -> None:
        self._input += summary.input_tokens
        self._output += summary.output_tokens
        self._creation += summary.cache_creation_input_tokens
        self._read += summary.cache_read_input_tokens
        self._credits += summary.credits
        if summary.metered:
            self._metered = True
            usage = message.get("usage", {}) if message is not None else {}
            self._credit_unit = usage.get("credit_unit", self._credit_unit)
            self._credit_unit_plural = usage.get("credit_unit_plural", self._credit_unit_plural)
        if self._translate_options is not None:
            self._emit_credits = self._translate_options.emit_credits

    def _after_tool_result(self) -> bool:
        """Tell whether the last user turn of the current payload carries a tool_result."""
        for message in reversed(self._messages):
            if not isinstance(message, Mapping) or message.get("role") != "user":
                continue
            content = message.get("content")
            return isinstance(content, list) and any(
                isinstance(block, Mapping) and block.get("type") == "tool_result"
                for block in content
            )
        return False

    def _resolve(self, outcomes: list[SearchOutcome]) -> None:
        """Pair the pending calls with their outcomes, then loop on or finish."""
        current = self._round
        assert current is not None
        answers = iter(outcomes)
        by_id: dict[str, tuple[str, SearchOutcome]] = {}
        for call in self._pending:
            if call.query:
                by_id[call.tool_id] = (call.query, next(answers))
            else:
                by_id[call.tool_id] = (
                    "",
                    SearchOutcome(error=SearchError("invalid_input", MISSING_QUERY_MESSAGE)),
                )
        self._pending = []
        if not self._finishing:
            self._append_search_round(current, by_id)
            self._search_rounds += 1
            self._round = None
            self._state = _READY
            return
        content: list[dict[str, Any]] = [*self._pairs, *current.thinking]
        if current.text:
            content.append({"type": "text", "text": current.text})
        for call in current.calls:
            if call["name"] == WEB_SEARCH:
                # spec 11.5 step 3: web_search is never handed to the client as a tool_use
                query, outcome = by_id[call["id"]]
                content.extend(search_blocks(query, outcome, new_server_tool_id()))
            else:
                content.append(call)
        self._final = content
        self._final_stop = current.stop_reason
        self._round = None
        self._state = _DONE

    def _append_search_round(
        self, current: _Round, by_id: dict[str, tuple[str, SearchOutcome]]
    ) -> None:
        """Feed the round back upstream and record what the client will see (11.5 step 2)."""
        assistant: list[dict[str, Any]] = []
        if current.text:
            assistant.append({"type": "text", "text": current.text})
        assistant.extend(current.calls)
        results: list[dict[str, Any]] = []
        for call in current.calls:
            query, outcome = by_id[call["id"]]
            if outcome.error is not None and outcome.error.kind == "invalid_input":
                result = {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": MISSING_QUERY_MESSAGE,
                    "is_error": True,
                }
            else:
                result = {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": summary_text(query, outcome),
                }
            results.append(result)
            self._pairs.extend(search_blocks(query, outcome, new_server_tool_id()))
        self._messages += [
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": results},
        ]

    def _finished_content(self) -> list[dict[str, Any]]:
        if self._state != _DONE or self._final is None:
            raise RuntimeError(f"the loop is not finished (state {self._state})")
        return self._final

    def _stop_reason(self) -> str:
        """Apply spec 11.5 step 3: an override, else tool_use for a client call, else end_turn."""
        if self._final_stop is not None:
            return self._final_stop
        content = self._final or []
        if any(block["type"] == "tool_use" for block in content):
            return "tool_use"
        return "end_turn"

    def _usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": self._input,
            "output_tokens": self._output,
            "cache_creation_input_tokens": self._creation,
            "cache_read_input_tokens": self._read,
        }
        if self._searches:
            usage["server_tool_use"] = {"web_search_requests": self._searches}
        if self._metered and self._emit_credits:
            usage["credit_usage"] = self._credits
            usage["credit_unit"] = self._credit_unit
            usage["credit_unit_plural"] = self._credit_unit_plural
        return usage


def _interpret(message: Mapping[str, Any], structured: set[str]) -> _Round:
    """Split an assembled round message into thinking, text, calls and an override stop."""
    thinking: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        kind = block["type"]
        if kind in ("thinking", "redacted_thinking"):
            thinking.append(block)
        elif kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(block)
    # spec 11.5 step 3: a call reclaimed from <invoke> text that repeats a structured call
    # is dropped; reclaimed calls are the ones whose id no toolUseEvent carried.
    seen = {(call["name"], _canonical(call["input"])) for call in calls if call["id"] in structured}
    calls = [
        call
        for call in calls
        if call["id"] in structured or (call["name"], _canonical(call["input"])) not in seen
    ]
    stop = message.get("stop_reason")
    return _Round(
        thinking=tuple(thinking),
        text="".join(texts),
        calls=tuple(calls),
        stop_reason=stop if stop in OVERRIDE_STOP_REASONS else None,
    )


def _canonical(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
