"""The prompt-cache simulation's pure half: which prefixes of a request could be cached.

Kiro reports no cache tokens, so the gateway simulates Anthropic's prompt cache (ZyphrZero's
`cache_metering.rs`, kiro-ops §5.5), keyed on the client's `cache_control` breakpoints as
Anthropic's cache is:

- The prompt is read in Anthropic's order: tools, system, messages. A SHA-256 chain runs over
  the canonical JSON of each block (its `cache_control` left out, so moving a breakpoint does
  not change the prefix), starting from a scope seed.
- Every block that carries `cache_control` is a breakpoint: one `Segment` whose key is the
  chain's digest so far and whose value is the tokens up to and including that block. Its
  TTL is 5 minutes, or 1 hour for `"ttl": "1h"` (anything else counts as 5 minutes).
- Scope, as Z scopes it: the client's session (`metadata.user_id`) or else its key; the system
  key without a session is not metered at all (`scope_seed` returns None).
- System blocks before the first system block with `cache_control` are left out of the chain
  (Z: Claude Code's per-turn dynamic header would otherwise change every prefix); they still
  count toward the total. Without any system breakpoint, every system block is in the chain.

The store (`usage.prompt_cache`) looks the segments up; `estimate` turns the hits into the
`CacheEstimate` that splits the real input total (Z's step 5).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.protocol.convert import extract_session_id
from gateway.protocol.tokens import CacheEstimate, count_all_tokens, count_tokens

FIVE_MINUTES: Final = 300
ONE_HOUR: Final = 3600
_canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


@dataclass(frozen=True, slots=True)
class Segment:
    """A cacheable prefix: its key, the tokens up to its breakpoint, its TTL in seconds."""

    key: str
    tokens: int
    ttl: int


@dataclass(frozen=True, slots=True)
class CachePlan:
    """The breakpoints of one request, in order, and the estimate of its whole input."""

    segments: tuple[Segment, ...]
    prompt_total: int


def scope_seed(body: Mapping[str, Any], *, key_id: int | None, system_key: bool) -> str | None:
    """Return the scope of the request's cache entries, or None when it is not metered."""
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    session = extract_session_id(user_id)
    if session:
        return f"session:{session}"
    if system_key or key_id is None:
        return None
    return f"key:{key_id}"


def _ttl(control: object) -> int:
    ttl = control.get("ttl") if isinstance(control, Mapping) else None
    return ONE_HOUR if ttl == "1h" else FIVE_MINUTES


def _mappings(value: object) -> list[Mapping[str, Any]]:
    """The dict items of a list; nothing for any other value (the body is not validated yet)."""
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def _blocks(value: object) -> list[Mapping[str, Any]]:
    """A string content or system is one text block; anything else keeps its dict blocks."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    return _mappings(value)


def _block_tokens(block: Mapping[str, Any]) -> int:
    text = block.get("text")
    return count_tokens(text) if isinstance(text, str) else 0


def _tool_tokens(tool: Mapping[str, Any]) -> int:
    total = sum(
        count_tokens(value)
        for value in (tool.get("name"), tool.get("description"))
        if isinstance(value, str)
    )
    schema = tool.get("input_schema")
    return total + count_tokens(_canonical(schema if schema is not None else {}))


def _system_in_chain(system: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    for index, block in enumerate(system):
        if "cache_control" in block:
            return system[index:]
    return system


class _Chain:
    def __init__(self, seed: str) -> None:
        self._digest = hashlib.sha256(seed.encode())
        self.tokens = 0
        self.segments: list[Segment] = []

    def add(self, marker: str, block: Mapping[str, Any], tokens: int) -> None:
        content = {name: value for name, value in block.items() if name != "cache_control"}
        self._digest.update(marker.encode() + b"\x00" + _canonical(content).encode() + b"\x00")
        self.tokens += tokens
        if isinstance(block.get("cache_control"), Mapping):
            key = self._digest.copy().hexdigest()[:32]
            self.segments.append(Segment(key, self.tokens, _ttl(block["cache_control"])))


def plan(body: Mapping[str, Any], seed: str) -> CachePlan:
    """Build the breakpoints of an Anthropic request body.

    The body is only parsed, not yet validated (the conversion refuses it later with a 400),
    so a field of the wrong type counts as absent instead of raising."""
    tools = _mappings(body.get("tools"))
    system = _blocks(body.get("system"))
    messages = _mappings(body.get("messages"))
    chain = _Chain(seed)
    for tool in tools:
        chain.add("tool", tool, _tool_tokens(tool))
    for block in _system_in_chain(system):
        chain.add("system", block, _block_tokens(block))
    for message in messages:
        role = str(message.get("role", ""))
        for block in _blocks(message.get("content")):
            chain.add(role, block, _block_tokens(block))
    total = count_all_tokens("", body.get("system"), messages, tools)
    return CachePlan(tuple(chain.segments), max(total, chain.tokens, 1))


def estimate(cache_plan: CachePlan, hits: Iterable[str]) -> CacheEstimate:
    """Split the request by its deepest cached breakpoint (read) and its last one (covered).

    The shares scale the real input total later (`CacheEstimate.split`), so that
    `input + creation + read` is always the total the upstream or the estimate gave."""
    if not cache_plan.segments:
        return CacheEstimate()
    hit = set(hits)
    covered = cache_plan.segments[-1].tokens
    read = max((s.tokens for s in cache_plan.segments if s.key in hit), default=0)
    if covered <= 0:
        return CacheEstimate()
    return CacheEstimate(covered=covered / cache_plan.prompt_total, read=read / covered)
