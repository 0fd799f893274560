"""Resolve a client model id over the live catalogue: the Kiro ids the key's credentials list.

Clients send ids the pool may not list: Claude Code sends its newest default
(`claude-opus-5-5`), Codex `gpt-5-codex`. Z's normalisation (spec kiro-protocol §3.2) alone
would send them upstream verbatim and routing (kiro-ops §3.1 rule 6) would find no
credential. Here such an id becomes the newest listed model of its family, or the operator's
default, and the substitution is named so that the usage record shows it; strict mode
refuses instead. Pure: the catalogue is passed in as a set of lower-cased ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from gateway.protocol.models import (
    BUILTIN_MODEL_IDS,
    ConversionError,
    CustomModel,
    ResolvedModel,
    list_models,
    resolve_model,
)

FALLBACK = "fallback"
STRICT = "strict"
#: How many ids a strict refusal names.
LISTED_IN_REFUSAL = 10

_CLAUDE = re.compile(
    r"^claude-(?P<family>sonnet|opus|haiku|fable|mythos)-(?P<version>\d+(?:\.\d+)*)$"
)
# Every `gpt-*` id is one family; a version is read where it has one (`gpt-4o`: 4,
# `gpt-oss-120b`: none, the oldest).
_GPT = re.compile(r"^gpt-(?P<version>\d+(?:\.\d+)*)?(?P<variant>.*)$")
# A Claude id that names a family but is no plain `claude-{family}-{version}`: Z passes such
# ids (`claude-opus-5-beta`) through verbatim (spec §3.2), H maps them by substring.
_CLAUDE_WORD = re.compile(r"^claude-(?:.+-)?(?P<family>sonnet|opus|haiku|fable|mythos)(?:-.+)?$")
_DEFAULT_FAMILY = "sonnet"


class Substitution(StrEnum):
    """Why the id sent upstream differs from the requested one (also a convert `Rule`)."""

    #: Not listed: the newest listed model of the same family was sent instead.
    FAMILY = "model_fallback"
    #: Not listed, nor any model of its family: the operator's default model was sent.
    DEFAULT = "model_default"


#: The Kiro ids of H's static model table (spec §3.2): what a credential whose model list
#: could not be fetched is assumed to serve.
BUILTIN_KIRO_IDS: frozenset[str] = frozenset(
    resolve_model(model_id).upstream_id.lower() for model_id in BUILTIN_MODEL_IDS
)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The models the key's credentials list, and what to do with an id none of them lists."""

    ids: frozenset[str]  # lower-cased Kiro ids
    strict: bool = False
    default_model: str = ""  # the operator's default; blank: the newest listed sonnet


class ModelNotListed(ConversionError):
    """Strict mode: no credential of the key lists the model; rendered as a 404."""

    def __init__(self, model: str, available: Iterable[str]) -> None:
        ids = sorted(set(available))
        shown = ", ".join(ids[:LISTED_IN_REFUSAL]) or "none"
        more = f" (and {len(ids) - LISTED_IN_REFUSAL} more)" if len(ids) > LISTED_IN_REFUSAL else ""
        super().__init__(
            "model",
            f"'{model}' is not available from this gateway's credentials. "
            f"Available models: {shown}{more}.",
        )
        self.model = model
        self.available = tuple(ids[:LISTED_IN_REFUSAL])


def family_of(model_id: str) -> tuple[str, tuple[int, ...]] | None:
    """Return (family, numeric version) of a Kiro model id, or None outside the families.

    The Claude families are those of spec §3.2; every `gpt-*` id is one family of its own.
    Versions compare as integer tuples, so 4.10 > 4.9 > 4."""
    lowered = model_id.lower()
    match = _CLAUDE.match(lowered)
    if match is not None:
        return match.group("family"), _version(match.group("version"))
    match = _GPT.match(lowered)
    if match is not None:
        return "gpt", _version(match.group("version") or "")
    return None


def requested_family(model_id: str) -> str | None:
    """Return the family of a requested (normalised) id: as `family_of`, or the family a
    Claude id names without a plain version (`claude-opus-5-beta`: opus)."""
    found = family_of(model_id)
    if found is not None:
        return found[0]
    match = _CLAUDE_WORD.match(model_id.lower())
    return match.group("family") if match is not None else None


def resolve_listed(
    model: object,
    *,
    custom_models: Iterable[CustomModel] = (),
    catalogue: Catalogue | None = None,
) -> ResolvedModel:
    """Resolve a client model id to a Kiro id the catalogue lists, or raise ConversionError.

    Custom models and ids the catalogue lists pass as `resolve_model` gives them; so does
    everything when the catalogue is unknown (None) or empty (no usable credential: dispatch
    answers 503). Otherwise strict mode raises ModelNotListed and fallback mode substitutes:
    the newest listed model of the family, else the operator's default if listed, else the
    newest listed sonnet, else the newest listed model of any family, else any listed id."""
    customs = tuple(custom_models)
    resolved = resolve_model(model, custom_models=customs)
    if resolved.custom or catalogue is None or not catalogue.ids:
        return resolved
    ids = catalogue.ids
    if resolved.upstream_id.lower() in ids:
        return resolved
    if catalogue.strict:
        raise ModelNotListed(resolved.requested, ids | {c.id for c in customs})
    family = requested_family(resolved.upstream_id)
    if family is not None:
        newest = _newest(ids, family, resolved.upstream_id)
        if newest is not None:
            return _substitute(resolved, newest, Substitution.FAMILY)
    return _substitute(resolved, _default(catalogue, customs), Substitution.DEFAULT)


def available_models(
    ids: Iterable[str], *, custom_models: Iterable[CustomModel] = ()
) -> tuple[ResolvedModel, ...]:
    """List what `/v1/models` shows for a catalogue: the true union, without duplicates.

    The built-ins (and their `-thinking` twins) whose Kiro id is listed, in H's order, then
    every listed Kiro id as it is (sorted), then the custom models (all of them, kiro-ops
    §1.4). A listed id equal to a custom or built-in id is shown once."""
    listed = frozenset(i.lower() for i in ids)
    customs = tuple(custom_models)
    custom_ids = {entry.id.lower() for entry in customs}
    everything = list_models(custom_models=customs)
    builtins = [m for m in everything if not m.custom and m.upstream_id.lower() in listed]
    shown = custom_ids | {m.requested.lower() for m in builtins}
    raw = []
    for model_id in sorted(listed - shown):
        try:
            raw.append(resolve_model(model_id))
        except ConversionError:
            continue  # a malformed upstream id: nothing a client could send
    return (*builtins, *raw, *(m for m in everything if m.custom))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")) if text else ()


def _variant(model_id: str) -> str:
    """Return what follows a gpt id's version (`-codex`, `-sol`), or ''."""
    match = _GPT.match(model_id.lower())
    return match.group("variant") if match is not None else ""


def _newest(ids: frozenset[str], family: str, requested: str) -> str | None:
    """Return the newest listed id of the family.

    Ties on the version (`gpt-5.6-sol`, `gpt-5.6-luna`) go to the requested variant, then to
    the plain id, then to the first in alphabetical order (max keeps the first maximum), so
    that the answer never depends on set order."""
    wanted = _variant(requested)
    members = []
    for model_id in sorted(ids):
        found = family_of(model_id)
        if found is not None and found[0] == family:
            variant = _variant(model_id)
            members.append(((found[1], variant == wanted, variant == ""), model_id))
    return max(members, key=lambda member: member[0])[1] if members else None


def _default(catalogue: Catalogue, customs: tuple[CustomModel, ...]) -> str:
    """Return the listed id to send when the requested family has nothing listed."""
    ids = catalogue.ids
    if catalogue.default_model.strip():
        try:
            default = resolve_model(catalogue.default_model, custom_models=customs)
        except ConversionError:
            default = None
        if default is not None and default.upstream_id.lower() in ids:
            return default.upstream_id.lower()
    sonnet = _newest(ids, _DEFAULT_FAMILY, "")
    if sonnet is not None:
        return sonnet
    ranked = [(found[1], model_id) for model_id in sorted(ids) if (found := family_of(model_id))]
    if ranked:
        return max(ranked, key=lambda member: member[0])[1]
    return "auto" if "auto" in ids else min(ids)


def _substitute(resolved: ResolvedModel, model_id: str, why: Substitution) -> ResolvedModel:
    """Send `model_id` (as listed) for the requested model, keeping the client's id and its
    `-thinking` override (spec §3.3), with the limits of the model actually sent."""
    sent = resolve_model(model_id)
    return replace(
        sent,
        requested=resolved.requested,
        upstream_id=model_id,
        thinking_forced=resolved.thinking_forced,
        substitution=str(why),
    )
