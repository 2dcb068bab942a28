"""TLS and mutual TLS: certificates made with the openssl CLI; the client certificate must
name the subsystem in X-Exchange-Client."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from gwkit import (
    GRANTED,
    ID_CARD,
    OWNER,
    NodeProcess,
    Raw,
    assert_problem,
    client_ssl,
    id_card,
    issue_cert,
    make_ca,
)

from gateway.client import ExchangeClient
from gateway.keyring import Keyring

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

Pair = tuple[Path, Path]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "ca")
    other_ca = make_ca(folder / "other", "other-ca")
    return {
        "ca": ca,
        "server": issue_cert(ca, "server", cn="127.0.0.1", san="IP:127.0.0.1,DNS:localhost"),
        "owner": issue_cert(ca, "owner", cn="hukou system", san=f"URI:urn:exchange:{OWNER}"),
        "granted_cn": issue_cert(ca, "granted", cn=GRANTED, san=""),
        "stranger": issue_cert(other_ca, "stranger", cn=OWNER, san=f"URI:urn:exchange:{OWNER}"),
    }


@pytest.fixture(scope="module")
def tls_node(make_node: Callable[..., NodeProcess], pki: dict[str, Pair]) -> NodeProcess:
    return make_node(
        node={"tls_cert": str(pki["server"][0]), "tls_key": str(pki["server"][1])},
        probe_ssl=client_ssl(pki["ca"][0]),
    )


@pytest.fixture(scope="module")
def mtls_node(make_node: Callable[..., NodeProcess], pki: dict[str, Pair]) -> NodeProcess:
    return make_node(
        node={
            "tls_cert": str(pki["server"][0]),
            "tls_key": str(pki["server"][1]),
            "client_ca": str(pki["ca"][0]),
        },
        probe_ssl=client_ssl(pki["ca"][0], pki["owner"]),
    )


@pytest.fixture
async def sessions() -> AsyncIterator[Callable[[ssl.SSLContext | None], aiohttp.ClientSession]]:
    made: list[aiohttp.ClientSession] = []

    def make(ctx: ssl.SSLContext | None) -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx if ctx is not None else False)
        )
        made.append(s)
        return s

    yield make
    for s in made:
        await s.close()


def _sdk(
    node: NodeProcess, keyring: Keyring, sub: str, session: aiohttp.ClientSession
) -> ExchangeClient:
    key = keyring.for_client(sub)
    assert key is not None
    return ExchangeClient(node.url, key.id, key.secret, sub, session=session, retries=0)


async def test_tls_serves_the_exchange(
    tls_node: NodeProcess, pki: dict[str, Pair], keyring: Keyring, sessions
) -> None:
    assert tls_node.url.startswith("https://")
    session = sessions(client_ssl(pki["ca"][0]))
    owner, consumer = (
        _sdk(tls_node, keyring, OWNER, session),
        _sdk(tls_node, keyring, GRANTED, session),
    )
    rec = id_card()
    res = await owner.push(ID_CARD, [rec])
    page = await consumer.pull(ID_CARD, after=res["first"] - 1)
    assert page.records[0]["data"] == {"id_number": rec["key"], "name": rec["data"]["name"]}

    async with aiohttp.ClientSession() as plain:  # plain HTTP to the TLS port is no exchange
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"http://127.0.0.1:{tls_node.port}/healthz") as resp:
                await resp.read()


async def test_mtls_accepts_the_certificate_of_the_caller(
    mtls_node: NodeProcess, pki: dict[str, Pair], keyring: Keyring, sessions
) -> None:
    owner = _sdk(mtls_node, keyring, OWNER, sessions(client_ssl(pki["ca"][0], pki["owner"])))
    res = await owner.push(ID_CARD, [id_card()])
    assert res["count"] == 1
    granted = _sdk(
        mtls_node, keyring, GRANTED, sessions(client_ssl(pki["ca"][0], pki["granted_cn"]))
    )
    page = await granted.pull(ID_CARD, after=res["first"] - 1)
    assert len(page.records) == 1  # a certificate naming the subsystem in its CN works too


async def test_mtls_refuses_a_certificate_naming_another_subsystem(
    mtls_node: NodeProcess, pki: dict[str, Pair], keyring: Keyring, sessions
) -> None:
    raw = Raw(sessions(client_ssl(pki["ca"][0], pki["owner"])), mtls_node.url, keyring)
    before = await raw.snapshot(ID_CARD)
    # GRANTED signs correctly with its own key, but presents OWNER's certificate.
    r = await raw.request("GET", f"/v1/resources/{ID_CARD}/records", client=GRANTED)
    doc = assert_problem(r, 401, "client.unauthenticated")
    assert "certificate" in doc["detail"]
    raw_granted = Raw(sessions(client_ssl(pki["ca"][0], pki["granted_cn"])), mtls_node.url, keyring)
    r = await raw_granted.push(ID_CARD, [id_card()], client=OWNER)  # OWNER's key, GRANTED's cert
    assert_problem(r, 401, "client.unauthenticated")
    assert await raw.snapshot(ID_CARD) == before


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
async def test_mtls_refuses_the_handshake_without_a_trusted_certificate(
    mtls_node: NodeProcess, pki: dict[str, Pair], sessions, who: str
) -> None:
    ctx = client_ssl(pki["ca"][0], None if who == "no certificate" else pki["stranger"])
    session = sessions(ctx)
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        async with session.get(mtls_node.url + "/healthz") as resp:
            await resp.read()
