"""Operational endpoints over HTTP: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

from typing import Any

from gwkit import GRANTED, ID_CARD, OPEN, OWNER, Raw, id_card
from prometheus_client.parser import text_string_to_metric_families

from gateway.catalog import Catalog
from gateway.routes import ROUTES

EXPECTED_METRICS = {
    "exchange_requests",
    "exchange_request_duration_seconds",
    "exchange_inflight_requests",
    "exchange_overload_rejections",
    "exchange_records_pushed",
    "exchange_records_pulled",
    "exchange_store_append_seconds",
    "exchange_push_batch_records",
}
CONTRACT_PATHS = {
    "/v1/resources/{rid}/records": {"post", "get"},
    "/v1/resources/{rid}/cursor": {"put"},
    "/v1/resources/{rid}/records/{key}": {"get"},
    "/v1/catalog": {"get"},
    "/v1/catalog/{rid}": {"get"},
    "/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{path}": {
        "get",
        "post",
        "put",
        "patch",
        "delete",
    },
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def test_healthz_and_readyz(raw: Raw) -> None:
    r = await raw.request("GET", "/healthz", signed=False)
    assert r.status == 200 and r.json() == {"status": "ok"}
    r = await raw.request("GET", "/readyz", signed=False)
    assert r.status == 200
    doc = r.json()
    assert doc["status"] == "ready" and doc["checks"]["store"] and doc["checks"]["catalog"]


async def test_metrics_names_and_bounded_labels(raw: Raw, catalog: Catalog) -> None:
    await raw.push(ID_CARD, [id_card()])
    # Touch many distinct resources, keys and unknown paths: none may become a label value.
    for e in catalog.resources[:30]:
        await raw.request("GET", f"/v1/resources/{e.id}/records", query="limit=1", client=GRANTED)
        await raw.request("GET", f"/v1/resources/{e.id}/records/k-{e.index}", client=GRANTED)
    for i in range(20):
        await raw.request("GET", f"/no/such/path/{i}", signed=False)
        await raw.request("GET", f"/v1/resources/unknown-{i}/records")
    r = await raw.request("GET", "/metrics", signed=False)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    assert set(families) >= EXPECTED_METRICS, sorted(families)

    label_values: set[str] = set()
    series = 0
    for f in families.values():
        for s in f.samples:
            series += 1
            label_values |= {v for k, v in s.labels.items() if k != "le"}
    resource_ids = set(catalog.resource_ids)
    assert not label_values & resource_ids, label_values & resource_ids
    assert not any("/" in v or "unknown-" in v or v.startswith("k-") for v in label_values), (
        label_values
    )
    routes = {
        s.labels["route"] for s in families["exchange_requests"].samples if "route" in s.labels
    }
    known = {r.name for r in ROUTES} | {"unmatched", "overload", "malformed"}
    assert routes <= known, routes - known
    assert series < 1000
    pushed = families["exchange_records_pushed"].samples
    assert any(s.name.endswith("_total") and s.value >= 1 for s in pushed)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for v in node.values():
            out += _refs(v)
        return out
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_openapi_document(raw: Raw) -> None:
    r = await raw.request("GET", "/openapi.json", signed=False)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    paths = doc["paths"]
    for path, methods in CONTRACT_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    for path, item in paths.items():
        assert path.startswith("/")
        params = {p["name"] for p in item.get("parameters", []) if p.get("in") == "path"}
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            assert op.get("responses"), (path, method)
            for p in op.get("parameters", []):
                if p.get("in") == "path":
                    params.add(p["name"])
            for status in op["responses"]:
                assert status == "default" or (status.isdigit() and len(status) == 3), status
        templated = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        assert templated == params, (path, templated, params)
    for ref in _refs(doc):
        _resolve(doc, ref)  # every $ref resolves inside the document


async def test_ops_endpoints_need_no_signature_but_v1_does(raw: Raw) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await raw.request("GET", path, signed=False)).status == 200
    r = await raw.request("GET", f"/v1/resources/{OPEN}/records", signed=False)
    assert r.status == 401
    r = await raw.request("GET", "/v1/catalog", signed=True, client=OWNER)
    assert r.status == 200


async def test_errors_are_counted_under_their_route(raw: Raw) -> None:
    await raw.request("GET", f"/v1/resources/{ID_CARD}/records", signed=False)  # 401
    await raw.push(ID_CARD, [])  # 422
    await raw.request("GET", f"/v1/resources/{ID_CARD}/records/none", client=GRANTED)  # 403 or 404
    r = await raw.request("GET", "/metrics", signed=False)
    samples = {
        (s.labels.get("route"), s.labels.get("status"))
        for f in text_string_to_metric_families(r.body.decode())
        if f.name == "exchange_requests"
        for s in f.samples
    }
    assert ("records", "401") in samples and ("records", "422") in samples, samples
    assert any(route == "record" and status in ("403", "404") for route, status in samples), samples
