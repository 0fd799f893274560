from __future__ import annotations

import pytest

from gateway.protocol.models import (
    ConversionError,
    CustomModel,
    list_models,
    resolve_model,
)

# spec 3.2 worked table, Z column (plus the -thinking and -latest variants).
MODEL_TABLE = [
    ("claude-opus-4-6", "claude-opus-4.6"),
    ("claude-opus-4-6-thinking", "claude-opus-4.6"),
    ("claude-sonnet-4-6", "claude-sonnet-4.6"),
    ("claude-sonnet-4-6-thinking", "claude-sonnet-4.6"),
    ("claude-sonnet-4.6", "claude-sonnet-4.6"),
    ("claude-opus-4-5-20251101", "claude-opus-4.5"),
    ("claude-opus-4-5-20251101-thinking", "claude-opus-4.5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
    ("claude-sonnet-4-5-20250929-thinking", "claude-sonnet-4.5"),
    ("claude-sonnet-4-5-latest", "claude-sonnet-4.5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
    ("claude-haiku-4-5-20251001-thinking", "claude-haiku-4.5"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4.1"),
    ("claude-opus-4-7", "claude-opus-4.7"),
    ("claude-3-5-sonnet-20241022", "claude-sonnet-3.5"),
    ("claude-3-7-sonnet-20250219", "claude-sonnet-3.7"),
    ("claude-3-5-haiku-20241022", "claude-haiku-3.5"),
    ("claude-3-opus-20240229", "claude-opus-3"),
    ("Claude-Opus-5-5", "claude-opus-5.5"),
    ("gpt-4", "gpt-4"),
    ("gpt-5.6-sol", "gpt-5.6-sol"),
    ("glm-5", "glm-5"),
    ("deepseek-3.2", "deepseek-3.2"),
    ("claude-opus-5-beta", "claude-opus-5-beta"),
]


@pytest.mark.parametrize(("requested", "upstream"), MODEL_TABLE)
def test_it_maps_the_model_table(requested: str, upstream: str) -> None:
    assert resolve_model(requested).upstream_id == upstream


def test_it_keeps_the_requested_id() -> None:
    assert resolve_model("claude-sonnet-4-5-20250929").requested == "claude-sonnet-4-5-20250929"


def test_it_flags_the_thinking_suffix() -> None:
    assert resolve_model("claude-sonnet-4-6-thinking").thinking_forced
    assert not resolve_model("claude-sonnet-4-6").thinking_forced


def test_it_strips_the_thinking_suffix_from_passthrough_ids() -> None:
    resolved = resolve_model("gpt-5.6-sol-thinking")
    assert (resolved.upstream_id, resolved.thinking_forced) == ("gpt-5.6-sol", True)


def test_it_passes_unknown_ids_through_in_original_case() -> None:
    assert resolve_model("Qwen3-Coder").upstream_id == "Qwen3-Coder"


@pytest.mark.parametrize(
    ("requested", "window"),
    [
        ("claude-sonnet-4-5-20250929", 200_000),
        ("claude-sonnet-4-6", 1_000_000),
        ("claude-opus-4-6", 1_000_000),
        ("claude-opus-4-7", 1_000_000),
        ("claude-opus-5-5", 1_000_000),
        ("claude-haiku-4-5-20251001", 200_000),
        ("gpt-5.6-sol", 272_000),
        ("glm-5", 200_000),
    ],
)
def test_it_knows_context_windows(requested: str, window: int) -> None:
    assert resolve_model(requested).context_window == window


@pytest.mark.parametrize(
    ("requested", "supported"),
    [
        ("claude-opus-4-6", True),
        ("claude-sonnet-4-6", True),
        ("claude-opus-4-7", True),
        ("claude-opus-5-5", True),
        ("gpt-5.6-terra", True),
        ("claude-sonnet-4-5-20250929", False),
        ("claude-haiku-4-5-20251001", False),
        ("gpt-4", False),
    ],
)
def test_it_knows_which_models_take_native_reasoning(requested: str, supported: bool) -> None:
    assert resolve_model(requested).supports_reasoning is supported


@pytest.mark.parametrize("bad", ["", "   ", "a" * 257, "claude\nsonnet", "-thinking", 42, None])
def test_it_refuses_malformed_ids(bad: object) -> None:
    with pytest.raises(ConversionError) as caught:
        resolve_model(bad)
    assert caught.value.field == "model"


def test_it_prefers_custom_models_case_insensitively() -> None:
    custom = (CustomModel(id="Fast", backend_id="claude-haiku-4.5", context_window=123),)
    resolved = resolve_model("fast", custom_models=custom)
    assert (resolved.upstream_id, resolved.context_window, resolved.custom) == (
        "claude-haiku-4.5",
        123,
        True,
    )


def test_it_lets_the_later_custom_model_win() -> None:
    custom = (CustomModel(id="x", backend_id="first"), CustomModel(id="X", backend_id="second"))
    assert resolve_model("x", custom_models=custom).upstream_id == "second"


def test_it_retries_custom_lookup_without_thinking_suffix() -> None:
    custom = (CustomModel(id="fast", backend_id="claude-haiku-4.5", supports_reasoning=True),)
    resolved = resolve_model("fast-thinking", custom_models=custom)
    assert (resolved.upstream_id, resolved.thinking_forced, resolved.supports_reasoning) == (
        "claude-haiku-4.5",
        True,
        True,
    )


def test_it_lets_custom_models_override_claude_names() -> None:
    custom = (CustomModel(id="claude-sonnet-4-6", backend_id="claude-sonnet-4.8"),)
    assert resolve_model("claude-sonnet-4-6", custom_models=custom).upstream_id == (
        "claude-sonnet-4.8"
    )


def test_it_lists_builtins_with_thinking_twins_and_customs() -> None:
    custom = (CustomModel(id="mine", backend_id="glm-5", display_name="Mine", owned_by="me"),)
    listed = list_models(custom_models=custom)
    ids = [model.requested for model in listed]
    assert ids[:2] == ["claude-opus-4-6", "claude-opus-4-6-thinking"]
    assert "claude-haiku-4-5-20251001-thinking" in ids
    assert (listed[-1].requested, listed[-1].display_name, listed[-1].owned_by) == (
        "mine",
        "Mine",
        "me",
    )
    assert all(model.owned_by == "anthropic" for model in listed[:-1])
