"""The state machine of the Kiro → Anthropic translation (spec kiro-protocol §6).

One state machine, `Machine`, decides blocks, thinking, tools, stop reason and usage; thin
subclasses render it: `StreamTranslator` as Anthropic SSE bytes (one bytes object per upstream
read, PERF-NOTES; gateway/protocol/anthropic_stream.py), the assembler of the non-stream JSON
message (§6.13; gateway/protocol/assemble.py), and the OpenAI stream renderers of
gateway/protocol/openai_stream.py (§12). A streaming renderer offers `translate.Renderer`, the
interface `dispatch.relay` drives.

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
* Text sanitizers (§6.7, Z): `<tool_use>` stripping, `<invoke>` reclamation, repeat guard, in
  gateway/protocol/sanitize.py (which holds back less text than Z).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.protocol.errors import ErrorType, upstream_kind
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
from gateway.protocol.sanitize import Sanitizer
from gateway.protocol.thinking import CLOSE, OPEN, TEXT, THINKING, Op, ThinkingSplitter
from gateway.protocol.tokens import estimate_tokens
from gateway.protocol.translate import TranslateOptions, TranslationResult

# spec 6.5/6.6: Z's placeholder when upstream gave no real signature.
THINKING_SIGNATURE_PLACEHOLDER: Final = "kiro-rs-thinking-signature"
CONTENT_LENGTH_EXCEEDED: Final = "ContentLengthExceededException"
TOOL_JSON_ERROR: Final = ErrorType.TOOL_JSON_CUT  # Z sends it as the client type; we never do
REDACTED_THINKING_TOKENS: Final = 8  # spec 6.10 (Z)

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


def _join_surrogates(text: str) -> str:
    """Pair up surrogate halves that arrived in separate events."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


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
        self._sanitizer: Sanitizer | None = None
        if options.sanitize:
            # spec 6.7: an <invoke> may name a declared tool, original or shortened
            names = options.declared_tools.union(options.tool_names)
            self._sanitizer = Sanitizer(names if options.declared_tools else frozenset())
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
