"""The audit archive: old parts of the hash-chained log moved into compressed, verifiable
segments (``python -m gateway audit archive``), so that ``governance.db`` stops growing.

A segment is two files in the archive folder (both mode 0600):

    audit-<first>-<last>.jsonl.gz    the stored entries first..last, one per line, unchanged
    audit-<first>-<last>.json        its manifest: first, last, prev (the hash entry ``first``
                                     links to), head (entry ``last``'s hash), sha256 of the
                                     .gz, the previous segment's manifest sha256, the node key
                                     id and its Ed25519 signature over the rest

Segments follow each other without a gap (segment n+1 starts at last+1 and links to its
head) and chain by the previous manifest's hash; the node's signed checkpoints cover the
entries as before, so ``audit verify --archive DIR`` checks segments, then the live log,
as one chain from the genesis against the checkpoints. ``--prune`` deletes from the live
log only whole blocks inside a segment that was written and read back intact. The citizen
index (each citizen's access log) keeps its rows: a citizen can still see who read their
data, and ``verify`` still checks each row against the archived entry.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit import GENESIS, ChainWalk
from gateway.governance.webhooks import NodeKey, b64url

_enc = msgspec.json.Encoder(order="sorted")


class ArchiveError(Exception):
    """An archive that cannot be written, read or trusted; the message says which file."""


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    first: int
    last: int
    prev: str
    head: str
    entries: int
    sha256: str
    previous: str  # sha256 of the previous segment's manifest ("" for the first)
    ts_first: float
    ts_last: float
    key_id: str = ""
    sig: str = ""

    def signed_bytes(self) -> bytes:
        return _enc.encode(msgspec.structs.replace(self, sig=""))


def _name(first: int, last: int) -> str:
    return f"audit-{first:012d}-{last:012d}"


def segments(folder: str | Path) -> list[tuple[Path, Manifest]]:
    """The archive's segments in order, each (manifest path, manifest); ArchiveError when a
    manifest is unreadable or they do not follow each other."""
    folder = Path(folder)
    out: list[tuple[Path, Manifest]] = []
    for path in sorted(folder.glob("audit-*-*.json")):
        try:
            m = msgspec.json.decode(path.read_bytes(), type=Manifest)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ArchiveError(f"{path}: not a segment manifest ({exc})") from None
        out.append((path, m))
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def segment_rows(folder: str | Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw entry) of every archived entry in order, after checking each segment's
    file hash and the segments' order and chaining (ArchiveError otherwise)."""
    previous, expect_first = "", 1
    for mpath, m in segments(folder):
        data = mpath.with_suffix(".jsonl.gz")
        if m.first != expect_first:
            raise ArchiveError(f"{mpath}: starts at entry {m.first}, expected {expect_first} "
                               "(a segment is missing)")
        if m.previous != previous:
            raise ArchiveError(f"{mpath}: does not chain to the previous segment's manifest")
        if not data.is_file() or _sha(data) != m.sha256:
            raise ArchiveError(f"{data}: missing or altered (SHA-256 differs from its manifest)")
        with gzip.open(data, "rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield f"{data.name} line {n}", line.rstrip(b"\n")
        previous, expect_first = _sha(mpath), m.last + 1


def archived_through(folder: str | Path) -> tuple[int, str, str]:
    """(last archived seq, its hash, sha256 of the last manifest); (0, GENESIS, "") when empty."""
    segs = segments(folder)
    if not segs:
        return 0, GENESIS, ""
    path, m = segs[-1]
    return m.last, m.head, _sha(path)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def archive(db_path: Path, folder: Path, before: float, key: NodeKey, *, prune: bool = False,
            max_entries: int = 1_000_000) -> dict[str, Any]:
    """Write the blocks of the live log that end before ``before`` and follow the archive into
    one new segment; with ``prune`` delete them from the live log once the segment reads back
    intact. Answers what was done."""
    from gateway.governance.sqlite import connect

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    last, head, previous = archived_through(folder)
    db = connect(db_path)
    try:
        blocks = db.execute(
            "SELECT first_seq, last_seq, ts_first, ts_last, entries FROM audit_log"
            " WHERE last_seq > ? AND ts_last < ? ORDER BY first_seq", (last, before)).fetchall()
        chosen: list[tuple[int, int, float, float, bytes]] = []
        for block in blocks:
            expect = (chosen[-1][1] if chosen else last) + 1
            if block[0] > expect:
                if not chosen and last:
                    raise ArchiveError(f"the live log resumes at entry {block[0]}, but the archive "
                                       f"ends at {last}: entries {last + 1}..{block[0] - 1} are in "
                                       "neither (another archive folder?)")
                break
            if block[0] < expect:  # partly archived before (cannot happen: blocks are whole)
                raise ArchiveError(f"block {block[0]}..{block[1]} overlaps the archive (ends at {last})")
            chosen.append(block)
            if sum(b[1] - b[0] + 1 for b in chosen) >= max_entries:
                break
        result: dict[str, Any] = {"archived": 0, "pruned": 0, "segment": None}
        if chosen:
            lines = b"\n".join(b[4] for b in chosen) + b"\n"
            walk = ChainWalk(head, last)
            entries = list(walk.entries((f"block {b[0]}", line) for b in chosen
                                        for line in b[4].split(b"\n")))
            if walk.problem is not None:
                raise ArchiveError(f"the live log is broken, nothing archived: {walk.problem}")
            first, end = chosen[0][0], chosen[-1][1]
            name = _name(first, end)
            data_path = folder / f"{name}.jsonl.gz"
            _write_private(data_path, gzip.compress(lines, compresslevel=6, mtime=0))
            manifest = Manifest(first=first, last=end, prev=head, head=entries[-1][1].hash,
                                entries=len(entries), sha256=_sha(data_path), previous=previous,
                                ts_first=chosen[0][2], ts_last=chosen[-1][3], key_id=key.id)
            manifest.sig = b64url(key.sign(manifest.signed_bytes()))
            mpath = folder / f"{name}.json"
            _write_private(mpath, _enc.encode(manifest))
            # Read back what is on disk before anything is deleted.
            back = ChainWalk(head, last)
            with gzip.open(data_path, "rb") as f:
                got = sum(1 for _ in back.entries((data_path.name, ln.rstrip(b"\n")) for ln in f if ln.strip()))
            if back.problem is not None or got != len(entries) or _sha(data_path) != manifest.sha256:
                raise ArchiveError(f"{data_path} did not read back intact; nothing pruned")
            result.update(archived=len(entries), segment=str(mpath), first=first, last=end)
            if prune:
                db.execute("BEGIN IMMEDIATE")
                cur = db.execute("DELETE FROM audit_log WHERE last_seq <= ? AND first_seq >= ?",
                                 (end, first))
                # The chain goes on from the archived head even when the live log is now empty.
                db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('audit_pruned_head', ?)",
                           (f"{end} {manifest.head}",))
                db.execute("COMMIT")
                result["pruned"] = cur.rowcount
        return result
    finally:
        db.close()


def check_signatures(folder: str | Path, keys: dict[str, Any]) -> list[str]:
    """Problems with the segments' signatures (unknown keys are noted, not problems)."""
    from cryptography.exceptions import InvalidSignature

    problems = []
    for path, m in segments(folder):
        pub = keys.get(m.key_id)
        if pub is None:
            continue
        try:
            import base64

            pub.verify(base64.urlsafe_b64decode(m.sig + "=" * (-len(m.sig) % 4)), m.signed_bytes())
        except (InvalidSignature, ValueError):
            problems.append(f"{path}: the manifest's signature does not verify (altered manifest)")
    return problems


def live_start(db: sqlite3.Connection) -> int:
    """The first seq the live log holds or will hold (1 when nothing was pruned)."""
    row = db.execute("SELECT min(first_seq) FROM audit_log").fetchone()
    if row[0]:
        return row[0]
    pruned = db.execute("SELECT value FROM meta WHERE name = 'audit_pruned_head'").fetchone()
    return int(pruned[0].split()[0]) + 1 if pruned else 1
