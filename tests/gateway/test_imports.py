"""In-repo imports are unconditional: a broken project module is an error, never a silent
fallback (cluster governance once dropped to per-node SQLite on any ImportError)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from gateway.config import NodeConfig, NodeSection, StoreSection
from gateway.governance import open_governance

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("gateway", "fastpath", "simulator", "loadtest", "bench", "devkit", "harness")
# Guarded imports of project modules that stay, each with its reason:
ALLOWED = {
    # `catalog synth` runs the catalog synthesiser, a development tool beside the product (a
    # source checkout); without it the command says so and exits 2.
    ("gateway/__main__.py", "devkit.synth"),
}


def test_a_broken_governance_module_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = NodeConfig(NodeSection(catalog="c.toml", keyring="k.toml", data_dir=str(tmp_path)),
                        store=StoreSection(backend="jetstream"), source=str(tmp_path / "node.toml"))
    assert type(open_governance(config)).__name__ == "JetStreamGovernance"
    monkeypatch.setitem(sys.modules, "gateway.governance.jetstream", None)  # import fails
    with pytest.raises(ImportError):
        open_governance(config)


def _guarded_project_imports(path: Path) -> list[str]:
    """Modules of the project imported inside ``try: ... except ImportError``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Try):
            continue
        names = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
        if not names & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
            continue
        for stmt in node.body:
            for sub in ast.walk(stmt):
                mods = ([a.name for a in sub.names] if isinstance(sub, ast.Import)
                        else [sub.module or ""] if isinstance(sub, ast.ImportFrom) and not sub.level else [])
                found += [m for m in mods if m.split(".")[0] in PROJECT]
    return found


def test_no_project_import_is_guarded() -> None:
    guarded = {(str(p.relative_to(ROOT)), m)
               for pkg in PROJECT for p in sorted((ROOT / pkg).rglob("*.py"))
               for m in _guarded_project_imports(p)}
    assert guarded <= ALLOWED, sorted(guarded - ALLOWED)
