"""A child process for the kill -9 audit test: a node's audit writer on a SQLite
governance file. For each request id on the command line it awaits
``AuditLog.record`` of a personal read and then prints ``R <request id> <seq>``; after
the last it prints ``DONE`` and sleeps until killed.

    python _audit_child.py GOVERNANCE_DB REQUEST_ID...
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.audit import AuditEntry, AuditLog  # noqa: E402
from gateway.governance.sqlite import SQLiteGovernance  # noqa: E402


async def main(db: str, request_ids: list[str]) -> None:
    gov = SQLiteGovernance(db)
    await gov.open()
    # a long linger: a queued-only (submit) entry would still be in memory when killed
    log = AuditLog(gov, b"k" * 32, linger_s=30.0)
    log.start()
    for rid in request_ids:
        seq = await log.record(AuditEntry(ts=time.time(), request_id=rid, client="SH/GOV/hrss/employment",
                                          op="read", target="psb.id-card", status=200, count=1,
                                          citizens=["c" * 32]))
        print(f"R {rid} {seq}", flush=True)
    print("DONE", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
