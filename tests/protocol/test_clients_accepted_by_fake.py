"""Captured client requests convert into bodies the fake upstream's validator accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.fakekiro.validate import validate_generate_request
from gateway.protocol.convert import ConvertOptions, convert_request, encode_body

CLIENTS = Path(__file__).resolve().parents[3] / "shared" / "spec" / "clients"
ANTHROPIC_CAPTURES = [
    "claude-code-turn1.json",
    "claude-code-turn2-tool-result.json",
    "anthropic-sdk-stream.json",
]


@pytest.mark.parametrize("endpoint", ["ide", "cli"])
@pytest.mark.parametrize("name", ANTHROPIC_CAPTURES)
def test_the_fake_accepts_the_converted_capture(name: str, endpoint: str) -> None:
    body = json.loads((CLIENTS / name).read_text())["body"]

    conversion = convert_request(body, options=ConvertOptions(endpoint=endpoint))
    wire = json.loads(encode_body(conversion.kiro_body))

    assert validate_generate_request(wire, endpoint=endpoint) == []


def test_the_fake_rejects_a_body_that_breaks_alternation() -> None:
    body = json.loads((CLIENTS / "claude-code-turn2-tool-result.json").read_text())["body"]
    wire = json.loads(encode_body(convert_request(body, options=ConvertOptions()).kiro_body))
    history = wire["conversationState"]["history"]
    history.append(history[-2])  # a second user turn in a row

    assert validate_generate_request(wire, endpoint="ide") != []
