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

Mixed tools (§11.5, Z's agentic loop): `gateway.protocol.websearch_loop.WebSearchLoop`, which
renders its answer with the blocks and the SSE body built here.

Where we differ from the proxies (each is marked in the code):

* A failed search (JSON-RPC error, `isError`, unreadable HTTP answer) is an error for the
  client on both paths: H answers "No results found." with a 200, which hides the outage.
  `-32602 Tool returned no results` is an empty result on both paths (Z: only in the loop).
* `web_search_tool_result` blocks carry `tool_use_id`: Anthropic's schema requires it and the
  SDKs parse it; Z leaves it out on the mistaken belief that the API does too.
* A web_search call without a usable query (in the loop) is rendered as a
  `web_search_tool_result_error` with `invalid_input`.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypedDict

from gateway.protocol import sse
from gateway.protocol.errors import ErrorType, UpstreamFailure
from gateway.protocol.models import ConversionError

__all__ = [
    "SearchError",
    "SearchOutcome",
    "SearchResult",
    "extract_query",
    "format_page_age",
    "mcp_request",
    "new_search_message_id",
    "new_server_tool_id",
    "parse_mcp_response",
    "render_search_message",
    "render_search_stream",
    "render_stream",
    "search_blocks",
    "start_usage",
    "summary_text",
]

WEB_SEARCH: Final = "web_search"
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

SearchErrorKind = Literal["rpc_error", "no_results", "bad_response", "invalid_input"]


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


def search_blocks(
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


def _answer(
    query: str, outcome: SearchOutcome, tool_use_id: str
) -> tuple[str, list[dict[str, Any]]]:
    """Return the summary and the four content blocks of the single-search answer (11.4)."""
    summary = summary_text(query, outcome)
    use, result = search_blocks(query, outcome, tool_use_id)
    intro = {"type": "text", "text": f'I\'ll search for "{query}".'}
    return summary, [intro, use, result, {"type": "text", "text": summary}]


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
    summary, content = _answer(query, outcome, tool_use_id or new_server_tool_id())
    message = {  # spec 11.4: no stop_sequence key here
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "usage": start_usage(input_tokens, 0, 0),
    }
    delta = {
        "delta": {"stop_reason": "end_turn"},
        "usage": {
            "output_tokens": _output_tokens(summary),
            "server_tool_use": {"web_search_requests": 1},
        },
    }
    return render_stream(message, content, delta)


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
    summary, content = _answer(query, outcome, tool_use_id or new_server_tool_id())
    return {
        "id": message_id or new_search_message_id(),
        "type": "message",
        "role": "assistant",
        "content": content,
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


def start_usage(input_tokens: int, creation: int, read: int) -> dict[str, int]:
    """Return the usage of a `message_start` event: the input known, no output yet."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": 0,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
    }


def render_stream(
    message: Mapping[str, Any],
    content: Sequence[Mapping[str, Any]],
    delta: Mapping[str, Any],
) -> bytes:
    """Render a finished message as one pre-built SSE body (spec 11.4, 11.5 step 4).

    `message` is the `message_start` message, `content` its finished blocks and `delta` the
    `message_delta` event's `delta` and `usage`.
    """
    out = [_event("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(content):
        out.extend(_block_events(index, block))
    out.append(_event("message_delta", {"type": "message_delta", **delta}))
    out.append(_event("message_stop", {"type": "message_stop"}))
    return sse.to_bytes("".join(out))


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
