"""Answer Anthropic's native web_search tool through Kiro's MCP search (spec kiro-protocol §11).

Pure: the dispatcher does the I/O (the MCP and generateAssistantResponse calls, with the §7
retries) and hands the answers to the functions and the state machine here.

Single-tool path (§11.2-§11.4)::

    query = extract_query(body)                        # ConversionError -> 400
    request_id, payload = mcp_request(query)
    outcome = parse_mcp_response(status, response_body)
    if outcome.failed:
        raise outcome.failure()                        # 502, never a fake "no results"
    render_search_stream(query, outcome, model=..., input_tokens=E)  # or render_search_message

Mixed tools (§11.5, Z's agentic loop)::

    loop = WebSearchLoop(body, options)
    while not loop.done:
        conversion = loop.next_request()               # send conversion.kiro_body upstream
        queries = loop.feed_round(events, complete=read_ok)   # may raise UpstreamFailure
        if queries:
            loop.add_search_results([search(q) for q in queries])  # may raise UpstreamFailure
    loop.finish_stream()  # or loop.finish_message(); loop.result for the usage record

Where we differ from the proxies (each is marked in the code):

* A failed search (JSON-RPC error, `isError`, unreadable HTTP answer) is an error for the
  client on both paths: H answers "No results found." with a 200, which hides the outage.
  `-32602 Tool returned no results` is an empty result on both paths (Z: only in the loop).
* `web_search_tool_result` blocks carry `tool_use_id`: Anthropic's schema requires it and the
  SDKs parse it; Z leaves it out on the mistaken belief that the API does too.
* The loop's final usage is summed over all rounds, `message_delta` carries the full usage
  plus `server_tool_use.web_search_requests`, and reasoning is returned as standard thinking
  blocks instead of Z's top-level `kiro_thinking` string.
* A web_search call without a usable query is answered to the model as an `invalid_input`
  error (and shown to the client as `web_search_tool_result_error`) instead of searching "".
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypedDict

from gateway.protocol import sse
from gateway.protocol.convert import Conversion, ConvertOptions, convert_request
from gateway.protocol.errors import ErrorType, UpstreamFailure
from gateway.protocol.events import KiroEvent, ToolUse
from gateway.protocol.models import ConversionError
from gateway.protocol.tokens import count_all_tokens
from gateway.protocol.tools import restore_tool_call
from gateway.protocol.translate import (
    TranslateOptions,
    TranslationResult,
    assemble_result,
)

__all__ = [
    "MAX_SEARCH_ROUNDS",
    "SearchError",
    "SearchOutcome",
    "SearchResult",
    "WebSearchLoop",
    "default_translate_options",
    "extract_query",
    "format_page_age",
    "mcp_request",
    "new_search_message_id",
    "new_server_tool_id",
    "parse_mcp_response",
    "query_from_input",
    "render_search_message",
    "render_search_stream",
    "summary_text",
]

WEB_SEARCH: Final = "web_search"
#: spec 11.5: at most this many rounds are answered with searches and sent back upstream.
MAX_SEARCH_ROUNDS: Final = 5
#: spec 11.2: Claude Code's WebSearch tool phrases its sub-request this way.
CLAUDE_CODE_PREFIX: Final = "Perform a web search for the query: "
#: spec 11.4: snippets are cut to this many characters in the summary text.
SNIPPET_LIMIT: Final = 200
#: spec 11.4: the summary goes out in text deltas of at most this many characters.
DELTA_CHARS: Final = 100
#: JSON-RPC "invalid params"; Kiro's MCP uses it for an empty result set (spec 11.3).
NO_RESULTS_CODE: Final = -32602
SUMMARY_FOOTER: Final = (
    "\nPlease note that these are web search results and may not be fully accurate or up-to-date."
)
NO_RESULTS_LINE: Final = "No results found.\n"
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

_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ID22_ALPHABET: Final = string.ascii_letters + string.digits
_ID8_ALPHABET: Final = string.ascii_lowercase + string.digits
_MAX_NESTING: Final = 8

SearchErrorKind = Literal["rpc_error", "no_results", "bad_response", "invalid_input"]
TranslateOptionsFactory = Callable[[Conversion, Mapping[str, Any]], TranslateOptions]


class WebSearchResultBlock(TypedDict):
    type: Literal["web_search_result"]
    title: str
    url: str
    encrypted_content: str
    page_age: str | None


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One hit of Kiro's search (spec 11.3); the fields no client sees are not kept."""

    title: str
    url: str
    snippet: str | None = None
    published_ms: int | None = None

    @property
    def page_age(self) -> str | None:
        return None if self.published_ms is None else format_page_age(self.published_ms)

    def block(self) -> WebSearchResultBlock:
        """Render the hit as an Anthropic `web_search_result` (spec 11.4)."""
        return {
            "type": "web_search_result",
            "title": self.title,
            "url": self.url,
            # spec 11.4: `encrypted_content` is just the plain snippet
            "encrypted_content": self.snippet or "",
            "page_age": self.page_age,
        }


@dataclass(frozen=True, slots=True)
class SearchError:
    """Why a search gave no results.

    `no_results` is benign (an empty or unreadable result list, rendered "No results found.");
    `invalid_input` is a call without a query; the other kinds are failures.
    """

    kind: SearchErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """The parsed answer of one MCP search."""

    results: tuple[SearchResult, ...] = ()
    error: SearchError | None = None

    @property
    def failed(self) -> bool:
        """Tell whether the search failed, as opposed to finding nothing."""
        return self.error is not None and self.error.kind in ("rpc_error", "bad_response")

    def failure(self) -> UpstreamFailure:
        """Return the 502 the client gets for a failed search."""
        message = self.error.message if self.error is not None else "unknown error"
        return UpstreamFailure(
            "api_error", f"Web search failed: {message}", 502, kind=ErrorType.WEB_SEARCH_FAILED
        )


# --- single-tool path ------------------------------------------------------------------------


def extract_query(body: Mapping[str, Any]) -> str:
    """Take the search query from the first message (spec 11.2), or raise ConversionError.

    `role: "system"` messages (Claude Code >= 2.1) are skipped: they are never the query.
    """
    messages = body.get("messages") if isinstance(body, Mapping) else None
    first = None
    if isinstance(messages, list):
        first = next(
            (m for m in messages if not (isinstance(m, Mapping) and m.get("role") == "system")),
            None,
        )
    content = first.get("content") if isinstance(first, Mapping) else None
    text: object = None
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and content:
        block = content[0]
        if isinstance(block, Mapping) and block.get("type") == "text":
            text = block.get("text")
    query = text.removeprefix(CLAUDE_CODE_PREFIX).strip() if isinstance(text, str) else ""
    if not query:
        raise ConversionError(
            "messages",
            "unable to extract a web search query: the first message must be non-empty text",
        )
    return query


def mcp_request(
    query: str, *, rng: random.Random | None = None, now_ms: int | None = None
) -> tuple[str, bytes]:
    """Build the JSON-RPC id and the compact body of one MCP search call (spec 11.3)."""
    rng = rng or random.Random()
    stamp = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    request_id = (
        f"web_search_tooluse_{''.join(rng.choices(_ID22_ALPHABET, k=22))}"
        f"_{stamp}_{''.join(rng.choices(_ID8_ALPHABET, k=8))}"
    )
    body = {  # spec 11.3: this key order, compact, raw UTF-8
        "id": request_id,
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": WEB_SEARCH, "arguments": {"query": query}},
    }
    return request_id, sse.to_bytes(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def parse_mcp_response(status: int, body: bytes) -> SearchOutcome:
    """Parse an MCP answer into results, "no results" or a failure (spec 11.3)."""
    if not 200 <= status < 300:
        return _bad(f"MCP HTTP {status}: {_snippet(body)}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _bad(f"MCP answer is not JSON: {_snippet(body)}")
    if not isinstance(data, dict):
        return _bad("MCP answer is not a JSON object")
    if not isinstance(data.get("id"), str) or not isinstance(data.get("jsonrpc"), str):
        return _bad("MCP answer lacks the JSON-RPC id or version")
    error = data.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        code = code if isinstance(code, int) and not isinstance(code, bool) else -1
        text = error.get("message") if isinstance(error, dict) else None
        text = text if isinstance(text, str) else "Unknown error"
        if code == NO_RESULTS_CODE and "no results" in text.lower():
            # spec 11.3: `-32602 Tool returned no results` is an empty result, not a failure
            return SearchOutcome(error=SearchError("no_results", text))
        return SearchOutcome(error=SearchError("rpc_error", f"MCP error: {code} - {text}"))
    result = data.get("result")
    content = result.get("content") if isinstance(result, dict) else None
    first = content[0] if isinstance(content, list) and content else None
    if not isinstance(first, dict) or first.get("type") != "text":
        return _none("MCP answer has no text content")
    inner_text = first.get("text")
    if not isinstance(inner_text, str):
        return _none("MCP answer has no text content")
    if isinstance(result, dict) and result.get("isError") is True:
        # Ours: the tool reported an error in its text; H would parse it and show nothing.
        return SearchOutcome(error=SearchError("rpc_error", f"MCP tool error: {inner_text[:200]}"))
    return _parse_results(inner_text)


def _parse_results(text: str) -> SearchOutcome:
    """Parse the inner `{"results": [...]}` document; unreadable means "no results" (11.3)."""
    try:
        inner = json.loads(text)
    except (ValueError, RecursionError):
        return _none("MCP search results are not JSON")
    raw = inner.get("results") if isinstance(inner, dict) else None
    if not isinstance(raw, list):
        return _none("MCP search results lack a results list")
    # Unlike the proxies (one bad entry voids the whole list) we skip only the bad entries.
    results = tuple(hit for item in raw if (hit := _result(item)) is not None)
    if results:
        return SearchOutcome(results=results)
    reason = inner.get("error")
    return _none(reason if isinstance(reason, str) and reason else "no results")


def _result(item: object) -> SearchResult | None:
    if not isinstance(item, dict):
        return None
    title, url = item.get("title"), item.get("url")
    if not isinstance(title, str) or not isinstance(url, str):
        return None  # spec 11.3: title and url are required
    snippet = item.get("snippet")
    published = item.get("publishedDate")
    if isinstance(published, float) and published.is_integer():
        published = int(published)
    return SearchResult(
        title=title,
        url=url,
        snippet=snippet if isinstance(snippet, str) else None,
        published_ms=published
        if isinstance(published, int) and not isinstance(published, bool)
        else None,
    )


def _bad(message: str) -> SearchOutcome:
    return SearchOutcome(error=SearchError("bad_response", message))


def _none(message: str) -> SearchOutcome:
    return SearchOutcome(error=SearchError("no_results", message))


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace")


def format_page_age(published_ms: int) -> str | None:
    """Format epoch milliseconds as `January 1, 2025` (UTC), or None when out of range."""
    try:
        moment = _EPOCH + timedelta(milliseconds=published_ms)
    except OverflowError:
        return None
    return f"{_MONTHS[moment.month - 1]} {moment.day}, {moment.year}"


def summary_text(query: str, outcome: SearchOutcome) -> str:
    """Build the summary text S shown to the client and fed back upstream (spec 11.4)."""
    parts = [f'Here are the search results for "{query}":\n\n']
    for number, hit in enumerate(outcome.results, start=1):
        parts.append(f"{number}. **{hit.title}**\n")
        if hit.snippet is not None:
            snippet = hit.snippet
            if len(snippet) > SNIPPET_LIMIT:
                snippet = snippet[:SNIPPET_LIMIT] + "..."
            parts.append(f"   {snippet}\n")
        parts.append(f"   Source: {hit.url}\n\n")
    if not outcome.results:
        parts.append(NO_RESULTS_LINE)
    parts.append(SUMMARY_FOOTER)
    return "".join(parts)


def new_server_tool_id() -> str:
    """Return a fresh `srvtoolu_<32 hex>` id (spec 11.4)."""
    return f"srvtoolu_{uuid.uuid4().hex}"


def new_search_message_id() -> str:
    """Return a fresh `msg_<24 hex>` id, the web-search flavour (spec 11.4)."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def _search_blocks(
    query: str, outcome: SearchOutcome, tool_use_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the `server_tool_use` + `web_search_tool_result` pair of one search."""
    use = {
        "type": "server_tool_use",
        "id": tool_use_id,
        "name": WEB_SEARCH,
        "input": {"query": query},
    }
    content: list[WebSearchResultBlock] | dict[str, str]
    if outcome.error is not None and outcome.error.kind == "invalid_input":
        content = {"type": "web_search_tool_result_error", "error_code": "invalid_input"}
    else:
        content = [hit.block() for hit in outcome.results]
    # Ours: Anthropic's block has `tool_use_id`; Z (spec 11.4) leaves it out.
    result = {"type": "web_search_tool_result", "tool_use_id": tool_use_id, "content": content}
    return use, result


def _output_tokens(summary: str) -> int:
    """Estimate the output of a pre-built answer: UTF-8 bytes / 4, rounded up (spec 11.4)."""
    return (len(summary.encode("utf-8", "surrogatepass")) + 3) // 4


def _require_success(outcome: SearchOutcome) -> None:
    if outcome.failed:
        raise outcome.failure()


def render_search_stream(
    query: str,
    outcome: SearchOutcome,
    *,
    model: str,
    input_tokens: int,
    message_id: str | None = None,
    tool_use_id: str | None = None,
) -> bytes:
    """Render the single-search answer as the fixed SSE event list of spec 11.4 (Z flavour).

    Raises the outcome's `UpstreamFailure` for a failed search rather than render it as
    "No results found." (the caller should have checked `outcome.failed` already).
    """
    _require_success(outcome)
    message_id = message_id or new_search_message_id()
    tool_use_id = tool_use_id or new_server_tool_id()
    summary = summary_text(query, outcome)
    use, result = _search_blocks(query, outcome, tool_use_id)
    out = [
        _event(
            "message_start",
            {
                "type": "message_start",
                "message": {  # spec 11.4: no stop_sequence key here
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "usage": _start_usage(input_tokens, 0, 0),
                },
            },
        ),
        *_text_block(0, f'I\'ll search for "{query}".'),
        *_whole_block(1, use),
        *_whole_block(2, result),
        *_text_block(3, summary),
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {
                    "output_tokens": _output_tokens(summary),
                    "server_tool_use": {"web_search_requests": 1},
                },
            },
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]
    return sse.to_bytes("".join(out))


def render_search_message(
    query: str,
    outcome: SearchOutcome,
    *,
    model: str,
    input_tokens: int,
    message_id: str | None = None,
    tool_use_id: str | None = None,
) -> dict[str, Any]:
    """Render the single-search answer as Z's non-stream JSON message (spec 11.4)."""
    _require_success(outcome)
    summary = summary_text(query, outcome)
    use, result = _search_blocks(query, outcome, tool_use_id or new_server_tool_id())
    return {
        "id": message_id or new_search_message_id(),
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "text", "text": f'I\'ll search for "{query}".'},
            use,
            result,
            {"type": "text", "text": summary},
        ],
        "model": model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": _output_tokens(summary),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "server_tool_use": {"web_search_requests": 1},
        },
    }


# --- SSE helpers -----------------------------------------------------------------------------

# spec 6.1: the proxies' data objects have alphabetically sorted keys.
_sorted_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _event(name: str, data: Mapping[str, Any]) -> str:
    return f"event: {name}\ndata: {_sorted_dumps(data)}\n\n"


def _start_usage(input_tokens: int, creation: int, read: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": 0,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
    }


def _chunks(text: str) -> list[str]:
    """Cut text into pieces of at most DELTA_CHARS characters (spec 11.4)."""
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)]


def _start(index: int, block: Mapping[str, Any]) -> str:
    return _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _delta(index: int, delta: Mapping[str, Any]) -> str:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _stop(index: int) -> str:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


def _text_block(index: int, text: str) -> list[str]:
    deltas = [_delta(index, {"type": "text_delta", "text": piece}) for piece in _chunks(text)]
    return [_start(index, {"type": "text", "text": ""}), *deltas, _stop(index)]


def _whole_block(index: int, block: Mapping[str, Any]) -> list[str]:
    """Send a server block whole in its start event, as Anthropic does (spec 11.4)."""
    return [_start(index, block), _stop(index)]


def _block_events(index: int, block: Mapping[str, Any]) -> list[str]:
    """Render one finished content block as start, deltas and stop (spec 11.5 step 4)."""
    kind = block["type"]
    if kind == "text":
        return _text_block(index, block["text"])
    if kind == "tool_use":
        partial = json.dumps(block["input"], ensure_ascii=False, separators=(",", ":"))
        head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        return [
            _start(index, head),
            _delta(index, {"type": "input_json_delta", "partial_json": partial}),
            _stop(index),
        ]
    if kind == "thinking":
        deltas = [
            _delta(index, {"type": "thinking_delta", "thinking": piece})
            for piece in _chunks(block["thinking"])
        ]
        signature = {"type": "signature_delta", "signature": block["signature"]}
        return [
            _start(index, {"type": "thinking", "thinking": ""}),
            *deltas,
            _delta(index, signature),
            _stop(index),
        ]
    return _whole_block(index, block)  # server_tool_use, web_search_tool_result, redacted


# --- mixed-tools loop ------------------------------------------------------------------------


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
        out = [
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": self._message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": self._model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        # The stream is built after the last round: the summed input is known.
                        "usage": _start_usage(self._input, self._creation, self._read),
                    },
                },
            )
        ]
        for index, block in enumerate(content):
            out.extend(_block_events(index, block))
        out.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason()},
                    "usage": self._usage(),
                },
            )
        )
        out.append(_event("message_stop", {"type": "message_stop"}))
        return sse.to_bytes("".join(out))

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
                content.extend(_search_blocks(query, outcome, new_server_tool_id()))
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
            self._pairs.extend(_search_blocks(query, outcome, new_server_tool_id()))
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
