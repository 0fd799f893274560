"""Translate Kiro events into Anthropic Messages SSE or JSON (spec kiro-protocol §6).

One state machine, `Machine`, decides blocks, thinking, tools, stop reason and usage; thin
subclasses render it: `StreamTranslator` as Anthropic SSE bytes (one bytes object per upstream
read, PERF-NOTES), `_Assembler` as the non-stream JSON message (§6.13), and the OpenAI stream
renderers of gateway/protocol/openai_stream.py (§12). A streaming renderer offers `Renderer`,
the interface `dispatch.relay` drives.

Where we follow Z and where we go beyond both proxies:

* Tool calls (§6.4, Z): fragments are buffered per toolUseId and nothing is sent until
  `stop: true`; then the input must parse as a JSON *object* (blank → `{}`) and the block goes
  out whole (start, one `input_json_delta` with compact JSON, stop). A client never sees broken
  JSON: not even a prefix of a tool call that later turns out cut.
* Failures (§6.12, beyond both): an upstream `error` frame, an exception frame other than
  ContentLengthExceededException, a tool input that is not a JSON object at its `stop`, or a
  `fail()` from the caller (connection reset, decode failure) end the stream with an Anthropic
  `error` event — never with `message_delta`/`message_stop` pretending success. A tool call
  still unfinished at the end of the upstream body is cut: if the upstream said the output was
  too long (stop_reason `max_tokens`) the cut call is dropped and the stream ends cleanly with
  `max_tokens`, which tells the client the output was truncated; otherwise the stream ends with
  an `error` event. Z instead sends `message_stop` and then an error with the non-standard
  stop_reason `error`.
* Accounting events (metering, context usage, metadata) are still counted after a failure, so
  the usage record of a failed stream is as accurate as the upstream let it be.
* Credits (kiro-ops §5.6): the sum of all meteringEvents, in the summary *and* in the client's
  usage (Z reports the last event to the client and the sum to its log; §13.3 case 33).
* Text sanitizers (§6.7, Z): `<tool_use>` stripping, `<invoke>` reclamation, repeat guard.
  Unlike Z we hold back a partial line only when it can still become one of those (a line
  start that is `<…`, a prefix of `call`/`count`/`card`, or a fence), not every tail after a
  `<`, so text such as `if a < b` streams without delay.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from gateway.protocol import sse
from gateway.protocol.errors import AnthropicType, ErrorType, UpstreamFailure, upstream_kind
from gateway.protocol.events import (
    AssistantResponse,
    ContextUsage,
    KiroEvent,
    Metadata,
    Metering,
    Reasoning,
    TokenUsage,
    ToolUse,
    UpstreamError,
    UpstreamException,
)
from gateway.protocol.thinking import CLOSE, OPEN, TEXT, THINKING, Op, ThinkingSplitter
from gateway.protocol.tokens import CacheEstimate, count_tokens, estimate_tokens

# spec 6.5/6.6: Z's placeholder when upstream gave no real signature.
THINKING_SIGNATURE_PLACEHOLDER: Final = "kiro-rs-thinking-signature"
CONTENT_LENGTH_EXCEEDED: Final = "ContentLengthExceededException"
TOOL_JSON_ERROR: Final = ErrorType.TOOL_JSON_CUT  # Z sends it as the client type; we never do
REDACTED_THINKING_TOKENS: Final = 8  # spec 6.10 (Z)

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_json_str = sse.json_string
_loads = json.loads


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


def _join_surrogates(text: str) -> str:
    """Pair up surrogate halves that arrived in separate events."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def new_message_id() -> str:
    """Return a fresh `msg_<32 hex>` id (spec §6.2)."""
    return f"msg_{uuid.uuid4().hex}"


# Block kinds.
_NONE: Final = 0
_TEXT_BLOCK: Final = 1
_THINKING_BLOCK: Final = 2

# Lifecycle.
_FRESH: Final = 0
_OPEN: Final = 1
_DONE: Final = 2
_FAILED: Final = 3


@dataclass(slots=True)
class _ToolBuffer:
    name: str
    parts: list[str]


class Machine:
    """Decide blocks, stop reason and usage from Kiro events; subclasses render the blocks.

    The interface for renderers: feed events with `consume()`; at the end of the upstream body
    call `settle()`, which flushes held text and decides the stop reason (or fails a cut tool
    call); `abort()` ends the answer after a broken upstream. The machine calls the `on_*`
    hooks in output order: text and thinking deltas as they come, `on_close_text` /
    `on_close_thinking` where a block ends (text is closed before thinking opens and before a
    tool; a thinking block may stay open across a tool), `on_tool` once per tool call whose
    input is complete, valid JSON (§6.4: a cut or broken call never reaches a hook), and
    `on_failed` at most once, after which no content hook is called. A renderer sets
    `produced` when it emits content. `begin()` opens the answer: before that, content events
    are ignored.
    """

    __slots__ = (
        "_context_pct",
        "_credit_unit",
        "_credit_unit_plural",
        "_credits",
        "_done_tools",
        "_error_kind",
        "_error_message",
        "_error_type",
        "_explicit_stop",
        "_high_surrogate",
        "_metered",
        "_native_open",
        "_non_thinking_block",
        "_opts",
        "_out_estimate",
        "_sanitizer",
        "_signature",
        "_splitter",
        "_state",
        "_stop_reason",
        "_thinking_block",
        "_token_usage",
        "_tool_calls",
        "_tool_seen",
        "_tools",
        "produced",
    )

    def __init__(self, options: TranslateOptions, *, split_thinking: bool) -> None:
        self._opts = options
        self._state = _FRESH
        self._splitter: ThinkingSplitter | None = ThinkingSplitter() if split_thinking else None
        self._sanitizer: _Sanitizer | None = None
        if options.sanitize:
            # spec 6.7: an <invoke> may name a declared tool, original or shortened
            names = options.declared_tools.union(options.tool_names)
            self._sanitizer = _Sanitizer(names if options.declared_tools else frozenset())
        self._native_open = False
        self._high_surrogate = ""
        self._signature: str | None = None
        self._thinking_block = False
        self._non_thinking_block = False
        self._tools: dict[str, _ToolBuffer] = {}
        self._done_tools: set[str] = set()
        self._tool_seen = False
        self._tool_calls = 0
        self._explicit_stop: str | None = None
        self._stop_reason: str | None = None
        self._context_pct: float | None = None
        self._token_usage: TokenUsage | None = None
        self._credits = 0.0
        self._metered = False
        self._credit_unit = "credit"
        self._credit_unit_plural = "credits"
        self._out_estimate = 0
        self.produced = False
        self._error_type: str | None = None  # the record's ErrorType
        self._error_kind: str | None = None  # the client's AnthropicType
        self._error_message: str | None = None

    # -- rendering hooks (subclasses) ------------------------------------------------------

    def on_text(self, text: str) -> None:
        """Render a text delta (opening a text block if none is open)."""
        raise NotImplementedError

    def on_open_thinking(self) -> None:
        """Open a thinking block."""
        raise NotImplementedError

    def on_thinking(self, text: str) -> None:
        """Render a thinking delta (opening a thinking block if none is open)."""
        raise NotImplementedError

    def on_close_thinking(self, signature: str) -> None:
        """Close the open thinking block, if any, with its signature (§6.5, §6.6)."""
        raise NotImplementedError

    def on_close_text(self) -> None:
        """Close the open text block, if any."""
        raise NotImplementedError

    def on_tool(self, tool_id: str, name: str, input_json: str) -> None:
        """Render a complete tool call: the client's name, its input as compact JSON."""
        raise NotImplementedError

    def on_redacted(self, data: str) -> None:
        """Render a redacted thinking block (§6.6)."""
        raise NotImplementedError

    def on_failed(self, kind: str, message: str) -> None:
        """Render the end of a failed answer; `kind` is an Anthropic error type (§6.12)."""
        raise NotImplementedError

    # -- the interface for renderers -------------------------------------------------------

    @property
    def options(self) -> TranslateOptions:
        """Return the options the machine was made with."""
        return self._opts

    @property
    def fresh(self) -> bool:
        """Tell whether the answer has not begun yet."""
        return self._state == _FRESH

    @property
    def open(self) -> bool:
        """Tell whether the answer has begun and has neither finished nor failed."""
        return self._state == _OPEN

    @property
    def finished(self) -> bool:
        """Tell whether `settle()` ended the answer normally."""
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        """Tell whether the answer ended in error (the caller may stop reading upstream)."""
        return self._state == _FAILED

    @property
    def stop_reason(self) -> str | None:
        """Return the Anthropic stop reason `settle()` decided, or None before."""
        return self._stop_reason

    def begin(self) -> bool:
        """Open the answer; return False if it was open or over already."""
        if self._state != _FRESH:
            return False
        self._state = _OPEN
        return True

    def abort(self, kind: str, message: str, error_type: ErrorType) -> None:
        """Fail the answer after a break outside the event stream (a reset, a bug), §6.12;
        `kind` is the client's Anthropic type, `error_type` the record's."""
        if self._state == _FRESH:
            self._state = _OPEN
        self._fail(kind, message, error_type)

    # -- events ----------------------------------------------------------------------------

    def consume(self, events: Iterable[KiroEvent]) -> None:
        """Apply events in order; the hot path is a small assistantResponseEvent."""
        sanitizer = self._sanitizer
        text = self.on_text
        for event in events:
            if type(event) is AssistantResponse and self._state == _OPEN:
                content = event.content
                if self._high_surrogate:
                    content = _join_surrogates(self._high_surrogate + content)
                    self._high_surrogate = ""
                if not content:
                    continue  # spec 6.3: empty content produces nothing
                # spec 6.10: estimate per event (ASCII inline: the common case)
                if content.isascii():
                    self._out_estimate += (len(content) + 3) >> 2
                else:
                    if "\ud800" <= content[-1] <= "\udbff":
                        # half a surrogate pair (upstream JSON `\ud83d`): wait for the other
                        self._high_surrogate = content[-1]
                        content = content[:-1]
                        if not content:
                            continue
                    self._out_estimate += estimate_tokens(content)
                splitter = self._splitter
                if splitter is None:
                    if (
                        not self._native_open
                        and sanitizer is not None
                        and sanitizer.quiet
                        and "<" not in content
                        and "\n" not in content
                    ):
                        text(content)  # mid-line plain text: nothing to sanitize
                    else:
                        self._emit_text(content)
                else:
                    self._apply_ops(splitter.feed(content))
                    if splitter.state == 2:  # AFTER: plain text from now on
                        self._splitter = None
            else:
                self._event(event)

    def _event(self, event: KiroEvent) -> None:
        kind = type(event)
        if kind is Metering:
            self._metered = True
            self._credits += max(event.usage, 0.0)
            self._credit_unit = event.unit
            self._credit_unit_plural = event.unit_plural
        elif kind is ContextUsage:
            self._context_pct = event.percentage
            if event.percentage >= 100 and self._state == _OPEN:
                self._explicit_stop = "model_context_window_exceeded"  # spec 6.9
        elif kind is Metadata:
            if event.token_usage is not None:
                self._token_usage = event.token_usage  # spec 6.10: last wins
        elif self._state != _OPEN:
            return  # after a failure only accounting events still count
        elif kind is ToolUse:
            self._tool_fragment(event)
        elif kind is Reasoning:
            self._reasoning(event)
        elif kind is UpstreamException:
            if event.exception_type == CONTENT_LENGTH_EXCEEDED:
                self._explicit_stop = "max_tokens"  # spec 6.9
            else:
                # spec 6.12 only logs these; an exception frame ends the upstream response,
                # so anything we sent as a clean end would be a lie.
                self._fail(
                    upstream_kind(event.exception_type),
                    f"Upstream {event.exception_type}: {event.message}",
                    ErrorType.UPSTREAM_EXCEPTION,
                )
        elif kind is UpstreamError:
            message = f"Upstream {event.code}: {event.message}"
            self._fail(upstream_kind(event.code), message, ErrorType.UPSTREAM_EXCEPTION)

    def _fail(self, kind: str, message: str, error_type: str) -> None:
        if self._state >= _DONE:
            return
        self._state = _FAILED
        self._error_type = error_type
        self._error_kind = kind
        self._error_message = message
        self.on_failed(kind, message)

    # -- text and thinking -----------------------------------------------------------------

    def _emit_text(self, text: str) -> None:
        if self._native_open:
            self._end_native()
        sanitizer = self._sanitizer
        if sanitizer is None or (sanitizer.quiet and "<" not in text and "\n" not in text):
            self.on_text(text)
            return
        for segment in sanitizer.push(text, final=False):
            if type(segment) is str:
                self.on_text(segment)
            else:
                self._invoke_tool(segment)

    def _apply_ops(self, ops: list[Op]) -> None:
        for kind, value in ops:
            if kind == TEXT:
                self._emit_text(value)
            elif kind == THINKING:
                self.on_thinking(value)
            elif kind == OPEN:
                self.on_close_text()
                self.on_open_thinking()
            elif kind == CLOSE:
                self.on_close_thinking(self._take_signature())

    def _take_signature(self) -> str:
        signature, self._signature = self._signature, None
        return signature or THINKING_SIGNATURE_PLACEHOLDER

    def _end_native(self) -> None:
        self._native_open = False
        self.on_close_thinking(self._take_signature())

    def _reasoning(self, event: Reasoning) -> None:
        if not (self._opts.thinking or self._opts.reasoning):
            if event.text:  # spec 6.6: disabled thinking shows reasoning as text
                self._out_estimate += estimate_tokens(event.text)
                self._emit_text(event.text)
            return
        if event.signature:
            self._signature = event.signature
        if event.text:
            self._out_estimate += estimate_tokens(event.text)
            if not self._native_open:
                splitter, self._splitter = self._splitter, None
                inside_tag_block = splitter is not None and splitter.state == 1
                if splitter is not None:
                    self._apply_ops(splitter.detach())
                if not inside_tag_block:
                    self.on_close_text()
                    self.on_open_thinking()
                self._native_open = True
            self.on_thinking(event.text)
        if event.redacted_content:
            self._out_estimate += REDACTED_THINKING_TOKENS
            if self._native_open:
                self._end_native()
            self.on_close_text()
            self.on_redacted(event.redacted_content)

    # -- tools -----------------------------------------------------------------------------

    def _tool_fragment(self, event: ToolUse) -> None:
        tool_id = event.tool_use_id
        self._tool_seen = True  # spec 6.9 (Z): any fragment makes stop_reason tool_use
        if tool_id in self._done_tools:
            return  # spec 6.4: fragments after stop are dropped
        buffer = self._tools.get(tool_id)
        if buffer is None:
            buffer = self._tools[tool_id] = _ToolBuffer(event.name, [])
        if event.input:
            buffer.parts.append(event.input)
        if not event.stop:
            return
        del self._tools[tool_id]
        self._done_tools.add(tool_id)
        raw = "".join(buffer.parts)
        try:
            value = _loads(raw) if raw.strip() else {}
        except ValueError as exc:
            problem = str(exc)
        else:
            if isinstance(value, dict):
                self._tool_out(tool_id, buffer.name, value)
                return
            problem = f"expected a JSON object, got {type(value).__name__}"
        self._fail(
            "api_error",
            f"Upstream returned invalid JSON for tool_use {tool_id} ({buffer.name}): {problem}",
            TOOL_JSON_ERROR,
        )

    def _invoke_tool(self, invoke: tuple[str, dict[str, Any]]) -> None:
        name, value = invoke
        self._tool_seen = True  # spec 6.9 (Z): a reclaimed <invoke> counts as a tool call
        self._tool_out(f"toolu_{uuid.uuid4().hex}", name, value)

    def _tool_out(self, tool_id: str, upstream_name: str, value: dict[str, Any]) -> None:
        restore = self._opts.restore_tool_input
        if restore is not None:
            value = restore(upstream_name, value)
        input_json = _compact(value)
        self._out_estimate += estimate_tokens(input_json)
        self._boundary()
        self._tool_calls += 1
        self._non_thinking_block = True
        name = self._opts.tool_names.get(upstream_name, upstream_name)  # spec 3.12
        self.on_tool(tool_id, name, input_json)

    def _boundary(self) -> None:
        """Settle thinking and held text before a block that is not text (spec 6.4)."""
        splitter = self._splitter
        if splitter is not None:
            self._apply_ops(splitter.boundary())
        sanitizer = self._sanitizer
        if sanitizer is not None and not sanitizer.quiet:
            for segment in sanitizer.push("", final=True):
                if type(segment) is str:
                    self.on_text(segment)
                else:
                    self._invoke_tool(segment)
        if self._native_open:
            self._end_native()
        self.on_close_text()

    # -- the end ---------------------------------------------------------------------------

    def settle(self, *, thinking_only_rule: bool) -> None:
        """Flush held text, settle tools and decide the stop reason (spec 6.8, 6.9)."""
        if self._high_surrogate:
            self.consume([AssistantResponse("")])  # an unpaired half: sent as U+FFFD
        if self._native_open:
            self._end_native()
        splitter, self._splitter = self._splitter, None
        if splitter is not None:
            self._apply_ops(splitter.finish())
        if self._sanitizer is not None:
            for segment in self._sanitizer.push("", final=True):
                if type(segment) is str:
                    self.on_text(segment)
                else:
                    self._invoke_tool(segment)
        if self._state != _OPEN:
            return
        stop = self._explicit_stop
        if thinking_only_rule and self._thinking_block and not self._non_thinking_block:
            stop = "max_tokens"  # spec 6.5: thinking-only rule
            self.on_text(" ")
        if self._tools:
            cut = ", ".join(
                f"{tool_id} ({buffer.name}, {sum(map(len, buffer.parts))} chars buffered)"
                for tool_id, buffer in self._tools.items()
            )
            if stop != "max_tokens":
                self._fail(
                    "api_error",
                    f"Upstream ended before completing tool_use {cut}; "
                    "the tool call was not forwarded to the client.",
                    TOOL_JSON_ERROR,
                )
                return
            # The upstream said the output was cut: max_tokens tells the client so, and the
            # half-written call is dropped rather than forwarded as broken JSON.
            self._error_type = TOOL_JSON_ERROR
            self._error_message = f"Dropped tool_use cut by max_tokens: {cut}"
        if stop is None:
            stop = "tool_use" if self._tool_seen else "end_turn"
        self._stop_reason = stop
        self._state = _DONE

    def _usage(self) -> tuple[int, int, int, int]:
        """Return (input, output, cache_creation, cache_read) per spec 6.10 / kiro-ops 5.5."""
        usage = self._token_usage
        opts = self._opts
        if usage is not None:
            if (
                opts.cache is None
                or usage.cache_read_input_tokens
                or usage.cache_write_input_tokens
            ):
                return (
                    usage.uncached_input_tokens,
                    usage.output_tokens,
                    usage.cache_write_input_tokens,
                    usage.cache_read_input_tokens,
                )
            # Z uses the snapshot as-is; Kiro's says nothing of the cache (both zero), so the
            # simulated cache splits its input total, as it splits an estimated one.
            uncached, creation, read = opts.cache.split(usage.uncached_input_tokens)
            return uncached, usage.output_tokens, creation, read
        pct = self._context_pct
        # spec 6.10: C = trunc(pct x window / 100) when a contextUsageEvent came, else E
        total = int(pct * opts.context_window / 100) if pct is not None else opts.input_tokens
        total = max(total, 0)
        if opts.cache is not None:
            uncached, creation, read = opts.cache.split(total)
        else:
            uncached, creation, read = total, 0, 0
        return uncached, self._output_estimate(), creation, read

    def _output_estimate(self) -> int:
        return self._out_estimate

    def usage_dict(self) -> dict[str, Any]:
        uncached, output, creation, read = self._usage()
        usage: dict[str, Any] = {
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
        }
        if self._metered and self._opts.emit_credits:
            usage["credit_unit"] = self._credit_unit
            usage["credit_unit_plural"] = self._credit_unit_plural
            usage["credit_usage"] = self._credits
        usage["input_tokens"] = uncached
        usage["output_tokens"] = output
        return usage

    @property
    def result(self) -> TranslationResult:
        """Summarise usage, stop reason and errors so far."""
        uncached, output, creation, read = self._usage()
        return TranslationResult(
            stop_reason=self._stop_reason,
            input_tokens=uncached,
            output_tokens=output,
            cache_creation_input_tokens=creation,
            cache_read_input_tokens=read,
            credits=self._credits,
            metered=self._metered,
            tool_calls=self._tool_calls,
            produced_output=self.produced,
            finished=self._state == _DONE,
            had_error=self._state == _FAILED,
            error_type=self._error_type,
            error_message=self._error_message,
        )

    def summary(self) -> TranslationResult:
        """Return `result` (a method for callers that prefer one)."""
        return self.result


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


# -- SSE rendering -------------------------------------------------------------------------

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
        if self._state != _FRESH:
            return b""
        self._state = _OPEN
        if not self._opts.cc_mode:
            self._buffer.append(self._message_start(self._opts.input_tokens, 0, 0))
        if not self._opts.thinking:
            self._open_text()  # spec 6.3: block 0 exists even for a pure tool call
        return self._drain()

    def feed(self, events: Iterable[KiroEvent]) -> bytes:
        """Translate the events of one upstream read into one SSE chunk."""
        prefix = self.start() if self._state == _FRESH else b""
        self.consume(events)
        return prefix + self._drain() if prefix else self._drain()

    def finish(self) -> bytes:
        """End the message after the upstream body ended normally (spec §6.8)."""
        if self._state == _FRESH:
            self.start()
        if self._state != _OPEN:
            return self._drain()
        self.settle(thinking_only_rule=True)
        if self._state != _DONE:
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
        if self._state == _FRESH:
            self._state = _OPEN
        if self._state != _OPEN:
            return b""
        self._fail(kind, message, error_type)
        return self._drain()

    # -- internals -------------------------------------------------------------------------

    def _drain(self) -> bytes:
        if self._opts.cc_mode and self._state != _FAILED:
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


# -- non-stream ----------------------------------------------------------------------------


class _Assembler(Machine):
    """Collect the blocks of a non-stream response (spec §6.13)."""

    __slots__ = ("_redacted", "_texts", "_thinking_parts", "_thinking_signature", "_tool_blocks")

    def __init__(self, options: TranslateOptions) -> None:
        super().__init__(options, split_thinking=options.thinking and options.extract_thinking)
        self._state = _OPEN
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
        if self._state == _FAILED:
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


# -- Z text sanitizers (spec 6.7) ----------------------------------------------------------

_STRAY_TOKENS: Final = frozenset({"call", "count", "card"})
_STRAY_PREFIXES: Final = frozenset(
    token[:n] for token in _STRAY_TOKENS for n in range(len(token) + 1)
)
REPEAT_GUARD_LIMIT: Final = 32  # spec 6.7: the 32nd identical stray line trips the guard
INVOKE_HOLD_LIMIT: Final = 262_144  # spec 6.7
_TOOL_USE_OPEN: Final = "<tool_use"
_TOOL_USE_CLOSE: Final = "</tool_use>"
_INVOKE_OPEN = re.compile(r"<(?:[A-Za-z_][A-Za-z0-9_]*:)?invoke(?=[\s>/])")
# A line start that may still grow into an invoke open tag.
_INVOKE_PREFIX = re.compile(r"<(?:[A-Za-z_][A-Za-z0-9_]*:?)?(?:i(?:n(?:v(?:o(?:k(?:e)?)?)?)?)?)?")
_INVOKE_CLOSE = re.compile(r"</(?:[A-Za-z_][A-Za-z0-9_]*:)?invoke>")
# A line start that needs a closer look: maybe call/count/card, a fence or a tag.
_NOTABLE_LINE = re.compile(r"\n[^\S\n]*[c`<]")
_NOTABLE_HEAD = re.compile(r"[^\S\n]*[c`<]")
_NAME_ATTR = re.compile(r'name="([^"]*)"')
_PARAM_OPEN = re.compile(r'<(?:[A-Za-z_][A-Za-z0-9_]*:)?parameter name="([^"]*)"[^>]*>')
_PARAM_CLOSE = re.compile(r"</(?:[A-Za-z_][A-Za-z0-9_]*:)?parameter>")

Segment = str | tuple[str, dict[str, Any]]


def _partial_suffix(text: str, tag: str) -> int:
    """Return the length of the longest tail of text that is a proper prefix of tag."""
    start = text.rfind("<", max(0, len(text) - len(tag) + 1))
    if start >= 0 and tag.startswith(text[start:]):
        return len(text) - start
    return 0


def parse_invoke(block: str) -> tuple[str, dict[str, Any]] | None:
    """Parse `<invoke name="X"><parameter name="k">v</parameter>…</invoke>` (spec 6.7)."""
    open_end = block.find(">")
    if open_end < 0:
        return None
    name = _NAME_ATTR.search(block, 0, open_end)
    if name is None or not name.group(1):
        return None
    closes = list(_INVOKE_CLOSE.finditer(block))
    body = block[open_end + 1 : closes[-1].start() if closes else len(block)]
    params: dict[str, Any] = {}
    opens = list(_PARAM_OPEN.finditer(body))
    for i, match in enumerate(opens):
        end = opens[i + 1].start() if i + 1 < len(opens) else len(body)
        # a value runs to the *last* close before the next parameter: values may contain
        # a literal </parameter> (patches)
        value_closes = list(_PARAM_CLOSE.finditer(body, match.end(), end))
        if not value_closes:
            break
        params[match.group(1)] = body[match.end() : value_closes[-1].start()]
    return name.group(1), params


class _Sanitizer:
    """Strip leaked tool markup from streamed text and reclaim `<invoke>` calls (spec 6.7).

    Stage A removes `<tool_use …>…</tool_use>` anywhere. Stage B works on lines: a line-start
    `<invoke>` block naming a declared tool becomes a tool call (and the stray `call`/`count`/
    `card` lines right before it vanish); a stray line repeated 32 times drops all further text.
    `quiet` is True when the next fragment may pass untouched if it has no `<` and no newline.
    """

    __slots__ = (
        "_a_buf",
        "_a_in",
        "_fence",
        "_line_start",
        "_partial",
        "_run",
        "_run_token",
        "_scan_from",
        "_skip_newline",
        "_strays",
        "_tools",
        "_tripped",
        "quiet",
    )

    def __init__(self, tools: frozenset[str]) -> None:
        self._tools = tools  # names an <invoke> may call; empty: reclamation off
        self._a_buf = ""
        self._a_in = False
        self._partial = ""
        self._strays: list[str] = []
        self._line_start = True
        self._fence = False
        self._run = 0
        self._run_token = ""
        self._scan_from = -1  # >= 0 while an <invoke> block is held: where to look for its end
        self._tripped = False
        self._skip_newline = False  # the newline ending a reclaimed <invoke> block
        self.quiet = False

    def push(self, text: str, *, final: bool) -> list[Segment]:
        """Consume a fragment (or flush with final=True); return text and tool segments."""
        segments: list[Segment] = []
        if self._tripped:
            return segments
        text = self._strip_tool_use(text, final)
        if text or final:
            self._lines(text, final, segments)
        if final:
            self._line_start = True  # a tool block or the end follows: next text starts anew
        self.quiet = not (
            self._line_start
            or self._partial
            or self._strays
            or self._a_buf
            or self._a_in
            or self._tripped
            or self._skip_newline
        )
        return segments

    def _strip_tool_use(self, text: str, final: bool) -> str:
        if not self._a_buf and not self._a_in and "<" not in text:
            return text
        s = self._a_buf + text
        self._a_buf = ""
        out: list[str] = []
        i = 0
        while True:
            if self._a_in:
                j = s.find(_TOOL_USE_CLOSE, i)
                if j < 0:
                    if final:
                        self._a_in = False  # spec 6.7: an unclosed block is dropped
                    else:  # keep a close tag that may straddle the next fragment
                        keep = _partial_suffix(s[i:], _TOOL_USE_CLOSE)
                        self._a_buf = s[len(s) - keep :] if keep else ""
                    break
                i = j + len(_TOOL_USE_CLOSE)
                self._a_in = False
                continue
            j = s.find(_TOOL_USE_OPEN, i)
            if j < 0:
                tail = s[i:]
                keep = 0 if final else _partial_suffix(tail, _TOOL_USE_OPEN)
                out.append(tail[: len(tail) - keep])
                self._a_buf = tail[len(tail) - keep :] if keep else ""
                break
            after = j + len(_TOOL_USE_OPEN)
            if after >= len(s):
                out.append(s[i:j])
                if final:
                    out.append(s[j:])
                else:
                    self._a_buf = s[j:]
                break
            if s[after] == ">" or s[after].isspace():
                out.append(s[i:j])
                self._a_in = True
            else:  # `<tool_user>` and friends stay text
                out.append(s[i:after])
            i = after
        return "".join(out)

    def _release_strays(self, segments: list[Segment]) -> None:
        if self._strays:
            segments.append("".join(self._strays))
            self._strays.clear()

    def _lines(self, text: str, final: bool, segments: list[Segment]) -> None:
        s = self._partial + text
        self._partial = ""
        if self._skip_newline and s:
            self._skip_newline = False
            if s[0] == "\n":
                s = s[1:]
        n = len(s)
        i = 0
        while i < n:
            if not self._line_start:
                j = s.find("\n", i)
                if j < 0:
                    segments.append(s[i:])
                    return
                segments.append(s[i : j + 1])
                i = j + 1
                self._line_start = True
                continue
            if self._scan_from >= 0:  # a held <invoke> block starts here
                i = self._invoke_block(s, i, final, segments)
                if i < 0:
                    return
                continue
            # Pass whole lines that cannot be stray tokens, fences or invokes in one go.
            if _NOTABLE_HEAD.match(s, i):
                bulk_end = i
            else:
                found = _NOTABLE_LINE.search(s, i)
                bulk_end = found.start() + 1 if found else s.rfind("\n", i) + 1
            if bulk_end > i:
                self._release_strays(segments)
                chunk = s[i:bulk_end]
                segments.append(chunk)
                if not chunk.isspace():
                    self._run = 0
                i = bulk_end
                continue
            j = s.find("\n", i)
            line = s[i:j] if j >= 0 else s[i:]
            token = line.strip()
            if j >= 0:
                if token in _STRAY_TOKENS:
                    if token == self._run_token:
                        self._run += 1
                    else:
                        self._run_token, self._run = token, 1
                    if self._run >= REPEAT_GUARD_LIMIT:
                        # spec 6.7: a degenerate repeat loop; drop all further text
                        self._strays.clear()
                        self._tripped = True
                        return
                    self._strays.append(s[i : j + 1])
                    i = j + 1
                    continue
                if not token:  # blank lines neither break nor extend a run
                    self._release_strays(segments)
                    segments.append(s[i : j + 1])
                    i = j + 1
                    continue
            elif not final and self._undecided(line):
                self._partial = s[i:]
                return
            self._run = 0
            if line.lstrip().startswith("```"):
                self._fence = not self._fence
            elif self._tools and s[i] == "<" and not self._fence and _INVOKE_OPEN.match(s, i):
                self._scan_from = 0
                i = self._invoke_block(s, i, final, segments)
                if i < 0:
                    return
                continue
            self._release_strays(segments)
            self._line_start = False
        if final:
            self._release_strays(segments)

    def _undecided(self, line: str) -> bool:
        """Tell whether an unfinished line may still be a stray token, a fence or an invoke."""
        stripped = line.lstrip()
        if stripped in _STRAY_PREFIXES or stripped.rstrip() in _STRAY_TOKENS:
            return True
        if stripped in ("`", "``"):
            return True
        return bool(
            self._tools
            and line[:1] == "<"
            and not self._fence
            and _INVOKE_PREFIX.fullmatch(line)
            and not _INVOKE_OPEN.match(line)
        )

    def _invoke_block(self, s: str, i: int, final: bool, segments: list[Segment]) -> int:
        """Settle the `<invoke>` block at s[i]; return where to go on, or -1 to wait."""
        close = _INVOKE_CLOSE.search(s, i + self._scan_from)
        if close is None:
            if not final and len(s) - i <= INVOKE_HOLD_LIMIT:
                self._partial = s[i:]
                self._scan_from = max(0, len(s) - i - 16)  # next time, scan only the new tail
                return -1
            # spec 6.7: unclosed past the hold limit, or at the end: it stays text
            self._scan_from = -1
            self._release_strays(segments)
            segments.append(s[i:])
            self._line_start = False
            return len(s)
        self._scan_from = -1
        end = close.end()
        parsed = parse_invoke(s[i:end])
        if parsed is not None and parsed[0] in self._tools:
            self._strays.clear()  # spec 6.7: stray call/count/card lines before it vanish
            segments.append(parsed)
            if end < len(s):
                end += s[end] == "\n"
            else:
                self._skip_newline = True
            self._line_start = True
        else:
            self._release_strays(segments)
            segments.append(s[i:end])
            self._line_start = False
        return end
