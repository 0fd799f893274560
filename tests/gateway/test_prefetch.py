"""The first database trip's pool read (views._begin -> dispatch.prefetch_pool) and its use."""

from __future__ import annotations

import pytest

from credentials import selectors
from gateway import dispatch
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
