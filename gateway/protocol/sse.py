"""Encode Anthropic server-sent events (spec kiro-protocol §6.1).

Every event is `event: <name>\\ndata: <compact JSON>\\n\\n` on one `data:` line. The Rust
proxies emit object keys in alphabetical order (§0); callers that want byte-identical output
build their dicts in that order, which costs nothing, instead of paying for `sort_keys`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# spec 6.1: the keep-alive is a literal string, with a space after the colon.
PING = b'event: ping\ndata: {"type": "ping"}\n\n'

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The C string encoder json uses for ensure_ascii=False; one call per text delta.
json_string = json.encoder.encode_basestring


def encode_text(event: str, data: Mapping[str, Any]) -> str:
    """Render one SSE event as text.

    The translator joins many of these and encodes once per upstream read (PERF-NOTES).
    """
    return f"event: {event}\ndata: {dumps(data)}\n\n"


def encode(event: str, data: Mapping[str, Any]) -> bytes:
    """Render one SSE event as UTF-8 bytes."""
    return to_bytes(encode_text(event, data))


def flush(parts: list[str]) -> bytes:
    """Join the SSE text a renderer collected, empty the list and encode it (`to_bytes`):
    one bytes object per upstream read (PERF-NOTES)."""
    if not parts:
        return b""
    text = "".join(parts)
    parts.clear()
    return to_bytes(text)


def to_bytes(text: str) -> bytes:
    """Encode SSE text as UTF-8, replacing lone surrogates instead of raising.

    Upstream JSON may carry `\\ud83d` escapes split from their partner; a strict encode would
    abort the whole stream for one unpaired half.
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()
