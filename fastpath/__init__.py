"""OneStop Exchange fast path: route table, record-batch codec and field projection.

Each compiled module (``router``, ``codec``, ``projection``, built from ``.pyx`` by
``setup.py``) has a pure-Python twin (``_router_py``, ``_codec_py``, ``_projection_py``)
with the same names; the twins are the specification. At import the compiled modules are
used unless ``GATEWAY_NO_EXTENSIONS`` is set (non-empty and not ``"0"``) or they are not
built, in which case the twins are. ``IMPLEMENTATION`` says which: ``"cython"`` or
``"python"``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fastpath._errors import CorruptBatch

__all__ = [
    "IMPLEMENTATION",
    "NO_EXTENSIONS",
    "Implementation",
    "implementation",
    "CorruptBatch",
    "RouteTable",
    "encode_batch",
    "decode_batch",
    "iter_batch",
    "batch_count",
    "Plan",
    "compile_plan",
    "project",
    "project_many",
]

_MODULES = {
    "cython": ("fastpath.router", "fastpath.codec", "fastpath.projection"),
    "python": ("fastpath._router_py", "fastpath._codec_py", "fastpath._projection_py"),
}


def _no_extensions() -> bool:
    value = os.environ.get("GATEWAY_NO_EXTENSIONS", "")
    return value not in ("", "0")


#: True when ``GATEWAY_NO_EXTENSIONS`` forced the pure-Python twins.
NO_EXTENSIONS = _no_extensions()


@dataclass(frozen=True)
class Implementation:
    """One implementation of the fast path, with the same names as the package."""

    name: str
    RouteTable: Any
    encode_batch: Any
    decode_batch: Any
    iter_batch: Any
    batch_count: Any
    Plan: Any
    compile_plan: Any
    project: Any
    project_many: Any
    CorruptBatch: type[CorruptBatch] = CorruptBatch


_cache: dict[str, Implementation] = {}


def implementation(name: str) -> Implementation:
    """The ``"cython"`` or ``"python"`` implementation (ImportError when not available)."""
    if name not in _MODULES:
        raise ValueError(f"unknown fast path implementation {name!r}: use 'cython' or 'python'")
    impl = _cache.get(name)
    if impl is None:
        mods: list[ModuleType] = [importlib.import_module(m) for m in _MODULES[name]]
        router, codec, projection = mods
        impl = Implementation(
            name=name,
            RouteTable=router.RouteTable,
            encode_batch=codec.encode_batch,
            decode_batch=codec.decode_batch,
            iter_batch=codec.iter_batch,
            batch_count=codec.batch_count,
            Plan=projection.Plan,
            compile_plan=projection.compile_plan,
            project=projection.project,
            project_many=projection.project_many,
        )
        _cache[name] = impl
    return impl


def _select() -> Implementation:
    if not NO_EXTENSIONS:
        try:
            return implementation("cython")
        except ImportError:
            pass
    return implementation("python")


_impl = _select()

IMPLEMENTATION: str = _impl.name
RouteTable = _impl.RouteTable
encode_batch = _impl.encode_batch
decode_batch = _impl.decode_batch
iter_batch = _impl.iter_batch
batch_count = _impl.batch_count
Plan = _impl.Plan
compile_plan = _impl.compile_plan
project = _impl.project
project_many = _impl.project_many
