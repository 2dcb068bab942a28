"""The cross-process wake-up channel on its own: delivery, full queues, dead peers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.stores import _notify

pytestmark = pytest.mark.skipif(not _notify.supported(), reason="needs Linux abstract sockets")


async def test_names_reach_every_other_process(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    loop = asyncio.get_running_loop()
    got: dict[str, list[set[str] | None]] = {"a": [], "b": [], "c": []}
    ends = {name: _notify.Notifier(db) for name in got}
    for name, end in ends.items():
        end.start(loop, got[name].append)
    try:
        ends["a"].publish(["psb.id-card", "mps.licence"])
        for _ in range(100):
            if got["b"] and got["c"]:
                break
            await asyncio.sleep(0.01)
        assert got["b"] == [{"psb.id-card", "mps.licence"}]
        assert got["c"] == [{"psb.id-card", "mps.licence"}]
        assert got["a"] == []  # never to itself
    finally:
        for end in ends.values():
            end.close()
    assert os.listdir(ends["a"].directory) == []


async def test_too_many_names_wake_everything(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    loop = asyncio.get_running_loop()
    got: list[set[str] | None] = []
    sender, receiver = _notify.Notifier(db), _notify.Notifier(db)
    sender.start(loop, lambda names: None)
    receiver.start(loop, got.append)
    try:
        sender.publish([f"resource-{i:05d}" for i in range(1000)])
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [None]
    finally:
        sender.close()
        receiver.close()


async def test_a_full_queue_delays_but_never_loses_a_wake_up(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    loop = asyncio.get_running_loop()
    got: list[set[str] | None] = []
    sender, receiver = _notify.Notifier(db), _notify.Notifier(db)
    sender.start(loop, lambda names: None)
    receiver.start(loop, got.append)
    try:
        # The loop does not run in between: the receiver's queue fills up.
        for i in range(2000):
            sender.publish([f"r{i}"])
        assert sender.owes
        assert receiver.received == 0
        await asyncio.sleep(0.05)  # the receiver drains its queue
        while sender.retry_owed():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        woken = set().union(*[names for names in got if names is not None])
        assert woken == {f"r{i}" for i in range(2000)} or None in got
    finally:
        sender.close()
        receiver.close()


async def test_markers_of_dead_processes_are_removed(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    loop = asyncio.get_running_loop()
    sender = _notify.Notifier(db)
    sender.start(loop, lambda names: None)
    try:
        Path(sender.directory, "12345-000000000000").touch()
        sender.publish(["r"])
        assert os.listdir(sender.directory) == [sender.name]
        assert sender.dropped_peers == 1
    finally:
        sender.close()
