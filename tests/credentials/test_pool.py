"""Credential selection (spec kiro-ops §3.1–§3.3, §3.9) as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from credentials.pool import Candidate, choose, listed_models, self_heal_targets, unknown_lists

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def candidate(id: int, **changes) -> Candidate:
    values = {
        "id": id,
        "priority": id,
        "enabled": True,
        "disabled_reason": "",
        "cooldown_until": None,
        "subscription_title": "KIRO PRO",
        "groups": frozenset(),
        "success_count": 0,
        "models": None,
        "self_heal_rounds": 0,
        "last_self_heal_at": None,
        "self_heal_model": "",
    }
    return Candidate(**(values | changes))


def pick(candidates, **kwargs):
    options = {
        "mode": "priority",
        "current_id": None,
        "model": "claude-sonnet-4.5",
        "group": None,
        "now": NOW,
    } | kwargs
    chosen = choose(candidates, **options)
    return chosen.id if chosen else None


def test_priority_mode_keeps_the_sticky_current_credential():
    pool = [candidate(1), candidate(2)]

    assert pick(pool) == 1
    assert pick(pool, current_id=2) == 2


def test_priority_mode_moves_when_current_becomes_ineligible():
    assert pick([candidate(1), candidate(2, enabled=False)], current_id=2) == 1


def test_balanced_mode_picks_the_least_used():
    pool = [candidate(1, success_count=5), candidate(2, success_count=1)]

    assert pick(pool, mode="balanced", current_id=1) == 2


def test_cooling_down_credentials_are_skipped_until_the_cooldown_ends():
    pool = [candidate(1, cooldown_until=NOW + timedelta(seconds=5)), candidate(2)]

    assert pick(pool) == 2
    assert pick(pool, now=NOW + timedelta(seconds=6)) == 1


def test_opus_skips_free_subscriptions_only():
    pool = [candidate(1, subscription_title="KIRO FREE"), candidate(2)]

    assert pick(pool, model="claude-opus-4.5") == 2
    assert pick(pool, model="claude-sonnet-4.5") == 1


def test_a_group_key_uses_only_its_group():
    pool = [candidate(1), candidate(2, groups=frozenset({"team"}))]

    assert pick(pool, group="team") == 2
    assert pick(pool, group="other") is None


def test_confirmed_model_support_wins_and_unsupported_is_skipped():
    pool = [
        candidate(1, models=frozenset({"claude-haiku-4.5"})),
        candidate(2),
        candidate(3, models=frozenset({"claude-sonnet-4.5"})),
    ]

    assert pick(pool) == 3
    assert pick(pool, current_id=2) == 3  # sticky only if no confirmed credential exists


def test_excluded_credentials_are_not_picked():
    assert pick([candidate(1), candidate(2)], exclude={1}) == 2


def test_self_heal_targets_respect_interval_rounds_scope_and_model():
    failed = {"enabled": False, "disabled_reason": "TooManyFailures"}
    pool = [
        candidate(1, **failed),
        candidate(2, **failed, last_self_heal_at=NOW - timedelta(seconds=10)),
        candidate(3, **failed, self_heal_rounds=5),
        candidate(4, **failed, self_heal_rounds=1, self_heal_model="claude-opus-4.5"),
        candidate(5, enabled=False, disabled_reason="QuotaExceeded"),
        candidate(6, **failed, groups=frozenset({"x"})),
    ]

    targets = self_heal_targets(
        pool, model="claude-sonnet-4.5", group=None, now=NOW, min_interval_secs=300, max_rounds=5
    )

    assert targets == [1, 6]
    assert self_heal_targets(
        pool, model="claude-sonnet-4.5", group="x", now=NOW, min_interval_secs=300, max_rounds=5
    ) == [6]


# --- the key's catalogue (issue 9: model resolution) -------------------------------------

H_TABLE = ("claude-sonnet-4.5", "claude-opus-4.6")


def test_the_catalogue_is_the_union_of_enabled_in_group_lists():
    pool = [
        candidate(1, models=frozenset({"claude-sonnet-4.5"}), groups=frozenset({"a"})),
        candidate(2, models=frozenset({"claude-haiku-4.5"}), groups=frozenset({"a"})),
        candidate(3, models=frozenset({"gpt-5.1"}), groups=frozenset({"b"})),
        candidate(4, models=frozenset({"auto"}), groups=frozenset({"a"}), enabled=False),
    ]
    assert listed_models(pool, group="a", unknown_as=()) == {
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
    }
    assert listed_models(pool, group=None, unknown_as=()) == {
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
        "gpt-5.1",
    }


def test_cooling_down_credentials_count_in_the_catalogue():
    pool = [candidate(1, models=frozenset({"auto"}), cooldown_until=NOW + timedelta(hours=1))]
    assert listed_models(pool, group=None, unknown_as=()) == {"auto"}


def test_free_subscriptions_do_not_bring_opus_into_the_catalogue():
    pool = [
        candidate(
            1,
            subscription_title="KIRO FREE",
            models=frozenset({"claude-opus-4.6", "claude-sonnet-4.5"}),
        ),
        candidate(2, subscription_title="KIRO FREE"),  # unknown list: H's table, minus opus
    ]
    assert listed_models(pool, group=None, unknown_as=H_TABLE) == {"claude-sonnet-4.5"}


def test_unknown_lists_are_those_of_enabled_in_group_credentials():
    pool = [
        candidate(1),
        candidate(2, models=frozenset({"auto"})),
        candidate(3, enabled=False),
        candidate(4, groups=frozenset({"b"})),
    ]
    assert [c.id for c in unknown_lists(pool, group=None)] == [1, 4]
    assert [c.id for c in unknown_lists(pool, group="b")] == [4]
    assert listed_models(pool, group=None, unknown_as=H_TABLE) == {"auto", *H_TABLE}
