"""JetStream snapshot and restore of every stream and bucket of a prefix (cluster backups).

Uses JetStream's documented snapshot API: ``$JS.API.STREAM.SNAPSHOT.<stream>`` streams the
stream's files in chunks to an inbox (each chunk acknowledged, an empty ``204`` message at
the end), ``$JS.API.STREAM.RESTORE.<stream>`` takes them back chunk by chunk and an empty
message completes it. The streams of a prefix ``P`` are ``P_*`` (records, keys, audit) and
``KV_P_*`` (idempotency, cursors, catalog, retention, meta, consents, subscriptions, claims).

Each stream becomes ``<stream>.json`` (its configuration and state at the snapshot) and
``<stream>.snap`` (the opaque snapshot) in a folder; ``gateway backup`` puts them in its
archive under ``jetstream/``. A restore refuses a stream that exists.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

CHUNK = 128 * 1024


class SnapshotError(Exception):
    """A snapshot or restore that JetStream refused or did not finish; says which stream."""


async def _api(nc: NATS, subject: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    answer = json.loads(msg.data or b"{}")
    if answer.get("error"):
        raise SnapshotError(f"{subject}: {answer['error'].get('description', answer['error'])}")
    return answer


async def stream_names(nc: NATS, prefix: str) -> list[str]:
    """Every stream of the prefix (records, keys, audit, and the KV buckets' streams)."""
    names: list[str] = []
    offset = 0
    while True:
        answer = await _api(nc, "$JS.API.STREAM.NAMES", {"offset": offset})
        page = answer.get("streams") or []
        names.extend(page)
        offset += len(page)
        if not page or offset >= answer.get("total", 0):
            break
    return sorted(n for n in names if n.startswith((f"{prefix}_", f"KV_{prefix}_")))


async def snapshot_stream(nc: NATS, stream: str, folder: Path, timeout: float = 60.0) -> int:
    """Write ``stream``'s snapshot into ``folder``; its size in bytes."""
    inbox = nc.new_inbox()
    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    out = open(folder / f"{stream}.snap", "wb")  # noqa: SIM115 - closed below
    size = 0

    async def on_chunk(msg: Any) -> None:
        nonlocal size
        status = (msg.headers or {}).get("Status")
        if not msg.data:
            if not done.done():
                done.set_result(None if status in (None, "204") else
                                f"{status} {(msg.headers or {}).get('Description', '')}")
            return
        out.write(msg.data)
        size += len(msg.data)
        if msg.reply:
            await nc.publish(msg.reply, b"")  # flow control: ask for more

    sub = await nc.subscribe(inbox, cb=on_chunk)
    try:
        meta = await _api(nc, f"$JS.API.STREAM.SNAPSHOT.{stream}",
                          {"deliver_subject": inbox, "chunk_size": CHUNK, "jsck": False})
        failure = await asyncio.wait_for(done, timeout)
        if failure:
            raise SnapshotError(f"snapshot of {stream} failed: {failure}")
    finally:
        await sub.unsubscribe()
        out.close()
    (folder / f"{stream}.json").write_text(json.dumps(
        {"config": meta.get("config"), "state": meta.get("state"), "bytes": size}))
    return size


async def restore_stream(nc: NATS, stream: str, folder: Path, timeout: float = 60.0) -> None:
    """Restore ``stream`` from ``folder`` (it must not exist)."""
    meta = json.loads((folder / f"{stream}.json").read_text())
    answer = await _api(nc, f"$JS.API.STREAM.RESTORE.{stream}",
                        {"config": meta["config"], "state": meta["state"]})
    target = answer.get("deliver_subject")
    if not target:
        raise SnapshotError(f"restore of {stream} was not accepted: {answer}")
    with open(folder / f"{stream}.snap", "rb") as f:
        while chunk := f.read(CHUNK):
            await nc.request(target, chunk, timeout=timeout)
    final = await nc.request(target, b"", timeout=timeout)
    result = json.loads(final.data or b"{}")
    if result.get("error"):
        raise SnapshotError(f"restore of {stream} failed: {result['error'].get('description')}")


async def snapshot_all(servers: list[str], prefix: str, folder: Path) -> dict[str, int]:
    """Snapshot every stream of the prefix into ``folder``; {stream: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    nc = await nats.connect(servers=servers, connect_timeout=5, max_reconnect_attempts=2)
    try:
        names = await stream_names(nc, prefix)
        if not names:
            raise SnapshotError(f"JetStream has no stream of prefix {prefix!r}")
        return {name: await snapshot_stream(nc, name, folder) for name in names}
    finally:
        await nc.close()


async def restore_all(servers: list[str], prefix: str, folder: Path) -> list[str]:
    """Restore every stream snapshot in ``folder``; refuses when any of them exists."""
    streams = sorted(p.stem for p in folder.glob("*.json"))
    nc = await nats.connect(servers=servers, connect_timeout=5, max_reconnect_attempts=2)
    try:
        existing = set(await stream_names(nc, prefix))
        clash = [s for s in streams if s in existing]
        if clash:
            raise SnapshotError(f"JetStream already has {', '.join(clash)}: restore into a "
                                "JetStream without them (or delete them first)")
        for name in streams:
            await restore_stream(nc, name, folder)
        return streams
    finally:
        await nc.close()
