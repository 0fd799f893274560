"""The prompt-cache simulation's pure half: breakpoints, scope, TTL and the split."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol.models import ConversionError
from gateway.protocol.prompt_cache import (
    FIVE_MINUTES,
    ONE_HOUR,
    estimate,
    plan,
    scope_seed,
)
from gateway.protocol.tokens import CacheEstimate

SESSION = "0b7b6f5e-2f47-4a7e-9c55-1d2e3f4a5b6c"
LONG = "You are a careful assistant. " * 200
EPHEMERAL = {"type": "ephemeral"}


def body(*, system=None, messages=None, tools=None, user_id=None):
    value = {"model": "claude-sonnet-4-5", "max_tokens": 10}
    value["messages"] = messages or [{"role": "user", "content": "Hi"}]
    if system is not None:
        value["system"] = system
    if tools is not None:
        value["tools"] = tools
    if user_id is not None:
        value["metadata"] = {"user_id": user_id}
    return value


def cached_system(text=LONG, **control):
    return [{"type": "text", "text": text, "cache_control": EPHEMERAL | control}]


def test_a_request_without_breakpoints_has_nothing_to_cache():
    assert plan(body(system=LONG), "key:1").segments == ()
    assert estimate(plan(body(system=LONG), "key:1"), []) == CacheEstimate()


def test_each_cache_control_block_is_a_breakpoint_with_the_tokens_up_to_it():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "And now?"},
    ]
    result = plan(body(system=cached_system(), messages=messages), "key:1")

    assert len(result.segments) == 2
    first, second = result.segments
    assert 0 < first.tokens < second.tokens <= result.prompt_total
    assert {first.ttl, second.ttl} == {FIVE_MINUTES}


def test_a_one_hour_ttl_is_kept_per_breakpoint():
    result = plan(body(system=cached_system(ttl="1h")), "key:1")

    assert [s.ttl for s in result.segments] == [ONE_HOUR]


def test_the_same_prefix_has_the_same_key_whatever_follows_and_wherever_its_marker_sits():
    one = plan(body(system=cached_system(), messages=[{"role": "user", "content": "A"}]), "k")
    two = plan(body(system=cached_system(), messages=[{"role": "user", "content": "B"}]), "k")
    other_scope = plan(body(system=cached_system()), "key:2")
    other_text = plan(body(system=cached_system(LONG + "!")), "k")

    assert one.segments[0].key == two.segments[0].key
    assert other_scope.segments[0].key != one.segments[0].key
    assert other_text.segments[0].key != one.segments[0].key


def test_system_blocks_before_the_first_breakpoint_are_not_in_the_prefix():
    """Z: Claude Code's per-turn header comes first and changes every turn."""
    system = [{"type": "text", "text": "turn 1 header"}, *cached_system()]
    later = [{"type": "text", "text": "turn 2 header"}, *cached_system()]

    assert plan(body(system=system), "k").segments[0].key == (
        plan(body(system=later), "k").segments[0].key
    )


def test_the_scope_is_the_session_or_else_the_key_and_the_system_key_alone_is_not_metered():
    legacy = f"user_abc_account__session_{SESSION}"

    assert scope_seed(
        body(user_id=json.dumps({"session_id": SESSION})), key_id=3, system_key=False
    ) == (f"session:{SESSION}")
    assert scope_seed(body(user_id=legacy), key_id=None, system_key=True) == f"session:{SESSION}"
    assert scope_seed(body(), key_id=3, system_key=False) == "key:3"
    assert scope_seed(body(), key_id=0, system_key=True) is None


def test_a_hit_on_the_deepest_breakpoint_reads_everything_it_covers():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "short question"},
    ]
    result = plan(body(messages=messages), "k")
    (segment,) = result.segments

    cold = estimate(result, [])
    warm = estimate(result, [segment.key])

    assert cold.read == 0.0 and 0.9 < cold.covered <= 1.0
    assert warm.read == 1.0
    total = 10_000
    uncached, creation, read = warm.split(total)
    assert uncached + creation + read == total and creation == 0 and read > 9_000
    uncached, creation, read = cold.split(total)
    assert read == 0 and creation > 9_000


def test_a_hit_on_an_earlier_breakpoint_reads_its_part_and_creates_the_rest():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "next"},
    ]
    result = plan(body(messages=messages), "k")
    first, _ = result.segments

    split = estimate(result, [first.key]).split(10_000)

    _uncached, creation, read = split
    assert abs(read - creation) < 100  # two equal halves
    assert sum(split) == 10_000


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(field=st.sampled_from(["messages", "tools", "system", "metadata"]), value=JSON)
def test_a_body_not_yet_validated_never_makes_the_plan_raise(field, value):
    # the store meters the parsed body before the conversion refuses a wrong type with a 400:
    # the plan either counts it or refuses it the way the conversion would, never a TypeError
    request = body(system=cached_system()) | {field: value}

    try:
        total = plan(request, "key:1").prompt_total
    except ConversionError as exc:
        assert exc.field.split(".")[0] == field
    else:
        assert total >= 1


@given(content=JSON, role=JSON)
def test_messages_of_any_shape_never_make_the_plan_raise(content, role):
    request = body(messages=[{"role": role, "content": content}, "text", 5])

    assert plan(request, "key:1").prompt_total >= 1
