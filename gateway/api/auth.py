"""Client-key authentication for /v1 and /cc/v1 (spec kiro-ops §4.1)."""

from __future__ import annotations

import hashlib

from django.http import HttpRequest


def presented_key(request: HttpRequest) -> str | None:
    """Return the key from `x-api-key`, else from `Authorization: Bearer <key>`."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("Bearer "):  # exact and case-sensitive, as kiro-rs
        return authorization[len("Bearer ") :].strip() or None
    return None


def key_hash(key: str) -> str:
    """Hash a presented key for the one indexed lookup (the plaintext is never stored)."""
    return hashlib.sha256(key.encode()).hexdigest()
