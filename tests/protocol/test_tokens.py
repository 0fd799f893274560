"""Token estimates: spec kiro-protocol §10 and §6.10 vectors, and the kiro-ops §5.5 split."""

from __future__ import annotations

import pytest

from gateway.protocol.tokens import CacheEstimate, count_all_tokens, count_tokens, estimate_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("Hello", 1),
        ("Hello, world!", 4),
        ("你好世界", 6),
        ("a" * 400, 130),
        ("a" * 1000, 312),
    ],
)
def test_it_counts_tokens_like_the_spec_vectors(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("Hello", 2),
        ("Hello, world!", 4),
        ("你好世界", 3),
        ("a" * 400, 100),
        ("a" * 1000, 250),
    ],
)
def test_it_estimates_streamed_tokens_like_the_spec_vectors(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


def test_it_weighs_cyrillic_and_emoji_as_non_western() -> None:
    # 2 non-western chars = 8 units -> t = 2 -> floor(2 * 1.5)
    assert count_tokens("Жё") == 3
    assert count_tokens("🎉🎉") == 3


def test_it_keeps_latin_extended_western() -> None:
    assert count_tokens("ÀÉÎ") == count_tokens("abc")


def test_it_counts_system_text_items_and_tools_separately() -> None:
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello, world!"}]},
    ]
    expected = (
        count_tokens("S")
        + count_tokens("Hello")
        + count_tokens("Hello, world!")
        + count_tokens("get_weather")
        + count_tokens("Weather")
        + count_tokens('{"type":"object"}')
    )
    assert count_all_tokens("m", [{"type": "text", "text": "S"}], messages, tools) == expected


def test_it_ignores_tool_inputs_results_and_images() -> None:
    messages = [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {"a": "b" * 500}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "c" * 500},
                {"type": "image", "source": {"type": "base64", "data": "d" * 500}},
            ],
        },
    ]
    assert count_all_tokens("m", None, messages, None) == 1


def test_it_accepts_a_string_system_prompt() -> None:
    assert count_all_tokens("m", "a" * 400, [], None) == 130


def test_it_never_counts_less_than_one() -> None:
    assert count_all_tokens("m", None, [{"role": "user", "content": ""}], []) == 1


def test_it_splits_cached_input_so_the_parts_add_up() -> None:
    uncached, creation, read = CacheEstimate(covered=0.8, read=0.75).split(1001)
    assert (uncached, creation, read) == (200, 200, 601)
    assert uncached + creation + read == 1001


def test_it_rounds_half_away_from_zero_like_rust() -> None:
    # 5 * 0.5 = 2.5 -> 3 (Python's round would give 2)
    assert CacheEstimate(covered=0.5, read=0.0).split(5) == (2, 3, 0)


def test_it_counts_everything_as_input_without_coverage() -> None:
    assert CacheEstimate().split(1234) == (1234, 0, 0)
