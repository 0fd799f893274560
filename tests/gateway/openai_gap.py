"""The two known gaps of the OpenAI endpoints, until gateway/openai_views.py is rewritten.

A body they refuse with 400 leaves no usage record, and they read the body before the key.
Tests mark their OpenAI cases `pending(...)` and raise KnownOpenAIGap for exactly these two
failures, so any other failure on those endpoints still fails the test. Once the rewrite is
merged, remove `pending` (the marks are not strict: the cases then simply pass).
"""

from __future__ import annotations

from typing import Any

import pytest

OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses")


class KnownOpenAIGap(AssertionError):
    """A rejected OpenAI request without its record, or with its body checked before the key."""


def pending(path: str) -> Any:
    """Parametrize with `path`, marked as waiting for the OpenAI rewrite if it is an OpenAI one."""
    if path not in OPENAI_PATHS:
        return path
    return pytest.param(
        path,
        marks=pytest.mark.xfail(
            strict=False,
            raises=KnownOpenAIGap,
            reason="rejected OpenAI requests leave no record and their body is checked before "
            "the key: fixed by the OpenAI endpoint rewrite (gateway/openai_views.py)",
        ),
    )


def check(path: str, condition: bool, what: str) -> None:
    """Assert a record count or the key-first order; on an OpenAI path it is a known gap."""
    if condition:
        return
    if path in OPENAI_PATHS:
        raise KnownOpenAIGap(what)
    raise AssertionError(what)
