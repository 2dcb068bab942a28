"""deploy/: every metric the alert rules and the Grafana dashboard name is one a node
exports (a cluster-mode node, scraped), the rules pass ``promtool check rules`` where
promtool is installed (make deps), and the systemd unit and container file name real
commands and paths."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from clusterkit import ROOT, GatewayNode, write_files

from devkit.nats import NatsServer

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "onestop-exchange.json"
METRIC = re.compile(r"\bexchange_[a-z0-9_]+")


def _exported(url: str) -> set[str]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


@pytest.mark.cluster
def test_every_named_metric_is_exported(nats_server: NatsServer, tmp_path: Path) -> None:
    cat, ring = write_files(tmp_path)
    node = GatewayNode(tmp_path / "n", cat, ring, servers=[nats_server.url], prefix="deploytest")
    try:
        node.start(wait_for="/readyz")
        urllib.request.urlopen(node.url + "/readyz", timeout=5).read()
        exported = _exported(node.url)
    finally:
        node.stop()
    named = set(METRIC.findall(RULES.read_text()))
    for expr in _dashboard_exprs():
        named |= set(METRIC.findall(expr))
    assert len(named) >= 10
    missing = sorted(n for n in named if n not in exported)
    assert not missing, f"named in deploy/ but not exported by a node: {missing}"
    alerts = RULES.read_text()
    for what in ("ExchangeStoreUnavailable", "ExchangeAuditSaturation", "ExchangeWebhookLag",
                 "ExchangeHigh5xxRatio", "ExchangeP99OverSLO", "ExchangeNatsDisconnected",
                 "ExchangeDiskFilling"):
        assert f"alert: {what}" in alerts


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make deps)")
def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_dashboard_is_grafana_json() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "onestop-exchange" and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in doc["panels"])


UNIT = DEPLOY / "systemd" / "onestop-exchange.service"
CONTAINERFILE = DEPLOY / "Containerfile"


def test_systemd_unit_runs_real_commands() -> None:
    text = UNIT.read_text()
    commands = re.findall(r"^Exec(?:StartPre|Start)=/opt/onestop/bin/python -m gateway (\S+)", text, re.M)
    assert commands == ["check-config", "serve"]
    for sub in commands:
        out = subprocess.run([str(Path(__import__("sys").executable)), "-m", "gateway", sub, "--help"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text and "UMask=0077" in text
    if shutil.which("systemd-analyze"):
        out = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True,
                             timeout=60)
        other = [ln for ln in (out.stdout + out.stderr).splitlines()
                 if ln.strip() and "/opt/onestop/bin/python is not executable" not in ln]
        assert not other, other


def test_containerfile_builds_from_the_wheel() -> None:
    text = CONTAINERFILE.read_text()
    for src in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"COPY {path}: no such file in the repository"
    final = text.split("\nFROM ")[-1]
    assert "pip install --no-cache-dir /wheels/onestop_exchange-*.whl" in final
    assert "COPY --from=wheel /wheels /wheels" in final and "USER onestop" in final
    assert 'CMD ["serve", "--config", "/etc/onestop/node.toml"]' in final
