"""SIGHUP reloads the TLS certificate: new connections get the renewed one, requests keep
being answered, and a broken certificate file is refused (the old one stays)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from gwkit import NodeProcess, client_ssl, issue_cert, make_ca, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _served_cert(port: int, ca: Path) -> bytes:
    ctx = client_ssl(ca)
    with socket.create_connection(("127.0.0.1", port), 5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return tls.getpeercert(binary_form=True) or b""


async def test_sighup_reloads_the_certificate(make_node: Callable[..., NodeProcess], tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    first = issue_cert(ca, "first", cn="127.0.0.1", san="IP:127.0.0.1")
    second = issue_cert(ca, "second", cn="127.0.0.1", san="IP:127.0.0.1")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "node.crt", live / "node.key"
    shutil.copy(first[0], cert)
    shutil.copy(first[1], key)
    node = make_node(node={"tls_cert": str(cert), "tls_key": str(key)}, probe_ssl=client_ssl(ca[0]))
    port = int(node.url.rsplit(":", 1)[1].rstrip("/"))
    before = await asyncio.to_thread(_served_cert, port, ca[0])
    assert before == ssl.PEM_cert_to_DER_cert(first[0].read_text())
    shutil.copy(second[0], cert)
    shutil.copy(second[1], key)
    node.signal(signal.SIGHUP)
    await wait_until(lambda: node.log_text().count('"event":"reloaded"') >= 1)
    after = await asyncio.to_thread(_served_cert, port, ca[0])
    assert after == ssl.PEM_cert_to_DER_cert(second[0].read_text())
    # A broken file is refused; the node keeps serving the certificate it has.
    cert.write_text("not a certificate")
    node.signal(signal.SIGHUP)
    await wait_until(lambda: '"event":"reload_refused"' in node.log_text())
    assert '"level":"warning","event":"reload_refused"' in node.log_text()
    assert await asyncio.to_thread(_served_cert, port, ca[0]) == after
