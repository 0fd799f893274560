"""Event streams reach the client as scripted, however they are sliced, paced or cut (§4, §5)."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.fakekiro import Script, Slicing
from gateway.fakekiro.script import render
from gateway.fakekiro.server import FakeKiroThread
from gateway.fakekiro.steps import Abort, Write
from gateway.protocol.events import (
    AssistantResponse,
    ContextUsage,
    Metadata,
    Metering,
    Reasoning,
    ToolUse,
    UpstreamError,
    UpstreamException,
)
from gateway.protocol.eventstream import Message, SkippedRegion
from tests.fakekiro.builders import TIMEOUT, auth_headers, chat, decode, events, simple_body

SCRIPT = (
    Script.reasoning("Thinking ü", signature="sig")
    + Script.text("Grüße 你好 🚀 done", chunks=4)
    + Script.tool_call("get_weather", {"city": "Zürich"}, fragments=4, tool_use_id="tooluse_1")
    + Script.metering(0.5)
    + Script.context_usage(12.5)
    + Script.metadata(input_tokens=101, output_tokens=23)
)
EXPECTED = [
    Reasoning(text="Thinking ü", signature="sig", redacted_content=None),
    AssistantResponse("Grüß"),
    AssistantResponse("e 你好"),
    AssistantResponse(" 🚀 d"),
    AssistantResponse("one"),
    ToolUse("get_weather", "tooluse_1", '{"cit', stop=False),
    ToolUse("get_weather", "tooluse_1", 'y":"', stop=False),
    ToolUse("get_weather", "tooluse_1", "Züri", stop=False),
    ToolUse("get_weather", "tooluse_1", 'ch"}', stop=True),
    Metering("credit", "credits", 0.5),
    ContextUsage(12.5),
]


def _stream(fake: FakeKiroThread, token: str) -> tuple[list[bytes], httpx.Response]:
    with httpx.stream(
        "POST",
        f"{fake.base_url}/generateAssistantResponse",
        json=simple_body(),
        headers=auth_headers(token),
        timeout=TIMEOUT,
    ) as response:
        return list(response.iter_raw()), response


@pytest.mark.parametrize(
    "slicing",
    [
        Slicing("frame"),
        Slicing("whole"),
        Slicing("fixed", size=1),
        Slicing("fixed", size=7),
        Slicing("random", size=1, max_size=13, seed=42),
    ],
    ids=["frame", "whole", "1-byte", "7-byte", "random"],
)
def test_it_delivers_scripted_events_under_any_slicing(
    fake_kiro: FakeKiroThread, slicing: Slicing
) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(SCRIPT)
    fake_kiro.configure(slicing=slicing)

    chunks, response = _stream(fake_kiro, account.access_token or "")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    got = events(b"".join(chunks))
    assert got[:-1] == EXPECTED
    assert isinstance(got[-1], Metadata)
    assert got[-1].token_usage is not None
    assert got[-1].token_usage.uncached_input_tokens == 101


def test_it_cuts_frames_and_utf8_characters_across_writes() -> None:
    script = Script.text("🚀🚀🚀", chunks=3).sliced("fixed", size=3)

    writes = [a.data for a in render(script, slicing=Slicing(), pace=0.0) if isinstance(a, Write)]

    assert all(len(w) <= 3 for w in writes)
    rocket = "🚀".encode()
    joined = b"".join(writes)
    start = joined.index(rocket)
    boundaries = {sum(len(w) for w in writes[:i]) for i in range(len(writes) + 1)}
    assert any(start < b < start + len(rocket) for b in boundaries)  # a write splits the char


def test_it_sends_one_byte_writes_that_the_client_sees(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("Hi").sliced("fixed", size=1).paced(0.001))

    chunks, _ = _stream(fake_kiro, account.access_token or "")

    assert len(chunks) > 10  # paced 1-byte writes arrive as many reads
    assert events(b"".join(chunks)) == [AssistantResponse("Hi")]


def test_it_resets_the_connection_mid_stream(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("abcdef", chunks=6).reset_after(2))
    received = bytearray()

    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        httpx.stream(
            "POST",
            f"{fake_kiro.base_url}/generateAssistantResponse",
            json=simple_body(),
            headers=auth_headers(account.access_token or ""),
            timeout=TIMEOUT,
        ) as response,
    ):
        for chunk in response.iter_raw():
            received += chunk

    assert events(bytes(received)) == [AssistantResponse("a"), AssistantResponse("b")]


def test_it_resets_after_n_frames_from_the_class_shortcut() -> None:
    actions = render(Script.reset_after(3), slicing=Slicing(), pace=0.0)

    assert sum(isinstance(a, Write) for a in actions) == 3
    assert actions[-1] == Abort(rst=True)


def test_it_closes_mid_body_as_an_incomplete_message(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("abc", chunks=3).close_after(1))

    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake_kiro, account.access_token or "")


def test_it_emits_a_corrupt_frame_between_good_ones(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("before") + Script.corrupt() + Script.text("after"))

    response = chat(fake_kiro, account.access_token or "")

    items = decode(response.content)
    assert [type(i) for i in items] == [Message, SkippedRegion, Message]
    skipped = items[1]
    assert isinstance(skipped, SkippedRegion)
    assert skipped.reason == "message_crc_mismatch"
    assert events(response.content) == [AssistantResponse("before"), AssistantResponse("after")]


def test_it_emits_exception_and_error_frames(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("x") + Script.exception() + Script.error_frame())

    response = chat(fake_kiro, account.access_token or "")

    assert events(response.content)[1:] == [
        UpstreamException(
            "ContentLengthExceededException", "Response exceeded the maximum allowed length"
        ),
        UpstreamError(
            "InternalServerException",
            '{"message":"Encountered an unexpected error when processing the request, '
            'please try again."}',
        ),
    ]


def test_it_paces_a_slow_stream(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("abcde", chunks=5).paced(0.05))

    started = time.monotonic()
    response = chat(fake_kiro, account.access_token or "")
    elapsed = time.monotonic() - started

    assert len(events(response.content)) == 5
    assert 0.2 <= elapsed < 3


def test_it_can_send_a_content_length_body(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("Hello").with_transfer("length"))

    response = chat(fake_kiro, account.access_token or "")

    assert "transfer-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content) == 127  # §13.2 F1
    assert events(response.content) == [AssistantResponse("Hello")]


def test_it_encodes_the_spec_vector_f1_byte_for_byte(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(Script.text("Hello"))

    response = chat(fake_kiro, account.access_token or "")

    assert response.content.hex() == (
        "0000007f0000005c7c7db5a80b3a6576656e742d74797065070016617373697374616e74526573706f6e"
        "73654576656e740d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a"
        "6d6573736167652d747970650700056576656e747b22636f6e74656e74223a2248656c6c6f227d9b5d0635"
    )


def test_it_echoes_the_request_when_nothing_is_scripted(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()

    response = chat(fake_kiro, account.access_token or "", simple_body("ping ✓"))

    got = events(response.content)
    text = "".join(e.content for e in got if isinstance(e, AssistantResponse))
    assert text == "Echo: ping ✓"
    assert any(isinstance(e, ContextUsage) for e in got)
    assert any(isinstance(e, Metering) for e in got)


def test_it_keeps_the_connection_alive_between_requests(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    with httpx.Client(timeout=TIMEOUT) as client:
        for _ in range(3):
            response = client.post(
                f"{fake_kiro.base_url}/generateAssistantResponse",
                json=simple_body(),
                headers=auth_headers(account.access_token or ""),
            )
            assert response.status_code == 200
            assert not response.headers.get("connection")


def test_it_scripts_thinking_tags_and_redacted_reasoning(fake_kiro: FakeKiroThread) -> None:
    account = fake_kiro.add_account()
    fake_kiro.script(
        Script.reasoning(redacted="encrypted") + Script.thinking("abc", "Hello", chunks=3)
    )

    response = chat(fake_kiro, account.access_token or "")

    got = events(response.content)
    assert got[0] == Reasoning(text=None, signature=None, redacted_content="encrypted")
    text = "".join(e.content for e in got[1:] if isinstance(e, AssistantResponse))
    assert text == "<thinking>\nabc</thinking>\n\nHello"
    assert fake_kiro.pending_scripts() == 0
