"""Model resolution over the live catalogue (gateway/protocol/catalogue.py, issue 9)."""

from __future__ import annotations

import pytest

from gateway.protocol.catalogue import (
    BUILTIN_KIRO_IDS,
    Catalogue,
    ModelNotListed,
    Substitution,
    available_models,
    family_of,
    requested_family,
    resolve_listed,
)
from gateway.protocol.convert import ConvertOptions, Rule, convert_request
from gateway.protocol.models import ConversionError, CustomModel

OLDER = frozenset({"claude-sonnet-4.5", "claude-opus-4.6", "claude-haiku-4.5"})


def sent(model: str, ids: frozenset[str] = OLDER, **catalogue: object) -> tuple[str, str | None]:
    resolved = resolve_listed(model, catalogue=Catalogue(ids, **catalogue))  # type: ignore[arg-type]
    return resolved.upstream_id, resolved.substitution


def test_a_listed_model_is_sent_as_normalised_without_a_rule() -> None:
    assert sent("claude-sonnet-4-5-20250929") == ("claude-sonnet-4.5", None)


def test_claude_codes_default_becomes_the_newest_listed_opus() -> None:
    assert sent("claude-opus-5-5") == ("claude-opus-4.6", "model_fallback")


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("claude-sonnet-4-7", "claude-sonnet-4.5"),
        ("claude-haiku-5", "claude-haiku-4.5"),
        ("claude-opus-5-5-20260101", "claude-opus-4.6"),
        ("claude-opus-5-5-thinking", "claude-opus-4.6"),
        ("claude-sonnet-5-latest", "claude-sonnet-4.5"),
        ("claude-5-sonnet-20260101", "claude-sonnet-4.5"),
        ("Claude-Opus-5-5", "claude-opus-4.6"),
    ],
)
def test_an_unlisted_id_falls_back_within_its_family(requested: str, expected: str) -> None:
    assert sent(requested) == (expected, "model_fallback")


def test_versions_compare_numerically() -> None:
    ids = frozenset({"claude-sonnet-4", "claude-sonnet-4.9", "claude-sonnet-4.10"})
    assert sent("claude-sonnet-5", ids)[0] == "claude-sonnet-4.10"
    assert family_of("claude-sonnet-4.10") == ("sonnet", (4, 10))
    assert family_of("claude-sonnet-4.10")[1] > family_of("claude-sonnet-4.9")[1]  # type: ignore[index]
    assert family_of("claude-sonnet-4.9")[1] > family_of("claude-sonnet-4")[1]  # type: ignore[index]


def test_an_older_request_also_falls_back_to_the_newest_listed() -> None:
    # Not listed is not listed: the newest of the family is the safest guess.
    assert sent("claude-opus-4-1-20250805") == ("claude-opus-4.6", "model_fallback")


def test_the_thinking_suffix_still_forces_thinking_after_a_fallback() -> None:
    resolved = resolve_listed("claude-opus-5-5-thinking", catalogue=Catalogue(OLDER))
    assert resolved.thinking_forced
    assert resolved.requested == "claude-opus-5-5-thinking"


def test_the_limits_are_those_of_the_model_sent() -> None:
    resolved = resolve_listed("claude-sonnet-4-7", catalogue=Catalogue(OLDER))
    assert resolved.context_window == 200_000  # claude-sonnet-4.5, not 4.7's 1M


def test_gpt_is_a_family_of_its_own() -> None:
    ids = OLDER | {"gpt-5.1", "gpt-5.6-sol"}
    assert sent("gpt-5-codex", ids) == ("gpt-5.6-sol", "model_fallback")
    assert family_of("gpt-5.6-sol") == ("gpt", (5, 6))
    assert family_of("gpt-4") == ("gpt", (4,))


def test_every_gpt_id_is_of_the_gpt_family_with_or_without_a_version() -> None:
    ids = OLDER | {"gpt-4o", "gpt-oss-120b", "gpt-5.1"}
    assert sent("gpt-4o-mini", ids) == ("gpt-5.1", "model_fallback")
    assert sent("gpt-oss-20b", ids) == ("gpt-5.1", "model_fallback")
    assert family_of("gpt-4o") == ("gpt", (4,))
    assert family_of("gpt-oss-120b") == ("gpt", ())
    assert sent("gpt-6", OLDER | {"gpt-oss-120b"}) == ("gpt-oss-120b", "model_fallback")


def test_a_claude_id_naming_a_family_without_a_plain_version_stays_in_its_family() -> None:
    # Z passes `claude-opus-5-beta` through verbatim (spec §3.2); it is still an opus.
    assert sent("claude-opus-5-beta") == ("claude-opus-4.6", "model_fallback")
    assert sent("claude-haiku-next") == ("claude-haiku-4.5", "model_fallback")
    assert requested_family("claude-opus-5-beta") == "opus"
    assert requested_family("claude-sonnet-4.5") == "sonnet"
    assert requested_family("claude-next") is None
    assert requested_family("gpt-5-codex") == "gpt"
    assert requested_family("deepseek-3.2") is None


def test_a_gpt_tie_prefers_the_requested_variant_then_the_plain_id() -> None:
    ids = frozenset({"gpt-5.6-sol", "gpt-5.6-luna", "gpt-5.6", "gpt-5.6-codex"})
    assert sent("gpt-5-codex", ids)[0] == "gpt-5.6-codex"
    assert sent("gpt-7", ids)[0] == "gpt-5.6"
    assert sent("gpt-7", ids - {"gpt-5.6"})[0] == "gpt-5.6-codex"  # alphabetical last resort


def test_gpt_without_any_listed_gpt_uses_the_default() -> None:
    assert sent("gpt-5-codex") == ("claude-sonnet-4.5", "model_default")


def test_a_family_with_nothing_listed_uses_the_operator_default() -> None:
    ids = OLDER - {"claude-opus-4.6"}
    assert sent("claude-opus-5-5", ids, default_model="claude-haiku-4-5") == (
        "claude-haiku-4.5",
        "model_default",
    )


def test_a_blank_default_is_the_newest_listed_sonnet() -> None:
    ids = frozenset({"claude-sonnet-4", "claude-sonnet-4.5", "claude-haiku-4.5"})
    assert sent("claude-fable-5", ids) == ("claude-sonnet-4.5", "model_default")


def test_an_unlisted_default_gives_way_to_the_newest_listed_sonnet() -> None:
    assert sent("claude-mythos-5", default_model="claude-opus-9") == (
        "claude-sonnet-4.5",
        "model_default",
    )
    assert sent("claude-mythos-5", default_model="\x00bad") == (
        "claude-sonnet-4.5",
        "model_default",
    )


def test_without_a_sonnet_the_newest_listed_model_of_any_family_is_sent() -> None:
    ids = frozenset({"claude-haiku-4.5", "claude-opus-4.6", "auto"})
    assert sent("claude-fable-5", ids) == ("claude-opus-4.6", "model_default")


def test_without_any_family_auto_or_else_the_first_listed_id_is_sent() -> None:
    assert sent("claude-opus-5", frozenset({"auto", "glm-5"})) == ("auto", "model_default")
    assert sent("claude-opus-5", frozenset({"qwen3", "glm-5"})) == ("glm-5", "model_default")


def test_auto_passes_when_listed_and_is_replaced_when_not() -> None:
    assert sent("auto", OLDER | {"auto"}) == ("auto", None)
    assert sent("auto") == ("claude-sonnet-4.5", "model_default")
    assert sent("deepseek-3.2") == ("claude-sonnet-4.5", "model_default")


def test_custom_models_win_and_are_never_substituted() -> None:
    custom = CustomModel(id="my-opus", backend_id="claude-opus-9")
    resolved = resolve_listed(
        "my-opus", custom_models=[custom], catalogue=Catalogue(OLDER, strict=True)
    )
    assert (resolved.upstream_id, resolved.substitution, resolved.custom) == (
        "claude-opus-9",
        None,
        True,
    )


def test_the_operator_default_may_name_a_custom_model() -> None:
    custom = CustomModel(id="house", backend_id="claude-haiku-4.5")
    resolved = resolve_listed(
        "claude-fable-5",
        custom_models=[custom],
        catalogue=Catalogue(OLDER, default_model="house"),
    )
    assert (resolved.upstream_id, resolved.substitution) == ("claude-haiku-4.5", "model_default")


def test_an_unknown_or_empty_catalogue_passes_the_id_through() -> None:
    assert resolve_listed("claude-opus-5-5").upstream_id == "claude-opus-5.5"
    assert sent("claude-opus-5-5", frozenset(), strict=True) == ("claude-opus-5.5", None)


def test_strict_mode_refuses_naming_the_model_and_up_to_ten_ids() -> None:
    ids = frozenset(f"claude-sonnet-4.{n}" for n in range(12))
    with pytest.raises(ModelNotListed) as caught:
        sent("claude-opus-5-5", ids, strict=True)
    refusal = caught.value
    assert isinstance(refusal, ConversionError)
    assert refusal.model == "claude-opus-5-5"
    assert len(refusal.available) == 10
    assert "'claude-opus-5-5'" in str(refusal) and "claude-sonnet-4.0" in str(refusal)
    assert "(and 2 more)" in str(refusal)


def test_strict_mode_still_serves_listed_ids() -> None:
    assert sent("claude-sonnet-4-5", strict=True) == ("claude-sonnet-4.5", None)


def test_malformed_ids_are_still_refused_as_bad_requests() -> None:
    with pytest.raises(ConversionError):
        resolve_listed("", catalogue=Catalogue(OLDER))
    with pytest.raises(ConversionError):
        resolve_listed("x" * 300, catalogue=Catalogue(OLDER))


def test_the_answer_does_not_depend_on_set_order() -> None:
    ids = ["gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.6-sol", "claude-sonnet-4.5"]
    first = sent("gpt-6", frozenset(ids))
    assert all(sent("gpt-6", frozenset(reversed(ids[:k] + ids[k:]))) == first for k in range(4))
    assert first[0] == "gpt-5.6-luna"


def test_every_substitution_is_a_named_convert_rule() -> None:
    assert {str(s) for s in Substitution} <= {str(r) for r in Rule}


def test_convert_sends_the_fallback_and_names_the_rule() -> None:
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    conversion = convert_request(body, options=ConvertOptions(catalogue=Catalogue(OLDER)))
    current = conversion.kiro_body["conversationState"]["currentMessage"]["userInputMessage"]
    assert current["modelId"] == "claude-opus-4.6"
    assert Rule.MODEL_FALLBACK in conversion.rules
    assert conversion.model.requested == "claude-opus-5-5"


def test_h_table_kiro_ids_are_the_builtins() -> None:
    expected = {
        "claude-opus-4.6",
        "claude-sonnet-4.6",
        "claude-opus-4.5",
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
    }
    assert expected == BUILTIN_KIRO_IDS


def test_available_models_is_the_true_union() -> None:
    custom = CustomModel(id="house", backend_id="claude-haiku-4.5")
    listed = available_models(["claude-sonnet-4.5", "Auto", "gpt-5.1"], custom_models=[custom])
    assert [m.requested for m in listed] == [
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5-20250929-thinking",
        "auto",
        "claude-sonnet-4.5",
        "gpt-5.1",
        "house",
    ]
    assert next(m for m in listed if m.requested == "gpt-5.1").owned_by == "openai"


def test_a_listed_id_equal_to_a_custom_id_is_shown_once() -> None:
    custom = CustomModel(id="auto", backend_id="claude-sonnet-4.5")
    listed = available_models(["auto"], custom_models=[custom])
    assert [(m.requested, m.custom) for m in listed] == [("auto", True)]
