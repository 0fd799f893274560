"""Local token estimates (spec kiro-protocol §10, §6.10) and the cache split (kiro-ops §5.5).

No tokenizer: the proxies count characters with a few weights, and clients compare our figures
with theirs, so the arithmetic is reproduced exactly, float operations included.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.protocol.models import ConversionError

# spec 10.1: these ranges are "western" (weight 1); every other char weighs 4.
_NON_WESTERN = re.compile("[^\u0000-\u024f\u1e00-\u1eff\u2c60-\u2c7f\ua720-\ua7ff\uab30-\uab6f]")
# spec 6.10: the streaming estimator only treats CJK Unified Ideographs specially.
_CJK = re.compile("[\u4e00-\u9fff]")
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def count_tokens(text: str) -> int:
    """Estimate the tokens of one piece of text (spec §10.1)."""
    if not text:
        return 0
    units = len(text)
    if not text.isascii():
        units += 3 * len(_NON_WESTERN.findall(text))
    t = units / 4
    if t < 100:
        m = 1.5
    elif t < 200:
        m = 1.3
    elif t < 300:
        m = 1.25
    elif t < 800:
        m = 1.2
    else:
        m = 1.0
    return math.floor(t * m)


def estimate_tokens(text: str) -> int:
    """Estimate the output tokens of one streamed fragment (spec §6.10).

    Applied per upstream event and summed, like both proxies do; never less than 1.
    """
    if text.isascii():  # O(1) on CPython: the common case costs one division
        return max(1, (len(text) + 3) // 4)
    cjk = len(_CJK.findall(text))
    other = len(text) - cjk
    return max(1, (2 * cjk + 2) // 3 + (other + 3) // 4)


def count_all_tokens(
    model: str,
    system: str | Iterable[Mapping[str, Any]] | None,
    messages: Iterable[Mapping[str, Any]],
    tools: Iterable[Mapping[str, Any]] | None,
) -> int:
    """Estimate the input tokens of an Anthropic request locally (spec §10.2).

    Counted per piece, so many small pieces are inflated by up to 1.5x, as in the proxies.
    Tool inputs, tool results, thinking blocks and images count zero. `model` is unused by
    the local estimate; it is part of the signature because the remote counter needs it.
    """
    del model
    # Counted before (count_tokens) or without (key limits) the full conversion: the three
    # shapes are checked here, so that a malformed body is a 400, never a TypeError.
    if system is not None and not isinstance(system, str | list | tuple):
        raise ConversionError("system", "must be a string or a list of text blocks")
    if not isinstance(messages, list | tuple):
        raise ConversionError("messages", "must be a list of messages")
    if tools is not None and not isinstance(tools, list | tuple):
        raise ConversionError("tools", "must be a list of tools")
    total = 0
    if isinstance(system, str):
        total += count_tokens(system)
    elif system:
        for block in system:
            text = block.get("text") if isinstance(block, Mapping) else None
            if isinstance(text, str):
                total += count_tokens(text)
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            total += count_tokens(content)
        elif isinstance(content, list):
            for item in content:
                text = item.get("text") if isinstance(item, Mapping) else None
                if isinstance(text, str):
                    total += count_tokens(text)
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        for key in ("name", "description"):
            value = tool.get(key)
            if isinstance(value, str):
                total += count_tokens(value)
        schema = tool.get("input_schema")
        total += count_tokens(_compact(schema if schema is not None else {}))
    return max(total, 1)


@dataclass(frozen=True, slots=True)
class CacheEstimate:
    """The simulated prompt-cache coverage of one request (kiro-ops §5.5 step 5).

    `covered` = covered_est / prompt_total_est and `read` = cache_read_est / covered_est,
    both in 0..1, computed before the upstream call by the cache simulation.
    """

    covered: float = 0.0
    read: float = 0.0

    def split(self, total: int) -> tuple[int, int, int]:
        """Split a total input figure into (input, cache_creation, cache_read)."""
        covered = min(max(self.covered, 0.0), 1.0)
        read_share = min(max(self.read, 0.0), 1.0)
        cache_total = _round(total * covered)
        read = _round(cache_total * read_share)
        return total - cache_total, cache_total - read, read


def _round(value: float) -> int:
    """Round half away from zero, as Rust's f64::round does (Python's round is banker's)."""
    return math.floor(value + 0.5)
