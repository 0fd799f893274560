"""Map client model ids onto Kiro model ids (spec kiro-protocol §3.2, §3.3; kiro-ops §1.4).

Pure data in, frozen values out. Custom models come from settings as plain `CustomModel`
values; nothing here reads settings itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: spec 3.2 (Z): ids longer than this are refused outright.
MAX_MODEL_ID_BYTES = 256
DEFAULT_CONTEXT_WINDOW = 200_000
LARGE_CONTEXT_WINDOW = 1_000_000
GPT_CONTEXT_WINDOW = 272_000
DEFAULT_MAX_OUTPUT_TOKENS = 64_000

_FAMILIES = ("sonnet", "opus", "haiku", "fable", "mythos")
_FAMILY_RE = "|".join(_FAMILIES)
_VERSION_RE = r"\d{1,2}(?:[-.]\d{1,2}){0,2}"
# spec 3.2 (Z): new style `claude-{family}[-.]{ver}`, old style `claude-{ver}-{family}`.
_NEW_STYLE = re.compile(rf"^claude-(?P<family>{_FAMILY_RE})[-.](?P<version>{_VERSION_RE})$")
_OLD_STYLE = re.compile(rf"^claude-(?P<version>{_VERSION_RE})-(?P<family>{_FAMILY_RE})$")
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_GPT_REASONING = re.compile(r"^gpt-5\.6-(?:sol|terra|luna)$")

# spec 3.16: upstream ids that accept additionalModelRequestFields.
_REASONING_IDS = frozenset(
    {"claude-opus-4.6", "claude-opus-4.7", "claude-opus-4.8", "claude-sonnet-4.6"}
)
_REASONING_FRAGMENTS = ("fable-5", "mythos-5", "sonnet-5", "opus-5", "claude-5")

# H's static /v1/models list (spec 3.2); each is also listed with a `-thinking` twin.
BUILTIN_MODEL_IDS: tuple[str, ...] = (
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
)


class ConversionError(ValueError):
    """A request the gateway cannot convert; rendered as a 400 `invalid_request_error`.

    Lives here, the lowest module of the conversion package, so models, images, tools and
    convert all raise the same type. `field` is the dotted path of the offending input.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


@dataclass(frozen=True, slots=True)
class CustomModel:
    """One `customModels` entry of the config (kiro-ops §1.4), as plain data."""

    id: str
    backend_id: str
    display_name: str | None = None
    context_window: int = DEFAULT_CONTEXT_WINDOW
    max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    supports_reasoning: bool = False
    owned_by: str = "custom"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """What a client model id means upstream."""

    requested: str
    upstream_id: str
    thinking_forced: bool
    context_window: int
    max_output_tokens: int
    supports_reasoning: bool
    display_name: str
    owned_by: str
    custom: bool = False
    #: Set when the catalogue lacked the id and another was sent (protocol.catalogue).
    substitution: str | None = None

    @property
    def is_gpt(self) -> bool:
        return self.upstream_id.lower().startswith("gpt")


def resolve_model(model: object, *, custom_models: Iterable[CustomModel] = ()) -> ResolvedModel:
    """Resolve a client model id to its Kiro id and limits, or raise ConversionError.

    Follows Z: custom models first, then Claude-name normalisation, then verbatim
    pass-through of any other well-formed id.
    """
    if not isinstance(model, str):
        raise ConversionError("model", "must be a string")
    if not model.strip():
        raise ConversionError("model", "must not be empty")
    if len(model.encode()) > MAX_MODEL_ID_BYTES:
        raise ConversionError("model", f"longer than {MAX_MODEL_ID_BYTES} bytes")
    if _CONTROL.search(model):
        raise ConversionError("model", "contains control characters")

    custom = _find_custom(model, tuple(custom_models))
    if custom is not None:
        entry, forced = custom
        return ResolvedModel(
            requested=model,
            upstream_id=entry.backend_id,
            thinking_forced=forced,
            context_window=entry.context_window,
            max_output_tokens=entry.max_tokens,
            supports_reasoning=entry.supports_reasoning,
            display_name=entry.display_name or entry.id,
            owned_by=entry.owned_by,
            custom=True,
        )

    base, forced = _strip_suffixes(model)
    if not base.strip():
        raise ConversionError("model", f"not a model id: {model!r}")
    normalized = _normalize_claude(base.lower())
    if normalized is not None:
        family, version = normalized
        upstream = f"claude-{family}-{version}"
        display = f"Claude {family.capitalize()} {version}"
        owned_by = "anthropic"
    else:
        # spec 3.2 (Z): not normalizable -> passed through verbatim. We still strip a
        # trailing `-thinking`: no upstream id carries it, and it forced thinking (§3.3).
        upstream = base
        display = base
        owned_by = "openai" if base.lower().startswith("gpt") else "kiro"
    return ResolvedModel(
        requested=model,
        upstream_id=upstream,
        thinking_forced=forced,
        context_window=context_window_for(upstream),
        max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS,
        supports_reasoning=supports_reasoning(upstream),
        display_name=display,
        owned_by=owned_by,
    )


def context_window_for(upstream_id: str) -> int:
    """Return the context window of a built-in upstream id (spec 3.2, Z's table, widened).

    Z lists the 1M models one by one, so every new release (e.g. `claude-opus-5.5`) falls
    back to 200k and usage maths is off by 5x; we go by family and version instead.
    """
    lowered = upstream_id.lower()
    if lowered.startswith("gpt"):
        return GPT_CONTEXT_WINDOW
    match = re.fullmatch(rf"claude-({_FAMILY_RE})-(\d+)(?:\.(\d+))?(?:\.\d+)?", lowered)
    if match is None:
        return DEFAULT_CONTEXT_WINDOW
    family, major, minor = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if family in ("sonnet", "opus") and (major, minor) >= (4, 6):
        return LARGE_CONTEXT_WINDOW
    if family in ("fable", "mythos") and major >= 5:
        return LARGE_CONTEXT_WINDOW
    return DEFAULT_CONTEXT_WINDOW


def supports_reasoning(upstream_id: str) -> bool:
    """Tell whether the upstream id accepts additionalModelRequestFields (spec 3.16)."""
    lowered = upstream_id.lower()
    return (
        lowered in _REASONING_IDS
        or any(fragment in lowered for fragment in _REASONING_FRAGMENTS)
        or _GPT_REASONING.match(lowered) is not None
    )


def list_models(*, custom_models: Iterable[CustomModel] = ()) -> tuple[ResolvedModel, ...]:
    """List the models `/v1/models` shows: the built-ins, their `-thinking` twins, then customs.

    Custom entries sharing an id are all listed (kiro-ops §1.4), in config order.
    """
    listed: list[ResolvedModel] = []
    for model_id in BUILTIN_MODEL_IDS:
        listed.append(resolve_model(model_id))
        listed.append(resolve_model(f"{model_id}-thinking"))
    for entry in custom_models:
        listed.append(
            ResolvedModel(
                requested=entry.id,
                upstream_id=entry.backend_id,
                thinking_forced=False,
                context_window=entry.context_window,
                max_output_tokens=entry.max_tokens,
                supports_reasoning=entry.supports_reasoning,
                display_name=entry.display_name or entry.id,
                owned_by=entry.owned_by,
                custom=True,
            )
        )
    return tuple(listed)


def _find_custom(
    model: str, custom_models: tuple[CustomModel, ...]
) -> tuple[CustomModel, bool] | None:
    """Find the custom entry for `model`; the later of two equal ids wins (kiro-ops §1.4)."""
    if not custom_models:
        return None
    by_id = {entry.id.lower(): entry for entry in custom_models}
    lowered = model.lower()
    if lowered in by_id:
        return by_id[lowered], lowered.endswith("-thinking")
    if lowered.endswith("-thinking"):
        entry = by_id.get(lowered.removesuffix("-thinking"))
        if entry is not None:
            return entry, True
    return None


def _strip_suffixes(model: str) -> tuple[str, bool]:
    """Strip trailing `-thinking` / `-latest` (repeatedly), keeping the original case."""
    forced = False
    base = model.strip()
    while True:
        lowered = base.lower()
        if lowered.endswith("-thinking"):
            base, forced = base[: -len("-thinking")], True
        elif lowered.endswith("-latest"):
            base = base[: -len("-latest")]
        else:
            return base, forced


def _normalize_claude(lowered: str) -> tuple[str, str] | None:
    """Return (family, dotted version) for a Claude-style id, or None (spec 3.2, Z step 3)."""
    if not lowered.startswith("claude-"):
        return None
    candidate = _DATE_SUFFIX.sub("", lowered)
    for pattern in (_NEW_STYLE, _OLD_STYLE):
        match = pattern.match(candidate)
        if match is not None:
            version = match.group("version").replace("-", ".")
            return match.group("family"), version
    return None
