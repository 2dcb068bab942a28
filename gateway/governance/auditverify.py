"""``audit verify``: the hash chain, the signed checkpoints and the citizen index, in one pass.

- **Chain**: every entry links to the previous one (:class:`gateway.audit.ChainWalk`).
- **Checkpoints** (:mod:`gateway.governance.checkpoints`): each one signed by a trusted
  key must name an entry of the chain with exactly that hash. A log that ends before a
  checkpointed ``seq`` was cut off; an entry whose hash differs from a checkpointed head
  was rewritten (re-sealing changes every later hash, so the first checkpoint after the
  rewrite catches it). A checkpoint whose signature does not verify is reported; one by a
  key that is not trusted is only noted. A log with entries and no valid trusted checkpoint
  is not verified (its end cannot be vouched for).
- **Citizen index**: every index row points at an entry of the chain that names the
  citizen and holds an identical copy of it; every citizen an entry names is indexed.

Trusted keys come from the node key files (``node-signing.key``: the private key, of which
only the public half is used), PEM public keys, or the JSON of ``GET /v1/node-keys``.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit import AuditEntry, ChainWalk
from gateway.governance.checkpoints import Checkpoint, signature_ok
from gateway.governance.webhooks import key_id

_dec_entry = msgspec.json.Decoder(AuditEntry)
_dec_cp = msgspec.json.Decoder(Checkpoint)
MAX_REPORTED = 20  # findings of one kind printed in full; the rest are counted


def _raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_keys(path: str | Path) -> dict[str, Ed25519PublicKey]:
    """Ed25519 public keys by key id from a PEM private key (a node's ``node-signing.key``),
    a PEM public key, or ``GET /v1/node-keys`` JSON; ValueError names a bad file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"key file {p}: {exc.strerror or exc}") from None
    keys: list[Ed25519PublicKey] = []
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            if b"PRIVATE KEY" in raw:
                priv = serialization.load_pem_private_key(raw, password=None)
                if not isinstance(priv, Ed25519PrivateKey):
                    raise ValueError(f"holds a {type(priv).__name__.lstrip('_')}, not an Ed25519 key")
                keys.append(priv.public_key())
            else:
                pub = serialization.load_pem_public_key(raw)
                if not isinstance(pub, Ed25519PublicKey):
                    raise ValueError(f"holds a {type(pub).__name__.lstrip('_')}, not an Ed25519 key")
                keys.append(pub)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"key file {p}: not a usable PEM Ed25519 key ({exc})") from None
        return {key_id(_raw_public(k)): k for k in keys}
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise ValueError(f"key file {p}: neither PEM nor JSON") from None
    items = doc.get("keys", [doc]) if isinstance(doc, dict) else doc
    out: dict[str, Ed25519PublicKey] = {}
    for n, item in enumerate(items if isinstance(items, list) else [None]):
        try:
            b64 = item["public_key"]
            pub_raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            pub = Ed25519PublicKey.from_public_bytes(pub_raw)
        except (TypeError, KeyError, ValueError, binascii.Error):
            raise ValueError(f"key file {p}: key {n + 1} needs \"public_key\": 32 bytes, base64url") from None
        kid = key_id(pub_raw)
        if item.get("id", kid) != kid:
            raise ValueError(f"key file {p}: key {n + 1} says id {item['id']!r} but its public key's id is {kid}")
        out[kid] = pub
    if not out:
        raise ValueError(f"key file {p}: no keys in it")
    return out


def iter_checkpoint_file(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw JSON) of every non-empty line of a checkpoint file."""
    with Path(path).open("rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield f"{path} line {n}", line.rstrip(b"\n")


@dataclass
class IndexRow:
    """One citizen-index row: the citizen's keyed hash, the seq it claims, the stored copy."""

    where: str
    citizen: str
    seq: int
    raw: bytes


@dataclass
class Report:
    """What ``audit verify`` found: ``ok`` lines, ``notes`` and ``problems`` (exit 1)."""

    entries: int = 0
    chain_problem: str | None = None
    ok: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _kinds: Counter = field(default_factory=Counter)

    def problem(self, kind: str, text: str) -> None:
        self._kinds[kind] += 1
        if self._kinds[kind] <= MAX_REPORTED:
            self.problems.append(text)

    @property
    def intact(self) -> bool:
        return self.chain_problem is None and not self._kinds

    def write(self, out: TextIO) -> int:
        """Print the verdict; return the exit status (0 verified, 1 not)."""
        if self.chain_problem:
            out.write(f"BROKEN after {self.entries} good entries: {self.chain_problem}\n")
        else:
            out.write(f"ok: {self.entries} entries, chain intact\n")
        for line in self.ok:
            out.write(f"ok: {line}\n")
        for line in self.notes:
            out.write(f"note: {line}\n")
        for line in self.problems:
            out.write(f"BROKEN: {line}\n")
        for kind, n in self._kinds.items():
            if n > MAX_REPORTED:
                out.write(f"BROKEN: ... and {n - MAX_REPORTED} more {kind} findings\n")
        if self.intact:
            return 0
        total = sum(self._kinds.values()) + (1 if self.chain_problem else 0)
        out.write(f"NOT VERIFIED: {total} problem{'s' if total != 1 else ''} (see above)\n")
        return 1


def _short(h: str) -> str:
    return h[:12] + "…"


def _describe(where: str, cp: Checkpoint) -> str:
    return f"by node {cp.node} (key {cp.key_id}) at {cp.time}, {where}"


class _Checkpoints:
    """The checkpoints signed by trusted keys, by seq; the rest reported or noted."""

    def __init__(self, rows: Iterable[tuple[str, bytes]], keys: dict[str, Ed25519PublicKey],
                 report: Report) -> None:
        self.by_seq: dict[int, list[tuple[str, Checkpoint]]] = {}
        self.untrusted: Counter[str] = Counter()
        self.valid = 0
        self.key_ids: set[str] = set()
        seen: set[tuple] = set()
        for where, raw in rows:
            try:
                cp = _dec_cp.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                report.problem("checkpoint", f"{where}: not a checkpoint ({exc})")
                continue
            ident = msgspec.structs.astuple(cp)
            if ident in seen:  # the same checkpoint from the file and the stream
                continue
            seen.add(ident)
            pub = keys.get(cp.key_id)
            if pub is None:
                self.untrusted[cp.key_id] += 1
                continue
            if not signature_ok(cp, pub):
                report.problem("checkpoint", f"checkpoint of entry {cp.seq} {_describe(where, cp)}: "
                                             "the signature does not verify (forged or altered checkpoint)")
                continue
            self.valid += 1
            self.key_ids.add(cp.key_id)
            self.by_seq.setdefault(cp.seq, []).append((where, cp))


def check(rows: Iterable[tuple[str, bytes]], checkpoints: Iterable[tuple[str, bytes]],
          keys: dict[str, Ed25519PublicKey], index: Iterable[IndexRow] | None = None, *,
          require_checkpoint: bool = True) -> Report:
    """Verify the chain ``rows`` (from the genesis, in order) against the ``checkpoints``
    signed by ``keys``, and the citizen ``index`` (rows sorted by seq) when given.

    Read the checkpoints before the chain: a checkpoint is written after its entries."""
    report = Report()
    cps = _Checkpoints(checkpoints, keys, report)
    walk = ChainWalk()
    idx = iter(index) if index is not None else None
    pending = next(idx, None) if idx is not None else None
    rows_checked = named = 0
    matched: tuple[int, str, Checkpoint] | None = None  # the highest checkpoint that matches
    first_mismatch: tuple[int, str] | None = None
    for _where, e in walk.entries(rows):
        for where, cp in cps.by_seq.get(e.seq, ()):
            if cp.head == e.hash:
                matched = (e.seq, where, cp)
            else:
                low = matched[0] + 1 if matched else 1
                text = (f"entry {e.seq} is not the entry checkpointed {_describe(where, cp)} (hash "
                        f"{_short(e.hash)}, checkpointed {_short(cp.head)}): entries {low}..{e.seq} "
                        "were rewritten or replaced")
                report.problem("rewrite", text)
                if first_mismatch is None:
                    first_mismatch = (e.seq, text)
        if idx is None:
            continue
        while pending is not None and pending.seq < e.seq:
            report.problem("index", f"citizen index row {pending.where} (citizen {_short(pending.citizen)}) "
                                    f"points at entry {pending.seq}, which is not in the log")
            pending = next(idx, None)
        here: list[IndexRow] = []
        while pending is not None and pending.seq == e.seq:
            here.append(pending)
            pending = next(idx, None)
        if here or e.citizens:
            rows_checked += len(here)
            named += len(set(e.citizens))
            _check_index(e, here, report)
    report.entries, report.chain_problem = walk.count, walk.problem
    last = walk.last
    beyond = sorted(s for s in cps.by_seq if s > last)
    if walk.problem is None and beyond:
        top = beyond[-1]
        where, cp = cps.by_seq[top][0]
        report.problem("truncation", f"the log ends at entry {last}, but entry {top} was checkpointed "
                                     f"{_describe(where, cp)}: entries {last + 1}..{top} (at least) were "
                                     "cut off")
    elif beyond:
        report.notes.append(f"{len(beyond)} checkpointed entries lie beyond the broken link: not checked")
    if idx is not None:
        if walk.problem is None:
            while pending is not None:
                report.problem("index", f"citizen index row {pending.where} (citizen "
                                        f"{_short(pending.citizen)}) points at entry {pending.seq}, "
                                        f"which is not in the log (it ends at {last})")
                pending = next(idx, None)
        if not report._kinds["index"]:
            report.ok.append(f"citizen index: {rows_checked} rows match the {named} citizens named by "
                             "the entries (each an exact copy of an entry naming its citizen)")
    if cps.untrusted:
        ids = ", ".join(sorted(cps.untrusted))
        report.notes.append(f"{sum(cps.untrusted.values())} checkpoints by keys not trusted here ({ids}) "
                            "were not checked: pass those nodes' keys with --key")
    if matched is not None and not report._kinds["rewrite"]:
        seq, where, cp = matched
        report.ok.append(f"{cps.valid} checkpoints signed by trusted keys ({', '.join(sorted(cps.key_ids))}) "
                         f"match the chain; the latest covers entry {seq} ({_describe(where, cp)})")
        if walk.problem is None and last > seq:
            report.notes.append(f"entries {seq + 1}..{last} are newer than the latest checkpoint (a node "
                                "checkpoints within a second of writing; a node that died since leaves "
                                "its last second unsigned)")
    if require_checkpoint and walk.count and cps.valid == 0:
        report.problem("checkpoint", "no checkpoint signed by a trusted key covers this log, so its end "
                                     "cannot be vouched for: a truncated or rewritten log would pass "
                                     "(give the checkpoint file with --checkpoints and the node keys "
                                     "with --key)")
    return report


def _check_index(e: AuditEntry, here: list[IndexRow], report: Report) -> None:
    named = set(e.citizens)
    seen: set[str] = set()
    for row in here:
        if row.citizen not in named:
            report.problem("index", f"citizen index row {row.where} (citizen {_short(row.citizen)}) points "
                                    f"at entry {e.seq}, which does not name that citizen")
            continue
        try:
            copy = _dec_entry.decode(row.raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            copy = None
        if copy != e:
            report.problem("index", f"citizen index row {row.where} (citizen {_short(row.citizen)}) holds a "
                                    f"copy of entry {e.seq} that differs from the log")
        elif row.citizen in seen:
            report.notes.append(f"citizen index row {row.where} repeats entry {e.seq} for a citizen")
        seen.add(row.citizen)
    for c in sorted(named - seen):
        report.problem("index", f"entry {e.seq} names citizen {_short(c)}, but the citizen index has no "
                                "row for it (the citizen's access log would not show it)")
