"""Operator keys: the Ed25519 keys that sign the catalog and keyring bundles published to
the cluster's KV bucket (``catalog publish --operator-key FILE``), and the public keys a
node trusts (``[node] operator_keys`` and/or ``operator_keys_file``).

A public key is written ``ed25519:<base64 of its 32 raw bytes>``. The private key is a PEM
file (PKCS#8, unencrypted) readable by its owner only: ``python -m gateway operator-key
init --out FILE`` writes it (0600) and ``FILE.pub`` with the public key.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.config import NodeConfig
from gateway.filemodes import check_private
from gateway.tomlfile import ConfigError

PREFIX = "ed25519:"


def public_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>`` of a public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode()


def parse_public(text: str, source: str | Path, key: str) -> Ed25519PublicKey:
    """A public key from ``ed25519:<base64>``; ConfigError naming ``source`` and ``key``."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise ConfigError(source, key, f"must be \"{PREFIX}<base64 of 32 bytes>\" (see `python -m "
                          f"gateway operator-key init`), got {str(text)[:80]!r}")
    try:
        raw = base64.b64decode(text[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(source, key, f"not a base64 Ed25519 public key of 32 bytes: {text[:80]!r}")
    return Ed25519PublicKey.from_public_bytes(raw)


def trusted_keys(config: NodeConfig) -> dict[str, Ed25519PublicKey]:
    """The operator public keys a node trusts, by their ``ed25519:`` text."""
    out: dict[str, Ed25519PublicKey] = {}
    for i, text in enumerate(config.node.operator_keys):
        out[text] = parse_public(text, config.source, f"node.operator_keys[{i}]")
    if config.node.operator_keys_file:
        path = config.resolve(config.node.operator_keys_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else f"cannot read it ({exc})"
            raise ConfigError(config.source, "node.operator_keys_file", f"{path}: {reason}") from None
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                out[line] = parse_public(line, path, f"line {n}")
    return out


def generate(out: str | Path, *, force: bool = False) -> str:
    """Write a new private key to ``out`` (0600) and its public key to ``out.pub``; return the
    public key text. An existing ``out`` is kept unless ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; keeping it (use --force to replace it)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(tmp, out)
    public = public_text(key.public_key())
    Path(str(out) + ".pub").write_text(public + "\n")
    return public


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """The operator's private key; ConfigError for a missing, open or wrong file."""
    path = Path(path)
    check_private(path, "an operator key")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found (`python -m gateway operator-key init --out "
                                    f"{path}` makes one)") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(path, "", f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(path, "", f"holds a {type(key).__name__.lstrip('_')}, not an Ed25519 key")
    return key


def verify(trusted: dict[str, Ed25519PublicKey], signer: str, signature: bytes, message: bytes) -> str | None:
    """None when ``signer`` is trusted and ``signature`` is its signature of ``message``,
    else the reason (never a secret)."""
    if not trusted:
        return "no operator key is trusted ([node] operator_keys): this node installs no published bundle"
    key = trusted.get(signer)
    if key is None:
        return f"signed by {signer[:60]!r}, which is not one of this node's operator_keys"
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return f"bad signature (by {signer[:60]!r}): the bundle was altered or not signed by that key"
    return None
