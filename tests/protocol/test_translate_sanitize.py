"""Z's streaming text sanitizers (spec kiro-protocol §6.7)."""

from __future__ import annotations

import pytest

from gateway.protocol.anthropic_stream import StreamTranslator
from gateway.protocol.assemble import assemble_message
from gateway.protocol.events import AssistantResponse, KiroEvent
from gateway.protocol.sanitize import parse_invoke
from tests.protocol.test_translate import blocks, final_delta, options, stream, text_of

INVOKE = '<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n</invoke>\n'


def chars(text: str) -> list[KiroEvent]:
    return [AssistantResponse(ch) for ch in text]


def test_it_strips_a_literal_tool_use_block() -> None:
    out, _ = stream([AssistantResponse('a<tool_use name="x">{"q":1}</tool_use>b')])
    assert text_of(out) == "ab"


def test_it_strips_a_tool_use_block_split_across_events() -> None:
    out, _ = stream(chars('a<tool_use name="x">{"q":1}</tool_use>b'))
    assert text_of(out) == "ab"


def test_it_drops_an_unclosed_tool_use_block_at_the_end() -> None:
    out, _ = stream(chars("keep<tool_use>never closed"))
    assert text_of(out) == "keep"


def test_it_keeps_tool_user_lookalikes() -> None:
    out, _ = stream(chars("a <tool_user> b <tool_use"))
    assert text_of(out) == "a <tool_user> b <tool_use"


def test_it_reclaims_an_invoke_of_a_declared_tool() -> None:
    out, translator = stream(
        chars("Checking.\ncall\n" + INVOKE), declared_tools=frozenset({"get_weather"})
    )
    tool = blocks(out)[-1]
    assert (tool["type"], tool["name"], tool["input"]) == (
        "tool_use",
        "get_weather",
        {"city": "Paris"},
    )
    assert tool["id"].startswith("toolu_") and len(tool["id"]) == 38
    assert text_of(out) == "Checking.\n"  # the stray `call` line vanished
    assert final_delta(out)["delta"]["stop_reason"] == "tool_use"
    assert translator.result.tool_calls == 1


def test_it_reclaims_a_namespaced_invoke() -> None:
    text = '<ns:invoke name="get_weather"><ns:parameter name="city">Oslo</ns:parameter></ns:invoke>'
    out, _ = stream([AssistantResponse(text)], declared_tools=frozenset({"get_weather"}))
    assert blocks(out)[-1]["input"] == {"city": "Oslo"}


def test_it_leaves_an_invoke_of_an_undeclared_tool_as_text() -> None:
    out, _ = stream(chars(INVOKE), declared_tools=frozenset({"other"}))
    assert text_of(out) == INVOKE
    assert final_delta(out)["delta"]["stop_reason"] == "end_turn"


def test_it_leaves_an_invoke_inside_a_code_fence_as_text() -> None:
    text = "```xml\n" + INVOKE + "```\n"
    out, _ = stream(chars(text), declared_tools=frozenset({"get_weather"}))
    assert text_of(out) == text


def test_it_leaves_a_mid_line_invoke_as_text() -> None:
    text = "see " + INVOKE
    out, _ = stream(chars(text), declared_tools=frozenset({"get_weather"}))
    assert text_of(out) == text


def test_it_releases_an_unclosed_invoke_at_the_end() -> None:
    text = '<invoke name="get_weather">\n<parameter name="city">Par'
    out, _ = stream(chars(text), declared_tools=frozenset({"get_weather"}))
    assert text_of(out) == text


def test_it_keeps_a_literal_parameter_close_inside_a_value() -> None:
    block = '<invoke name="p"><parameter name="patch">a</parameter>b</parameter></invoke>'
    assert parse_invoke(block) == ("p", {"patch": "a</parameter>b"})


def test_it_drops_text_after_32_repeated_stray_lines() -> None:
    out, _ = stream([AssistantResponse("Start\n" + "call\n" * 40 + "more text")])
    assert text_of(out) == "Start\n"


def test_it_keeps_a_few_stray_lines_as_text() -> None:
    out, _ = stream(chars("call\ncall\nthen text"))
    assert text_of(out) == "call\ncall\nthen text"


def test_it_does_not_hold_back_text_after_a_less_than_sign() -> None:
    translator = StreamTranslator(options())
    translator.start()
    translator.feed([AssistantResponse("Compare: ")])
    assert b"if a < b" in translator.feed([AssistantResponse("if a < b")])


def test_it_strips_leaks_from_a_non_stream_answer_and_trims_it() -> None:
    message = assemble_message(
        [AssistantResponse('  Hi<tool_use name="x">leak</tool_use>  \n')], options()
    )
    assert message["content"] == [{"type": "text", "text": "Hi"}]


@pytest.mark.parametrize("point", range(1, len(INVOKE)))
def test_it_reclaims_an_invoke_cut_at_any_offset(point: int) -> None:
    parts = ["Text\n", INVOKE[:point], INVOKE[point:]]
    out, _ = stream(
        [AssistantResponse(p) for p in parts], declared_tools=frozenset({"get_weather"})
    )
    assert [b["type"] for b in blocks(out)] == ["text", "tool_use"]
    assert text_of(out) == "Text\n"


def test_it_can_be_switched_off() -> None:
    text = 'a<tool_use name="x">y</tool_use>b'
    out, _ = stream([AssistantResponse(text)], sanitize=False)
    assert text_of(out) == text
