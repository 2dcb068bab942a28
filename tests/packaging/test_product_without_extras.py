"""``pip install onestop-exchange`` (no extras) gives a working node and SDK.

Each check runs in a child interpreter whose imports of the extras' packages (and of the
tools beside the product) fail as if they were not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from support import write_keyring

from harness import free_port, node_config_text, repo_root, server_process

# [sim], [load], [cluster] and [dev] packages, and the tools that are not the product.
NOT_INSTALLED = ("simpy", "numpy", "matplotlib", "scipy", "locust", "gevent", "hdrh", "nats",
                 "dask", "distributed", "tomli_w", "pytest", "hypothesis",
                 "simulator", "loadtest", "bench", "devkit", "harness")

BLOCK = textwrap.dedent(f"""
    import importlib.abc, sys
    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {NOT_INSTALLED!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, NotInstalled())
""")

# Cluster mode's store (its modules gateway/stores/_js_*.py), snapshots and governance need
# nats-py ([cluster]).
NEEDS_CLUSTER = {"gateway.stores.jetstream", "gateway.stores.jssnapshot", "gateway.governance.jetstream",
                 *(f"gateway.stores.{p.stem}" for p in (Path(__file__).resolve().parents[2] / "gateway" / "stores")
                   .glob("_js_*.py"))}


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, cwd=repo_root())


def test_every_module_of_the_node_and_the_sdk_imports() -> None:
    r = _python(f"""
        import importlib, pkgutil, gateway, fastpath
        names = ["gateway", "fastpath"] + [m.name for p in (gateway, fastpath)
                 for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
        for name in names:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if name in {sorted(NEEDS_CLUSTER)!r} and exc.name == "nats":
                    continue
                raise
        print(len(names), "modules")
    """)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[0]) > 50


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _python("import runpy, sys; sys.argv[0] = 'gateway'; "
                   "runpy.run_module('gateway', run_name='__main__')", *args)


def test_jetstream_without_nats_py_is_a_clear_error(tmp_path: Path) -> None:
    write_keyring(tmp_path / "keyring.toml", ["SH/GOV/psb/hukou"])
    conf = tmp_path / "node.toml"
    conf.write_text(node_config_text(
        {"catalog": str(repo_root() / "configs/catalog/shanghai.toml"), "keyring": "keyring.toml"},
        {"backend": "jetstream"}))
    r = _cli("check-config", str(conf))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "store.backend" in r.stderr and "onestop-exchange[cluster]" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("catalog", "publish", "x.toml")
    assert r.returncode == 2 and "onestop-exchange[cluster]" in r.stderr


def test_catalog_synth_says_it_is_a_development_tool(tmp_path: Path) -> None:
    r = _cli("catalog", "synth", "--out", str(tmp_path / "c.toml"))
    assert r.returncode == 2
    assert "development tool" in r.stderr and "Traceback" not in r.stderr


def test_a_node_serves_without_the_extras(tmp_path: Path) -> None:
    from gateway.catalog import load_catalog

    catalog = repo_root() / "configs/catalog/shanghai.toml"
    write_keyring(tmp_path / "keyring.toml", sorted(load_catalog(catalog).subsystems))
    port = free_port()
    conf = tmp_path / "node.toml"
    conf.write_text(node_config_text({"listen": f"127.0.0.1:{port}", "catalog": str(catalog),
                                      "keyring": "keyring.toml", "data_dir": "data"}))
    code = BLOCK + ("import runpy, sys; sys.argv[0] = 'gateway'; "
                    "runpy.run_module('gateway', run_name='__main__')")
    with server_process([sys.executable, "-c", code, "serve", "--config", str(conf)],
                        f"http://127.0.0.1:{port}/readyz", log=tmp_path / "node.log",
                        cwd=repo_root()):
        pass
    assert "Traceback" not in (tmp_path / "node.log").read_text()
