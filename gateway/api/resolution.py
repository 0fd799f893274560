"""Which model a request is sent with: custom models, Z's normalisation, then the live
catalogue of the key's credentials (protocol.catalogue; issue 9).

The warm path resolves from what the request's first database trip read (views._begin);
when a credential's model list is not known yet, the lists are fetched first
(model_cache.catalogue), so that cold and warm caches give the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from credentials import model_cache, selectors
from credentials.asyncdb import db
from credentials.pool import Candidate, is_in_scope, listed_models, unknown_lists
from credentials.selectors import GatewayConfig, KeyIdentity
from gateway.api import dispatch
from gateway.protocol.catalogue import Catalogue, available_models, resolve_listed
from gateway.protocol.convert import web_search_mode
from gateway.protocol.models import ConversionError, CustomModel, ResolvedModel


def custom_models(config: GatewayConfig) -> tuple[CustomModel, ...]:
    """Turn config.json's customModels entries into protocol values (spec kiro-ops §1.4)."""
    out = []
    for entry in config.custom_models:
        if not isinstance(entry, Mapping) or not entry.get("id") or not entry.get("backendId"):
            continue
        out.append(
            CustomModel(
                id=str(entry["id"]),
                backend_id=str(entry["backendId"]),
                display_name=entry.get("displayName"),
                context_window=entry.get("contextWindow") or 200_000,
                max_tokens=entry.get("maxTokens") or 64_000,
                supports_reasoning=bool(entry.get("supportsReasoning")),
                owned_by=entry.get("ownedBy") or "custom",
            )
        )
    return tuple(out)


def catalogue(config: GatewayConfig, listed: frozenset[str]) -> Catalogue:
    """Return the catalogue of these listed ids under the gateway's resolution settings."""
    return Catalogue(
        listed, strict=config.model_resolution == "strict", default_model=config.fallback_model
    )


def listed_at_start(candidates: list[Candidate], group: str | None) -> frozenset[str] | None:
    """Return the union of the key's credentials' lists as read, or None while one of them
    is not known (cold: `resolvable` fetches it before resolving)."""
    if unknown_lists(candidates, group=group):
        return None
    return listed_models(candidates, group=group, unknown_as=())


def first_model(
    body: dict[str, Any], config: GatewayConfig, listed: frozenset[str] | None
) -> str | None:
    """Return the upstream model id a plain chat body will ask for, or None if unsure."""
    model = body.get("model")
    if listed is None or not isinstance(model, str) or web_search_mode(body) != "none":
        return None
    try:
        return resolve(model, config, listed).upstream_id
    except ConversionError:
        return None


def resolve(model: object, config: GatewayConfig, listed: frozenset[str]) -> ResolvedModel:
    """Resolve a client model id over the listed ids (raises ConversionError, ModelNotListed)."""
    return resolve_listed(
        model, custom_models=custom_models(config), catalogue=catalogue(config, listed)
    )


async def resolvable(
    key: KeyIdentity, config: GatewayConfig, prefetched: dispatch.Prefetched | None
) -> tuple[dispatch.Prefetched, frozenset[str]]:
    """Return the pool read with every model list of the key's credentials known, and
    their union.

    Warm: what the first trip read, no query. Cold (a list missing): the missing lists are
    fetched first. Without a first trip (the OpenAI endpoints) the pool is read here, which
    `dispatch.connect` then reuses instead of reading it itself."""
    if prefetched is None:
        candidates = await db(selectors.pool_candidates, group=key.group)
        prefetched = dispatch.Prefetched(candidates, None, None)
    if prefetched.catalogue is None:
        prefetched.candidates, prefetched.catalogue = await model_cache.catalogue(
            prefetched.candidates, group=key.group, config=config
        )
    return prefetched, prefetched.catalogue


async def listable(
    candidates: list[Candidate], key: KeyIdentity, config: GatewayConfig
) -> tuple[ResolvedModel, ...] | None:
    """Return the models the key's credentials can serve, or None if it has no usable one.

    spec kiro-ops §3.10 (Z): the union of the ListAvailableModels lists of the credentials
    the key's group may use, merged with the custom models: every listed Kiro id, and the
    built-in Anthropic ids whose Kiro id is listed (protocol.catalogue.available_models).
    Lists not known yet are fetched first, as for a request; one that cannot be fetched
    counts as H's table (Z answers 502 then, which breaks clients that list models first)."""
    usable = [c for c in candidates if c.enabled and is_in_scope(c, model=None, group=key.group)]
    if not usable:
        return None
    _, listed = await model_cache.catalogue(candidates, group=key.group, config=config)
    return available_models(listed, custom_models=custom_models(config))
