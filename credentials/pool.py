"""Choose a credential for one attempt (spec kiro-ops §3.1–§3.3, §3.9). Pure functions.

The dispatcher loads `Candidate` snapshots once per request (one query), then asks `choose()`
for each attempt, excluding credentials that already failed in this request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    priority: int
    enabled: bool
    disabled_reason: str
    cooldown_until: datetime | None
    subscription_title: str
    groups: frozenset[str]
    success_count: int
    models: frozenset[str] | None  # lower-cased upstream ids from the model cache; None: unknown
    self_heal_rounds: int
    last_self_heal_at: datetime | None
    self_heal_model: str


def is_in_scope(candidate: Candidate, *, model: str | None, group: str | None) -> bool:
    """Return whether the credential may serve this model and key group at all."""
    if group is not None and group not in candidate.groups:
        return False  # spec kiro-ops §3.11: strict group isolation
    if model is not None:
        if "opus" in model.lower() and "FREE" in candidate.subscription_title.upper():
            return False  # spec kiro-ops §3.1 rule 4
        if candidate.models is not None and model.lower() not in candidate.models:
            return False  # spec kiro-ops §3.1 rule 6: explicitly unsupported
    return True


def is_eligible(
    candidate: Candidate, *, model: str | None, group: str | None, now: datetime
) -> bool:
    """Return whether the credential can take an attempt now (spec kiro-ops §3.1)."""
    if not candidate.enabled:
        return False
    if candidate.cooldown_until is not None and candidate.cooldown_until > now:
        return False
    return is_in_scope(candidate, model=model, group=group)


def _lists_for(candidate: Candidate, group: str | None) -> bool:
    """Tell whether the credential's list counts in the key's catalogue: it may serve the
    key now or soon (enabled and in the group; a cooldown passes, spec kiro-ops §3.7)."""
    return candidate.enabled and is_in_scope(candidate, model=None, group=group)


def unknown_lists(candidates: Iterable[Candidate], *, group: str | None) -> list[Candidate]:
    """Return the credentials of the key's catalogue whose model list is not known yet."""
    return [c for c in candidates if c.models is None and _lists_for(c, group)]


def listed_models(
    candidates: Iterable[Candidate], *, group: str | None, unknown_as: Iterable[str]
) -> frozenset[str]:
    """Return the union of the model lists of the credentials the key may use.

    An id counts for a credential only when routing would let it serve that id (the opus
    rule: spec kiro-ops §3.1 rule 4). A list not known counts as `unknown_as`."""
    assumed = frozenset(m.lower() for m in unknown_as)
    listed: set[str] = set()
    seen: set[tuple[frozenset[str], str]] = set()
    for c in candidates:
        if not _lists_for(c, group):
            continue
        ids = c.models if c.models is not None else assumed
        # Runs on every request: a pool's credentials mostly share one list and plan.
        if (ids, c.subscription_title) in seen:
            continue
        seen.add((ids, c.subscription_title))
        listed.update(m for m in ids if is_in_scope(c, model=m, group=group))
    return frozenset(listed)


def _confirmed(candidate: Candidate, model: str | None) -> bool:
    return model is not None and candidate.models is not None and model.lower() in candidate.models


def choose(
    candidates: Sequence[Candidate],
    *,
    mode: str,
    current_id: int | None,
    model: str | None,
    group: str | None,
    now: datetime,
    exclude: Iterable[int] = (),
) -> Candidate | None:
    """Pick the credential for the next attempt, or None when nothing is eligible."""
    excluded = set(exclude)
    eligible = [
        c
        for c in candidates
        if c.id not in excluded and is_eligible(c, model=model, group=group, now=now)
    ]
    if not eligible:
        return None
    any_confirmed = any(_confirmed(c, model) for c in eligible)

    def rank(c: Candidate) -> int:
        return 0 if _confirmed(c, model) else 1

    if mode == "balanced":
        # spec kiro-ops §3.3: least successful calls first, no stickiness.
        return min(eligible, key=lambda c: (rank(c), c.success_count, c.priority, c.id))
    # spec kiro-ops §3.2: keep the sticky current credential while it is usable.
    for c in eligible:
        if c.id == current_id and (_confirmed(c, model) or not any_confirmed):
            return c
    return min(eligible, key=lambda c: (rank(c), c.priority, c.id))


def self_heal_targets(
    candidates: Sequence[Candidate],
    *,
    model: str | None,
    group: str | None,
    now: datetime,
    min_interval_secs: int,
    max_rounds: int,
) -> list[int]:
    """Return ids of TooManyFailures credentials that may be re-enabled (spec kiro-ops §3.9)."""
    model_key = (model or "").lower()
    targets = []
    for c in candidates:
        if c.enabled or c.disabled_reason != "TooManyFailures":
            continue
        if not is_in_scope(c, model=model, group=group):
            continue
        if c.self_heal_rounds > 0 and c.self_heal_model and c.self_heal_model != model_key:
            continue  # mid-streak for another model
        if max_rounds > 0 and c.self_heal_rounds >= max_rounds:
            continue
        if c.last_self_heal_at is not None and (
            now - c.last_self_heal_at < timedelta(seconds=min_interval_secs)
        ):
            continue
        targets.append(c.id)
    return targets
