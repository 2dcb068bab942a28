"""``python -m gateway catalog publish FILE --servers URL... --operator-key KEY``: put a
checked catalog (and optionally a keyring), signed with an operator key, into the JetStream
KV bucket ``<prefix>_config`` that every node watches (:mod:`gateway.kvwatch`).

The catalog and keyring are checked exactly as a node checks them at start (and together,
so keys naming undeclared subsystems are refused); a bad file never reaches the bucket.
Both travel as one value (key ``bundle``), so that a node swaps catalog, keys and route
table in one step: ``SIGNED_MAGIC`` + msgpack of :class:`SignedBundle`, whose ``bundle`` is
the zlib-compressed msgpack of :class:`Bundle` and whose ``signature`` is the operator's
Ed25519 signature of ``SIGNING_DOMAIN + bundle``. A node verifies it against its trusted
operator keys before it looks at the content (:func:`open_signed`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import zlib
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.catalog import Catalog, catalog_from_obj
from gateway.keyring import Keyring, KeyringFile, load_keyring
from gateway.operatorkey import load_private, public_text, verify
from gateway.redact import redact, redact_url, redact_urls
from gateway.tomlfile import ConfigError, convert, parse_toml, read_text

BUNDLE_KEY = "bundle"
SIGNED_MAGIC = b"EXG-SIGNED-BUNDLE-1\n"
SIGNING_DOMAIN = b"onestop-exchange config bundle v1\n"


class Bundle(msgspec.Struct, forbid_unknown_fields=True):
    """What the config bucket holds under ``bundle``."""

    catalog: str  # TOML text
    keyring: str | None = None  # TOML text, or None: nodes keep their own keyring file
    source: str = ""
    published_ms: int = 0


class SignedBundle(msgspec.Struct, forbid_unknown_fields=True):
    """The bucket value: an encoded :class:`Bundle` and the operator's signature of it."""

    bundle: bytes  # encode_bundle(Bundle)
    signer: str  # the operator's public key, "ed25519:<base64>"
    signature: bytes  # Ed25519 over SIGNING_DOMAIN + bundle


def sign_bundle(bundle: Bundle, key: Ed25519PrivateKey) -> bytes:
    """The bucket value of a bundle signed with an operator key."""
    inner = encode_bundle(bundle)
    signed = SignedBundle(inner, public_text(key.public_key()), key.sign(SIGNING_DOMAIN + inner))
    return SIGNED_MAGIC + msgspec.msgpack.encode(signed)


def open_signed(value: bytes, source: str, trusted: dict[str, Ed25519PublicKey]) -> tuple[bytes, str]:
    """(the encoded bundle, its signer) of a bucket value signed by a trusted operator key;
    ConfigError with the reason (unsigned, unknown signer, bad signature) otherwise."""
    if not value.startswith(SIGNED_MAGIC):
        raise ConfigError(source, "", "unsigned bundle refused (publish it with `catalog publish "
                                      "--operator-key FILE`)")
    try:
        signed = msgspec.msgpack.decode(value[len(SIGNED_MAGIC):], type=SignedBundle)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(source, "", f"not a signed bundle: {exc}") from None
    problem = verify(trusted, signed.signer, signed.signature, SIGNING_DOMAIN + signed.bundle)
    if problem is not None:
        raise ConfigError(source, "", f"refused: {problem}")
    return signed.bundle, signed.signer


def bucket_name(prefix: str) -> str:
    """The KV bucket of catalog and keyring for a store prefix."""
    return f"{prefix}_config"


def encode_bundle(bundle: Bundle) -> bytes:
    """The bucket value of a bundle."""
    return zlib.compress(msgspec.msgpack.encode(bundle), 6)


def decode_bundle(value: bytes, source: str) -> tuple[Catalog, Keyring | None, Bundle]:
    """Decode and check a bucket value; raises ConfigError naming what is wrong."""
    try:
        bundle = msgspec.msgpack.decode(zlib.decompress(value), type=Bundle)
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(source, "", f"not a catalog bundle: {exc}") from None
    catalog = _catalog_text(bundle.catalog, f"{source} (catalog from {bundle.source or '?'})")
    keyring = None
    if bundle.keyring is not None:
        keyring = _keyring_text(bundle.keyring, f"{source} (keyring)")
        keyring.check_clients(set(catalog.subsystems))
    return catalog, keyring, bundle


def _catalog_text(text: str, source: str) -> Catalog:
    return catalog_from_obj(parse_toml(text, source), source)


def _keyring_text(text: str, source: str) -> Keyring:
    ring = convert(parse_toml(text, source), KeyringFile, source)
    return Keyring(ring.keys, source, ring.citizen_key)


def build_bundle(catalog_path: str | Path, keyring_path: str | Path | None) -> Bundle:
    """Read and check the files; raises ConfigError (file, key, reason) when one is bad."""
    catalog_path = Path(catalog_path)
    text = read_text(catalog_path)
    catalog = _catalog_text(text, str(catalog_path))
    keyring_text = None
    if keyring_path is not None:
        ring = load_keyring(keyring_path)
        ring.check_clients(set(catalog.subsystems))
        if ring.citizen_key is None:
            raise ConfigError(keyring_path, "citizen_key", "missing: a published keyring must carry the "
                              "cluster's citizen_key (nodes refuse a keyring without it)")
        keyring_text = Path(keyring_path).read_text(encoding="utf-8")
    return Bundle(text, keyring_text, str(catalog_path), int(time.time() * 1000))


async def publish(
    servers: list[str], bundle: Bundle, operator_key: Ed25519PrivateKey, *, prefix: str = "exg",
    replicas: int = 1, timeout: float = 5.0,
) -> int:
    """Sign the bundle and put it into the config bucket (created when missing); returns
    its revision."""
    import nats
    import nats.js.errors
    from nats.js.api import StorageType

    value = sign_bundle(bundle, operator_key)
    async def quiet(_exc: Exception) -> None:
        return None

    try:
        async with asyncio.timeout(timeout):
            nc = await nats.connect(servers=servers, connect_timeout=timeout, allow_reconnect=False,
                                    max_reconnect_attempts=1, error_cb=quiet)
    except TimeoutError:
        raise ConnectionError(f"no NATS server answered within {timeout} s") from None
    try:
        if len(value) > nc.max_payload:
            raise ConfigError(bundle.source, "", f"the compressed catalog is {len(value)} bytes, over "
                              f"the NATS max_payload of {nc.max_payload}; raise max_payload")
        js = nc.jetstream(timeout=timeout)
        bucket = bucket_name(prefix)
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(bucket=bucket, history=5, replicas=replicas,
                                           storage=StorageType.FILE)
        return await kv.put(BUNDLE_KEY, value)
    finally:
        await nc.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway catalog publish",
        description="Check a catalog (and optionally a keyring) and publish it to the nodes' "
                    "JetStream KV bucket; every node swaps it in without a restart.")
    p.add_argument("file", help="catalog TOML (see configs/catalog/shanghai.toml)")
    p.add_argument("--servers", nargs="+", required=True, metavar="URL",
                   help="NATS server URLs, nats://host:port")
    p.add_argument("--operator-key", metavar="FILE",
                   help="the operator's Ed25519 private key (PEM, mode 0600) that signs the bundle; "
                        "nodes install only bundles signed by a key of their [node] operator_keys "
                        "(`python -m gateway operator-key init --out FILE` makes one)")
    p.add_argument("--keyring", help="also publish this keyring (nodes keep their own file otherwise); "
                                     "it must carry the cluster's citizen_key")
    p.add_argument("--prefix", default="exg", help="the nodes' [store] prefix (default exg)")
    p.add_argument("--replicas", type=int, default=1, choices=[1, 3, 5],
                   help="replicas of the bucket when it is created (default 1)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for NATS")
    return p


def main(argv: list[str]) -> int:
    """CLI entry: 0 published, 2 refused (bad file or flag), 1 NATS unreachable."""
    args = build_parser().parse_args(argv)
    for url in args.servers:
        if not url.startswith(("nats://", "tls://")):
            print(f"error: --servers: not a nats:// URL: {redact_url(url)!r}", file=sys.stderr)
            return 2
    if not args.prefix.replace("_", "").replace("-", "").isalnum() or not args.prefix.isascii():
        print(f"error: --prefix: letters, digits, '-' or '_' only, got {args.prefix!r}", file=sys.stderr)
        return 2
    try:
        bundle = build_bundle(args.file, args.keyring)
        if not args.operator_key:
            print("error: --operator-key FILE is required: nodes install only signed bundles "
                  "(`python -m gateway operator-key init --out FILE` makes a key); nothing published",
                  file=sys.stderr)
            return 2
        key = load_private(args.operator_key)
    except ConfigError as exc:
        print(f"error: refused, nothing published: {exc}", file=sys.stderr)
        return 2
    try:
        revision = asyncio.run(publish(args.servers, bundle, key, prefix=args.prefix,
                                       replicas=args.replicas, timeout=args.timeout))
    except ConfigError as exc:
        print(f"error: refused, nothing published: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - any NATS failure: a clear message, no traceback
        print(f"error: cannot publish to {redact_urls(args.servers)}: "
              f"{type(exc).__name__}: {redact(str(exc))}",
              file=sys.stderr)
        return 1
    what = "catalog and keyring" if bundle.keyring is not None else "catalog"
    print(f"published {what} from {args.file} to {bucket_name(args.prefix)}/{BUNDLE_KEY} "
          f"(revision {revision}, signed by {public_text(key.public_key())})")
    return 0
