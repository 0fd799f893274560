"""The `<thinking>` splitter (spec kiro-protocol §6.5), cut at every possible place."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol.thinking import CLOSE, OPEN, TEXT, THINKING, Op, ThinkingSplitter

TRANSCRIPT = "<thinking>abc</thinking>\n\nHello"


def run(chunks: list[str]) -> list[Op]:
    """Feed chunks, then finish; merge adjacent text and thinking ops."""
    splitter = ThinkingSplitter()
    ops: list[Op] = []
    for chunk in chunks:
        ops.extend(splitter.feed(chunk))
    ops.extend(splitter.finish())
    return merge(ops)


def merge(ops: list[Op]) -> list[Op]:
    merged: list[Op] = []
    for kind, value in ops:
        if kind in (TEXT, THINKING) and not value:
            continue
        if merged and kind in (TEXT, THINKING) and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + value)
        else:
            merged.append((kind, value))
    return merged


def splits(text: str, *points: int) -> list[str]:
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("point", range(1, len(TRANSCRIPT)))
def test_it_splits_the_same_way_at_every_offset(point: int) -> None:
    expected = [(OPEN, ""), (THINKING, "abc"), (CLOSE, ""), (TEXT, "Hello")]
    assert run(splits(TRANSCRIPT, point)) == expected


def test_it_splits_one_char_per_event() -> None:
    expected = [(OPEN, ""), (THINKING, "abc"), (CLOSE, ""), (TEXT, "Hello")]
    assert run(list(TRANSCRIPT)) == expected


def test_it_handles_the_spec_chunk_sequence() -> None:
    # spec 13.3 case 21
    chunks = ["\n", "\n", "<thin", "king>", "\n", "hello", "</thi", "nking>", "\n", "\n", "world"]
    assert run(chunks) == [(OPEN, ""), (THINKING, "hello"), (CLOSE, ""), (TEXT, "world")]


TRANSCRIPTS = [
    TRANSCRIPT,
    "\n\n<thinking>\nI think `</thinking>` is quoted.\n</thinking>\n\nAnswer: 42",
    "Preface text <thinking>\nplan</thinking>\n\nbody",
    "a `<thinking>` quoted start tag, then text",
    "<thinking>\n多字节思考 🎉</thinking>\n\n答案",
    "<thinking>\nabc</thinking>\nDone",
    "<thinking>abc</thinking>",
    "no tags at all",
    "<thinking>\nplan: call `get_weather`</thinking>\n\nSure, more text after the tag",
    "x`<thinking>abcdefghijk",
]


@pytest.mark.parametrize("text", TRANSCRIPTS)
def test_it_gives_the_same_result_for_any_pair_of_cuts(text: str) -> None:
    whole = run([text])
    for a in range(1, len(text)):
        for b in range(a, len(text)):
            assert run(splits(text, a, b)) == whole, (a, b)


@given(st.sampled_from(TRANSCRIPTS), st.lists(st.integers(min_value=0, max_value=80), max_size=12))
def test_it_is_independent_of_chunking(text: str, cuts: list[int]) -> None:
    points = sorted({c for c in cuts if 0 < c < len(text)})
    assert run(splits(text, *points)) == run([text])


def test_it_drops_a_whitespace_prefix_before_the_tag() -> None:
    assert run(["\n\n<thinking>x</thinking>\n\ny"])[0] == (OPEN, "")


def test_it_keeps_text_before_the_tag() -> None:
    assert run(["Sure. <thinking>x</thinking>\n\ny"])[0] == (TEXT, "Sure. ")


def test_it_keeps_whitespace_before_the_tag_once_text_was_sent() -> None:
    # H/Z drop the "\n\n" when it arrives in a later event than "Sure."; we don't
    assert run(["Sure." + " " * 12, "\n\n<thinking>x</thinking>\n\ny"])[0] == (
        TEXT,
        "Sure." + " " * 12 + "\n\n",
    )


def test_it_drops_one_newline_after_the_start_tag() -> None:
    assert run(["<thinking>", "\n", "\nx</thinking>\n\n"])[1] == (THINKING, "\nx")


@pytest.mark.parametrize("quoted", ["`<thinking>`", '"<thinking>"', "<thinking>.", "(<thinking>)"])
def test_it_leaves_quoted_start_tags_as_text(quoted: str) -> None:
    assert run([f"Use {quoted} tags"]) == [(TEXT, f"Use {quoted} tags")]


def test_it_waits_for_the_char_after_a_start_tag_at_the_end_of_an_event() -> None:
    assert run(["Use <thinking>", "` tags"]) == [(TEXT, "Use <thinking>` tags")]


def test_it_keeps_a_quoted_tag_quoted_when_the_cut_lands_on_it() -> None:
    # the held tail must keep the quoting char, or the next event sees a bare, "real" tag
    text = "<thinking>\nplan `x`</thinking>\n\nSure"
    first = "<thinking>\nplan `x`</thinking>\n\nS"  # hold-back cut falls right on the `<`
    assert run([first, text[len(first) :]]) == run([text])
    assert run([text])[-1] == (CLOSE, "")


def test_it_keeps_a_quoted_end_tag_inside_thinking() -> None:
    ops = run(["<thinking>say `</thinking>`\n\nok</thinking>\n\nHi"])
    assert ops == [(OPEN, ""), (THINKING, "say `</thinking>`\n\nok"), (CLOSE, ""), (TEXT, "Hi")]


def test_it_ends_thinking_on_a_single_newline_unlike_the_proxies() -> None:
    # spec 13.3 case 25 documents the H/Z quirk; we end thinking there instead
    assert run(["<thinking>\nabc</thinking>\nDone"]) == [
        (OPEN, ""),
        (THINKING, "abc"),
        (CLOSE, ""),
        (TEXT, "Done"),
    ]


def test_it_does_not_end_thinking_on_a_tag_inside_a_sentence() -> None:
    ops = run(["<thinking>the </thinking> tag is fine</thinking>\n\nA"])
    assert ops[1] == (THINKING, "the </thinking> tag is fine")


def test_it_closes_at_the_end_on_a_tag_followed_by_whitespace() -> None:
    assert run(["<thinking>\nabc</thinking>  \n"]) == [(OPEN, ""), (THINKING, "abc"), (CLOSE, "")]


def test_it_closes_unterminated_thinking_at_the_end() -> None:
    assert run(["<thinking>\nabc"]) == [(OPEN, ""), (THINKING, "abc"), (CLOSE, "")]


def test_it_recognises_only_the_first_thinking_block() -> None:
    ops = run(["<thinking>a</thinking>\n\nb <thinking>c</thinking>\n\n"])
    assert ops[-1] == (TEXT, "b <thinking>c</thinking>\n\n")


def test_it_flushes_whitespace_only_text_at_the_end() -> None:
    assert run(["\n\n"]) == [(TEXT, "\n\n")]


def test_it_closes_thinking_at_a_tool_boundary() -> None:
    splitter = ThinkingSplitter()
    ops = splitter.feed("<thinking>\nabc</thinking>")
    ops += splitter.boundary()
    assert merge(ops) == [(OPEN, ""), (THINKING, "abc"), (CLOSE, "")]


def test_it_flushes_held_text_at_a_tool_boundary() -> None:
    splitter = ThinkingSplitter()
    ops = splitter.feed("Checking")
    ops += splitter.boundary()
    assert merge(ops) == [(TEXT, "Checking")]


def test_it_drops_held_whitespace_at_a_tool_boundary() -> None:
    splitter = ThinkingSplitter()
    ops = splitter.feed("\n\n") + splitter.boundary()
    assert ops == []


def test_it_ends_thinking_after_a_full_stop_unlike_the_proxies() -> None:
    # H/Z treat `.` before the tag as quoting and swallow the answer into thinking
    assert run(["<thinking>\nLet me think.</thinking>\n\nThe answer is 4."]) == [
        (OPEN, ""),
        (THINKING, "Let me think."),
        (CLOSE, ""),
        (TEXT, "The answer is 4."),
    ]
