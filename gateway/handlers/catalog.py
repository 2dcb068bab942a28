"""Catalog endpoints: what resources exist and which fields the caller may see."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.errors import Problem
from gateway.wire import respond

if TYPE_CHECKING:
    from gateway.app import Call


async def list_catalog(call: Call) -> web.Response:
    """GET /v1/catalog: open and conditional resources, restricted ones to their owner."""
    cat = call.state.catalog
    client = call.client or ""
    items = [cat.describe(client, e) for e in cat.resources if cat.visible(client, e)]
    return respond(call.request, 200, {"instance": cat.instance, "resources": items})


async def get_entry(call: Call) -> web.Response:
    """GET /v1/catalog/{rid}: one entry; a restricted resource is refused to non-owners."""
    cat, entry = call.state.catalog, call.entry
    assert entry is not None
    client = call.client or ""
    if not cat.visible(client, entry):
        raise Problem("client.access_denied", f"{entry.id} is restricted to its owner")
    return respond(call.request, 200, cat.describe(client, entry))
