"""Request bodies and helpers shared by the fake-upstream tests."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from gateway.fakekiro.server import FakeKiroThread
from gateway.protocol.events import KiroEvent, parse_message
from gateway.protocol.eventstream import EventStreamDecoder, Message, SkippedRegion

TIMEOUT = httpx.Timeout(5.0)
MODEL = "claude-sonnet-4.5"

# spec kiro-protocol §2.11, abridged policy text; the converter's canonical output shape.
SPEC_EXAMPLE: dict[str, Any] = {
    "conversationState": {
        "agentContinuationId": "6f1c2d8e-0b7a-4c1e-9a55-2f0e8d1b3c44",
        "agentTaskType": "vibe",
        "chatTriggerType": "MANUAL",
        "conversationId": "0b4445e1-f5be-49e1-87ce-62bbc28ad705",
        "currentMessage": {
            "userInputMessage": {
                "userInputMessageContext": {
                    "tools": [
                        {
                            "toolSpecification": {
                                "name": "get_weather",
                                "description": "Get current weather",
                                "inputSchema": {
                                    "json": {
                                        "type": "object",
                                        "properties": {"city": {"type": "string"}},
                                        "required": ["city"],
                                        "additionalProperties": True,
                                    }
                                },
                            }
                        }
                    ],
                    "toolResults": [
                        {
                            "toolUseId": "toolu_01",
                            "content": [{"text": "18°C"}],
                            "status": "success",
                        }
                    ],
                },
                "content": "",
                "modelId": MODEL,
                "origin": "AI_EDITOR",
            }
        },
        "history": [
            {
                "userInputMessage": {
                    "content": "<thinking_mode>enabled</thinking_mode>\nYou are terse.",
                    "modelId": MODEL,
                    "origin": "AI_EDITOR",
                }
            },
            {"assistantResponseMessage": {"content": "I will follow these instructions."}},
            {
                "userInputMessage": {
                    "content": "Weather in Paris?",
                    "modelId": MODEL,
                    "origin": "AI_EDITOR",
                }
            },
            {
                "assistantResponseMessage": {
                    "content": "Checking.",
                    "toolUses": [
                        {"toolUseId": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
                    ],
                }
            },
        ],
    },
    "profileArn": "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK",
}


def spec_example() -> dict[str, Any]:
    """Return a fresh deep copy of the §2.11 body."""
    return copy.deepcopy(SPEC_EXAMPLE)


def simple_body(content: str = "Hello", *, endpoint: str = "ide") -> dict[str, Any]:
    """Return a minimal valid body with no history."""
    user: dict[str, Any] = {
        "userInputMessageContext": {},
        "content": content,
        "modelId": MODEL,
        "origin": "AI_EDITOR" if endpoint == "ide" else "KIRO_CLI",
    }
    state: dict[str, Any] = {
        "agentTaskType": "vibe",
        "chatTriggerType": "MANUAL",
        "conversationId": "c0ffee00-0000-4000-8000-000000000001",
        "currentMessage": {"userInputMessage": user},
    }
    if endpoint == "ide":
        state["agentContinuationId"] = "c0ffee00-0000-4000-8000-000000000002"
    else:
        user["userInputMessageContext"] = {
            "envState": {"operatingSystem": "macos", "currentWorkingDirectory": "/"}
        }
    return {"conversationState": state}


def auth_headers(token: str, token_type: str | None = None) -> dict[str, str]:
    """Return data-plane headers for a bearer (and optional tokentype)."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if token_type is not None:
        headers["tokentype"] = token_type
    return headers


def chat(
    fake: FakeKiroThread, token: str, body: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    """POST one ide generateAssistantResponse and read the whole answer."""
    return httpx.post(
        f"{fake.base_url}/generateAssistantResponse",
        json=body if body is not None else simple_body(),
        headers=auth_headers(token, kw.pop("token_type", None)),
        timeout=TIMEOUT,
        **kw,
    )


def decode(data: bytes) -> list[Message | SkippedRegion]:
    """Decode a whole event-stream body with the project decoder."""
    decoder = EventStreamDecoder()
    return decoder.feed(data) + decoder.close()


def events(data: bytes) -> list[KiroEvent]:
    """Decode a body into typed Kiro events (dropping skipped regions)."""
    out = []
    for item in decode(data):
        if isinstance(item, Message):
            event = parse_message(item)
            if event is not None:
                out.append(event)
    return out
