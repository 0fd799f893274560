"""The first database trip's pool read (views._begin -> dispatch.prefetch_pool) and its use."""

from __future__ import annotations

import asyncio

import pytest

from credentials import model_cache, selectors
from gateway.api import dispatch, resolution
from tests.factories import ClientKeyFactory, CredentialFactory

pytestmark = pytest.mark.django_db


def _request(prefetched: dispatch.Prefetched, model: str = "claude-sonnet-4.5"):
    return dispatch.Request(key=None, config=None, draft=None, model=model, prefetched=prefetched)


def test_the_first_choice_is_read_with_the_pool_and_used_once():
    second = CredentialFactory(priority=2)
    first = CredentialFactory(priority=1)
    key = ClientKeyFactory()
    config = selectors.read_gateway_config()
    start = selectors.request_start(key.key_hash)

    prefetched = dispatch.prefetch_pool(start.key, config, "claude-sonnet-4.5", start)

    assert [c.id for c in prefetched.candidates] == [first.pk, second.pk]
    assert prefetched.access.id == first.pk
    request = _request(prefetched)
    assert dispatch._take_prefetched(request, second.pk) is None  # another choice: read it
    assert dispatch._take_prefetched(request, first.pk) is None  # consumed by the first try


def test_a_prefetch_for_another_model_is_not_used():
    credential = CredentialFactory()
    key = ClientKeyFactory()
    config = selectors.read_gateway_config()
    start = selectors.request_start(key.key_hash)
    prefetched = dispatch.prefetch_pool(start.key, config, "claude-sonnet-4.5", start)

    assert dispatch._take_prefetched(_request(prefetched, "claude-opus-4.5"), credential.pk) is None
    assert dispatch._take_prefetched(_request(prefetched), credential.pk).id == credential.pk


BODY = {"model": "claude-opus-5-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}


def test_a_warm_pool_resolves_from_the_first_read_without_another_trip(monkeypatch):
    credential = CredentialFactory(available_models=["claude-opus-4.6", "claude-sonnet-4.5"])
    key = ClientKeyFactory()
    config = selectors.read_gateway_config()
    start = selectors.request_start(key.key_hash)

    listed = resolution.listed_at_start(start.candidates, start.key.group)
    model = resolution.first_model(BODY, config, listed)
    prefetched = dispatch.prefetch_pool(start.key, config, model, start, catalogue=listed)

    assert listed == {"claude-opus-4.6", "claude-sonnet-4.5"}
    assert model == "claude-opus-4.6"  # the fallback: the prefetched choice is the one used
    assert prefetched.access.id == credential.pk

    def no_trip(*args, **kwargs):
        raise AssertionError("the warm path made a trip")

    monkeypatch.setattr(resolution, "db", no_trip)
    monkeypatch.setattr(model_cache, "fetch_lists", no_trip)
    again, ids = asyncio.run(resolution.resolvable(start.key, config, prefetched))
    assert again is prefetched and ids == listed
    assert dispatch._take_prefetched(_request(prefetched, model), credential.pk) is not None


def test_a_pool_with_a_list_not_known_yet_is_resolved_after_fetching():
    CredentialFactory(available_models=["claude-sonnet-4.5"])
    CredentialFactory()  # no list yet
    key = ClientKeyFactory()
    start = selectors.request_start(key.key_hash)

    listed = resolution.listed_at_start(start.candidates, start.key.group)

    assert listed is None
    assert resolution.first_model(BODY, selectors.read_gateway_config(), listed) is None
