"""Catalog endpoints: what resources exist and which fields the caller may see."""

from __future__ import annotations

from gateway.errors import Problem
from gateway.exchange import Answer, Exchange
from gateway.wiremodel import CatalogEntry, CatalogList


async def list_catalog(x: Exchange) -> Answer:
    """GET /v1/catalog: open and conditional resources, restricted ones to their owner."""
    cat = x.catalog
    items = [CatalogEntry(**cat.describe(x.client, e)) for e in cat.resources if cat.visible(x.client, e)]
    return Answer(200, CatalogList(instance=cat.instance, resources=items))


async def get_entry(x: Exchange) -> Answer:
    """GET /v1/catalog/{rid}: one entry; a restricted resource is refused to non-owners."""
    entry = x.entry
    assert entry is not None
    if not x.catalog.visible(x.client, entry):
        raise Problem("client.access_denied", f"{entry.id} is restricted to its owner")
    return Answer(200, CatalogEntry(**x.catalog.describe(x.client, entry)))
