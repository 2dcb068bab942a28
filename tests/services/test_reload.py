"""Hot reload: SIGHUP swaps catalog (services included) and keyring; a bad file is refused."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
from support import NodeProcess
from svckit import (
    BASE_CATALOG,
    CONSUMER,
    PORTAL,
    backend,
    grant_toml,
    service_toml,
    wait_until,
    write_keyring,
)

from gateway.signing import Signer

ROOT = Path(__file__).resolve().parents[2]
A = "SH/GOV/hrss/employment/register"
B = "SH/GOV/sicenter/pension/enrol"


async def test_sighup_reloads_atomically_and_refuses_bad_files(tmp_path: Path) -> None:
    async with backend() as (url, st):
        catalog = tmp_path / "catalog.toml"
        keyring = tmp_path / "keyring.toml"
        catalog.write_text(BASE_CATALOG + service_toml(A, [url]) + grant_toml(PORTAL, A))
        keys = write_keyring(keyring)
        node = NodeProcess(tmp_path / "node", keyring, catalog=catalog, node={"access_log": False})
        await asyncio.to_thread(node.start)
        log, base = node.log_path, node.url
        try:
            async with aiohttp.ClientSession() as s:
                async def call(client: str, path: str, key: tuple[str, str] | None = None) -> int:
                    kid, sec = key or keys[client]
                    hdrs = Signer(kid, sec, client).headers("GET", path)
                    async with s.get(base + path, headers=hdrs) as r:
                        await r.read()
                        return r.status

                async def hup_and_wait(word: str) -> None:
                    count = log.read_text().count(word)
                    node.signal(signal.SIGHUP)

                    async def logged() -> bool:
                        return log.read_text().count(word) > count

                    await wait_until(logged)

                assert await call(PORTAL, f"/v1/services/{A}/x") == 200
                assert await call(PORTAL, f"/v1/services/{B}/x") == 404

                catalog.write_text(BASE_CATALOG + "[[services]\n")  # not TOML
                await hup_and_wait('"reload_refused"')
                assert "invalid TOML" in log.read_text()
                catalog.write_text(BASE_CATALOG + service_toml(A, [url]) + grant_toml(PORTAL, "SH/GOV/x/y/z"))
                await hup_and_wait('"reload_refused"')
                assert await call(PORTAL, f"/v1/services/{A}/x") == 200  # the old catalog is in force

                old_consumer_key = keys[CONSUMER]
                catalog.write_text(BASE_CATALOG + service_toml(A, [url]) + service_toml(B, [url + "/b"])
                                   + grant_toml(PORTAL, B))
                keys = write_keyring(keyring)  # every key rotated
                await hup_and_wait('"reloaded"')
                assert await call(PORTAL, f"/v1/services/{B}/x") == 200
                assert st["calls"][-1] == "/b/x"
                assert await call(PORTAL, f"/v1/services/{A}/x") == 403  # its grant is gone
                assert await call(CONSUMER, "/v1/catalog", old_consumer_key) == 401
                assert await call(CONSUMER, "/v1/catalog") == 200

                keyring.write_text(keyring.read_text() + '\n[[keys]]\nid = "k-x"\nclient = "SH/X/y/z"\n'
                                   f'secret = "{"ab" * 32}"\n')
                await hup_and_wait('"reload_refused"')
                assert await call(CONSUMER, "/v1/catalog") == 200
        finally:
            await asyncio.to_thread(node.stop)
