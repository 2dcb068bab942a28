"""Published bundles are signed by an operator key: a node installs only bundles signed by
one of its ``operator_keys``; unsigned, forged, untrusted and replayed bundles are refused
with a logged reason (no secret in it) and the node keeps its state. A node without any
operator key follows no bundle."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from clusterkit import (
    OWNER,
    ROOT,
    GatewayNode,
    catalog_text,
    client,
    eventually,
    operator_key,
    rec,
    write_files,
)
from support import NatsServer

from gateway.client import ExchangeClient, ExchangeError
from gateway.keyring import load_keyring
from gateway.operatorkey import load_private
from gateway.publish import (
    BUNDLE_KEY,
    SIGNED_MAGIC,
    Bundle,
    SignedBundle,
    bucket_name,
    encode_bundle,
    sign_bundle,
)

pytestmark = pytest.mark.cluster
PREFIX = "signed"


@pytest.fixture(scope="module")
def nodes(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[GatewayNode, GatewayNode, Path, Path]]:
    """(a node trusting the operator key, a node trusting none, catalog, keyring)."""
    folder = tmp_path_factory.mktemp("signed")
    cat, ring = write_files(folder)
    _key, public = operator_key(folder)
    trusting = GatewayNode(folder / "t", cat, ring, servers=[nats_server.url], prefix=PREFIX,
                           operator_keys=[public])
    bare = GatewayNode(folder / "n", cat, ring, servers=[nats_server.url], prefix=PREFIX)
    try:
        trusting.start(wait_for="/readyz")
        bare.start(wait_for="/readyz")
        yield trusting, bare, cat, ring
    finally:
        trusting.stop()
        bare.stop()


def _publish(nats_url: str, catalog: Path, key: Path, *extra: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "catalog", "publish", str(catalog),
                           "--servers", nats_url, "--prefix", PREFIX, "--operator-key", str(key), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "signed by ed25519:" in done.stdout


async def _put(nats_url: str, value: bytes) -> None:
    """Write the bucket directly, as anyone with write access to it could."""
    import nats
    import nats.js.errors

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        try:
            kv = await js.key_value(bucket_name(PREFIX))
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(bucket=bucket_name(PREFIX), history=5)
        await kv.put(BUNDLE_KEY, value)
    finally:
        await nc.close()


async def _visible(c: ExchangeClient, rid: str) -> bool:
    try:
        return (await c.catalog_entry(rid))["id"] == rid
    except ExchangeError:
        return False


def _logged(node: GatewayNode, text: str) -> bool:
    return text in node.log_tail(100_000)


async def test_only_bundles_signed_by_a_trusted_key_are_installed(nodes, nats_server, tmp_path) -> None:
    trusting, bare, cat, ring = nodes
    key_file = cat.parent / "operator.key"
    key = load_private(key_file)
    stranger_file, _ = operator_key(tmp_path)
    stranger = load_private(stranger_file)
    url = nats_server.url

    def catalog(rid: str) -> Path:
        path = tmp_path / f"{rid}.toml"
        path.write_text(catalog_text(extra=[rid]))
        return path

    async with client(trusting.url, ring) as ct, client(bare.url, ring) as cb:
        _publish(url, catalog("test.signed-1"), key_file, "--keyring", str(ring))
        await eventually(lambda: _visible(ct, "test.signed-1"))
        assert _logged(trusting, '"signed_by":"ed25519:')
        # the node without operator keys follows nothing
        await eventually(lambda: _check(_logged(bare, "no operator key is trusted")))
        assert _logged(bare, '"event":"operator_keys_missing"')
        assert not await _visible(cb, "test.signed-1")
        first_value = await _current(url)

        # unsigned, by a stranger, altered after signing: each refused with its reason
        unsigned = encode_bundle(Bundle(catalog_text(extra=["test.unsigned"]), source="x", published_ms=2**50))
        await _put(url, unsigned)
        await eventually(lambda: _check(_logged(trusting, "unsigned bundle refused")))
        await _put(url, sign_bundle(Bundle(catalog_text(extra=["test.stranger"]), published_ms=2**50),
                                    stranger))
        await eventually(lambda: _check(_logged(trusting, "which is not one of this node's operator_keys")))
        good = msgspec.msgpack.decode(sign_bundle(Bundle(catalog_text(extra=["test.good"])), key)
                                      [len(SIGNED_MAGIC):], type=SignedBundle)
        forged = SignedBundle(encode_bundle(Bundle(catalog_text(extra=["test.forged"]))), good.signer,
                              good.signature)
        await _put(url, SIGNED_MAGIC + msgspec.msgpack.encode(forged))
        await eventually(lambda: _check(_logged(trusting, "bad signature")))
        for rid in ("test.unsigned", "test.stranger", "test.forged"):
            assert not await _visible(ct, rid)
        assert await _visible(ct, "test.signed-1")  # the running state stays

        # a newer signed bundle is installed; replaying the older one afterwards is refused
        _publish(url, catalog("test.signed-2"), key_file)
        await eventually(lambda: _visible(ct, "test.signed-2"))
        await _put(url, first_value)
        await eventually(lambda: _check(_logged(trusting, "a replayed bundle?")))
        assert await _visible(ct, "test.signed-2") and not await _visible(ct, "test.signed-1")
        assert (await ct.push("test.r5", [rec("still-serving")]))["count"] == 1

    ring_doc = load_keyring(ring)
    secrets = [k.secret for k in ring_doc.by_id.values()] + [ring_doc.citizen_key.hex()]
    for node in (trusting, bare):
        log = node.log_tail(100_000)
        assert '"event":"catalog_refused"' in log
        assert not any(s in log for s in secrets)


async def test_untrusted_keyring_cannot_add_a_key(nodes, nats_server, tmp_path) -> None:
    """Whoever can write the bucket cannot install a key: an unsigned keyring is refused."""
    trusting, _bare, cat, ring = nodes
    intruder = "k-intruder"
    secret = "ef" * 32
    text = ring.read_text() + f'\n[[keys]]\nid = "{intruder}"\nclient = "{OWNER}"\nsecret = "{secret}"\n'
    bundle = Bundle(cat.read_text(), keyring=text, source="intruder", published_ms=2**50)
    before = trusting.log_tail(100_000).count("unsigned bundle refused")
    await _put(nats_server.url, encode_bundle(bundle))
    await eventually(lambda: _check(trusting.log_tail(100_000).count("unsigned bundle refused") > before))
    async with ExchangeClient(trusting.url, intruder, secret, OWNER, retries=0) as c:
        with pytest.raises(ExchangeError) as info:
            await c.push("test.r6", [rec("x")])
        assert info.value.status == 401
    assert secret not in trusting.log_tail(100_000)


async def _check(value: bool) -> bool:
    return value


async def _current(nats_url: str) -> bytes:
    import nats

    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(bucket_name(PREFIX))
        return (await kv.get(BUNDLE_KEY)).value
    finally:
        await nc.close()
