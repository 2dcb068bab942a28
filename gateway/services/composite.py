"""Composite ("one transaction", 一件事) services: several service calls as one request.

Steps declared in the catalog run as soon as the steps they depend on (``after`` and
``$steps.NAME...`` references in their body) have succeeded; independent steps run in
parallel. Every step gets the same request id, an audit entry of its own and a result in
the answer. A failed step is reported (the whole answer is then a 502 problem with every
step's result), and steps depending on it are skipped, never run on missing data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from multidict import CIMultiDict

from gateway.errors import PROBLEM_TYPE, Problem
from gateway.nesting import MAX_DEPTH, deeper_than
from gateway.services.spec import Composite, ServiceIndex, Step

if TYPE_CHECKING:
    from gateway.services.proxy import ServiceRegistry

PASS_HEADERS = ("X-Exchange-Id", "X-Exchange-UserId", "X-Exchange-Purpose", "X-Exchange-Consent")

#: ``on_step(service, http_status, detail)``: called once per step as it ends (the audit).
StepHook = Callable[[str, int, str], None]


class MissingRef(Exception):
    """A body template names data that is not there."""


def _lookup(root: Any, path: list[str], ref: str) -> Any:
    cur = root
    for p in path:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise MissingRef(ref)
    return cur


def render(template: Any, inp: Any, steps: dict[str, dict[str, Any]]) -> Any:
    """Substitute ``$input[.a.b]`` and ``$steps.NAME.body[.x]`` / ``$steps.NAME.status``."""
    if isinstance(template, str):
        if template == "$input":
            return inp
        if template.startswith("$input."):
            return _lookup(inp, template.split(".")[1:], template)
        if template.startswith("$steps."):
            parts = template.split(".")
            if len(parts) < 3 or parts[1] not in steps:
                raise MissingRef(template)
            return _lookup(steps[parts[1]], parts[2:], template)
        return template
    if isinstance(template, dict):
        return {k: render(v, inp, steps) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, inp, steps) for v in template]
    return template


def _deps(step: Step) -> set[str]:
    from gateway.services.spec import _refs

    return set(step.after) | set(_refs(step.body))


def _decode(body: bytes) -> Any:
    """A backend's answer as JSON, or as (shortened) text when it is not JSON or too deep."""
    try:
        doc = msgspec.json.decode(body) if body else None
    except (msgspec.DecodeError, RecursionError):
        doc = body
    if isinstance(doc, bytes) or deeper_than(doc, MAX_DEPTH):
        return body[:2000].decode(errors="replace")
    return doc


def missing_input(comp: Composite, inp: Any) -> list[str]:
    """The ``$input...`` references of the composite's steps that ``inp`` does not hold."""
    missing = []
    for step in comp.steps:
        for ref in _input_refs(step.body):
            try:
                render(ref, inp, {})
            except MissingRef:
                missing.append(ref)
    return sorted(set(missing))


def _input_refs(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj] if obj == "$input" or obj.startswith("$input.") else []
    if isinstance(obj, dict):
        return [r for v in obj.values() for r in _input_refs(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _input_refs(v)]
    return []


async def run(comp: Composite, inp: Any, *, client: str, request_id: str, headers: Mapping[str, str],
              index: ServiceIndex, pools: ServiceRegistry, on_step: StepHook) -> tuple[int, dict[str, Any]]:
    """Run the composite for ``client`` on input ``inp``; return (HTTP status, answer document).

    ``headers`` are the caller's request headers (the ``PASS_HEADERS`` go to every step),
    ``index`` and ``pools`` the catalog's services and their backends."""
    if deeper_than(inp, MAX_DEPTH):
        raise Problem("client.bad_request", f"the composite input is nested deeper than {MAX_DEPTH} levels (the limit)")
    missing = missing_input(comp, inp)
    if missing:
        raise Problem("client.validation_failed", f"composite {comp.id} needs {', '.join(missing)} in its input")
    results: dict[str, dict[str, Any]] = {s.name: {"name": s.name, "service": s.service, "status": "pending"}
                                          for s in comp.steps}
    data: dict[str, dict[str, Any]] = {}
    done: dict[str, asyncio.Event] = {s.name: asyncio.Event() for s in comp.steps}
    base_headers: CIMultiDict[str] = CIMultiDict()
    for h in PASS_HEADERS:
        v = headers.get(h)
        if v is not None:
            base_headers[h] = v
    base_headers.update({"X-Exchange-Client": client, "X-Exchange-Request-Id": request_id,
                         "X-Exchange-Composite": comp.id, "Content-Type": "application/json"})

    async def one(step: Step) -> None:
        res = results[step.name]
        t0 = time.perf_counter()
        try:
            for dep in _deps(step):
                await done[dep].wait()
            failed = [d for d in sorted(_deps(step)) if results[d]["status"] != "ok"]
            if failed:
                res.update(status="skipped", error=f"depends on failed step(s) {', '.join(failed)}")
                return
            rule = index.rule(client, step.service)
            if rule is None or not rule.allows(step.method, step.path):
                res.update(status="failed", http_status=403,
                           error=f"{client} may not {step.method} {step.path} on {step.service}")
                return
            pool = pools.get(step.service)
            if pool is None:
                res.update(status="failed", http_status=503, error="service is being reloaded")
                return
            try:
                body = render(step.body, inp, data)
            except MissingRef as exc:
                res.update(status="failed", error=f"body template reference {exc} not found")
                return
            hdrs = base_headers.copy()
            hdrs["X-Exchange-Step"] = step.name
            payload = b"" if body is None else msgspec.json.encode(body)
            try:
                up = await pool.call(step.method, step.path, payload, hdrs)
            except Problem as p:
                res.update(status="failed", http_status=p.status, error=p.detail)
                return
            decoded = _decode(up.body)
            res.update(status="ok" if 200 <= up.status < 300 else "failed", http_status=up.status,
                       body=decoded)
            if res["status"] == "ok":
                data[step.name] = {"body": decoded, "status": up.status}
            else:
                res["error"] = f"{step.service} answered {up.status}"
        except asyncio.CancelledError:
            res.update(status="failed", error=f"composite timed out after {comp.timeout_s:g} s")
            raise
        finally:
            res["ms"] = round((time.perf_counter() - t0) * 1000, 1)
            done[step.name].set()
            on_step(step.service, res.get("http_status", 0), f"{comp.id}/{step.name}:{res['status']}")

    tasks = [asyncio.ensure_future(one(s)) for s in comp.steps]
    try:
        async with asyncio.timeout(comp.timeout_s):
            await asyncio.gather(*tasks)
    except TimeoutError:
        pass
    finally:  # timed out, or the call itself was cancelled: no step outlives it
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    steps = [results[s.name] for s in comp.steps]
    bad = [s["name"] for s in steps if s["status"] != "ok"]
    if not bad:
        return 200, {"composite": comp.id, "request_id": request_id, "status": "completed",
                     "steps": steps}
    return 502, {"type": PROBLEM_TYPE + "server.upstream_failed", "title": "Upstream failed", "status": 502,
                 "detail": f"composite {comp.id}: step(s) {', '.join(bad)} did not succeed",
                 "code": "server.upstream_failed", "request_id": request_id,
                 "composite": comp.id, "steps": steps}
