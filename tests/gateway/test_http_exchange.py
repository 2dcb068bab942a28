"""Happy paths over real HTTP against a node subprocess: push, pull, cursor, keyed reads,
projection and masks, catalog, msgpack, long-poll, idempotency."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from gwkit import (
    GRANTED,
    HUKOU,
    ID_CARD,
    MASKED,
    OPEN,
    OWNER,
    RESTRICTED,
    RESTRICTED_OWNER,
    UNGRANTED,
    NodeProcess,
    Raw,
    assert_problem,
    id_card,
    inflight,
    record_for,
    wait_until,
)

from gateway.catalog import Catalog
from gateway.client import ExchangeError


@pytest.fixture(scope="module", params=["sqlite", "jetstream"])
def node(request: pytest.FixtureRequest) -> NodeProcess:
    """Every happy path runs on both store backends (the same wire contract)."""
    return request.getfixturevalue("node" if request.param == "sqlite" else "jetstream_node")


PENSION_PURPOSE = "pension eligibility (retirement age)"  # its grant's: a legal-basis read states it
PENSION = (
    "SH/GOV/sicenter/pension"  # psb.id-card: id_number, name, gender, birth_date (legal basis)
)
SELF_SERVICE = "SH/GOV/bdc/self-service"  # psb.id-card: id_number [6, 4], name, valid_until


async def test_push_pull_commit_then_pull_from_cursor(sdk) -> None:
    owner, consumer = sdk(OWNER), sdk(GRANTED)
    batch = [id_card() for _ in range(3)]
    res = await owner.push(ID_CARD, batch)
    assert res["count"] == 3 and res["replayed"] is False
    assert res["first"] < res["last"]

    page = await consumer.pull(ID_CARD, after=res["first"] - 1, limit=10)
    assert [r["key"] for r in page.records] == [r["key"] for r in batch]
    offsets = [r["offset"] for r in page.records]
    assert (
        offsets == sorted(set(offsets))
        and offsets[0] == res["first"]
        and offsets[-1] == res["last"]
    )
    assert page.next == res["last"]
    for got, sent in zip(page.records, batch, strict=True):
        assert got["data"] == {"id_number": sent["data"]["id_number"], "name": sent["data"]["name"]}
        assert got["ts"].endswith("Z")

    assert await consumer.commit(ID_CARD, page.next) == page.next
    empty = await consumer.pull(ID_CARD)  # default after = the committed cursor
    assert empty.records == [] and empty.next == page.next

    more = id_card()
    res2 = await owner.push(ID_CARD, [more])
    page2 = await consumer.pull(ID_CARD)
    assert [r["key"] for r in page2.records] == [more["key"]]
    assert page2.records[0]["offset"] == res2["first"] > res["last"]
    assert page2.next == res2["last"]


async def test_limit_pages_through_records(sdk) -> None:
    owner, consumer = sdk(OWNER), sdk(GRANTED)
    batch = [id_card() for _ in range(5)]
    res = await owner.push(ID_CARD, batch)
    after, keys = res["first"] - 1, []
    for _ in range(3):
        page = await consumer.pull(ID_CARD, after=after, limit=2)
        assert len(page.records) <= 2
        keys += [r["key"] for r in page.records]
        after = page.next
    assert keys == [r["key"] for r in batch]


async def test_keyed_read_returns_latest_projected(sdk) -> None:
    owner = sdk(OWNER)
    first = id_card(name="Old Name")
    second = id_card(first["key"][-6:], id_number=first["key"], name="New Name")
    await owner.push(ID_CARD, [first])
    res = await owner.push(ID_CARD, [second])

    mine = await owner.get(ID_CARD, first["key"])
    assert mine is not None
    assert mine["data"] == second["data"]  # the owner reads every field of the latest record
    assert mine["offset"] == res["first"] and mine["key"] == first["key"]

    # A keyed read of a personal record by a consumer: this grant names a legal basis, so no
    # citizen consent is needed; the answer holds the grant's fields only.
    pension = await sdk(PENSION).get(ID_CARD, first["key"], purpose=PENSION_PURPOSE)
    assert pension["data"] == {
        k: second["data"][k] for k in ("id_number", "name", "gender", "birth_date")
    }
    assert pension["offset"] == res["first"]
    assert await owner.get(ID_CARD, "310101000000000000-none") is None


async def test_masks_applied_for_masked_grants(sdk) -> None:
    rec = id_card(name="Zhang San")
    res = await sdk(OWNER).push(ID_CARD, [rec])
    num = rec["data"]["id_number"]

    page = await sdk(MASKED).pull(ID_CARD, after=res["first"] - 1, limit=1)
    data = page.records[0]["data"]
    assert data == {"id_number": num[:6] + "*" * 8 + num[-4:], "name": "Z" + "*" * 8}

    page = await sdk(SELF_SERVICE).pull(ID_CARD, after=res["first"] - 1, limit=1)
    assert page.records[0]["data"] == {
        "id_number": num[:6] + "*" * 8 + num[-4:],
        "name": "Zhang San",
        "valid_until": "2035-01-01",
    }


async def test_owner_sees_all_fields(sdk) -> None:
    rec = id_card()
    res = await sdk(OWNER).push(ID_CARD, [rec])
    page = await sdk(OWNER).pull(ID_CARD, after=res["first"] - 1, limit=1)
    assert page.records[0]["data"] == rec["data"]


async def test_open_resource_readable_by_anyone(sdk, catalog: Catalog) -> None:
    rec = record_for(catalog, OPEN)
    res = await sdk(UNGRANTED).push(OPEN, [rec])
    for reader in (GRANTED, MASKED, OWNER):
        page = await sdk(reader).pull(OPEN, after=res["first"] - 1, limit=1)
        assert page.records[0]["data"] == rec["data"]
        got = await sdk(reader).get(OPEN, rec["key"])
        assert got["data"] == rec["data"]


async def test_catalog_list_and_entry(sdk, catalog: Catalog) -> None:
    listing = await sdk(GRANTED).catalog()
    by_id = {r["id"]: r for r in listing["resources"]}
    assert listing["instance"] == "SH"
    assert RESTRICTED not in by_id  # restricted resources are shown to their owner only
    assert OPEN in by_id and ID_CARD in by_id
    entry = by_id[ID_CARD]
    assert entry["owner"] == OWNER and entry["sharing"] == "conditional"
    assert entry["schema"] == catalog.by_id[ID_CARD].spec.fields
    assert entry["visible_fields"] == ["id_number", "name"]
    assert by_id[OPEN]["visible_fields"] == list(catalog.by_id[OPEN].spec.fields)
    visible = {e.id for e in catalog.resources if e.spec.sharing != "restricted"}
    assert set(by_id) == visible

    ungranted = await sdk(UNGRANTED).catalog_entry(ID_CARD)
    assert ungranted["visible_fields"] == []
    assert (await sdk(OWNER).catalog_entry(ID_CARD))["visible_fields"] == list(
        catalog.by_id[ID_CARD].spec.fields
    )
    own = await sdk(RESTRICTED_OWNER).catalog()
    assert RESTRICTED in {r["id"] for r in own["resources"]}
    with pytest.raises(ExchangeError) as exc:
        await sdk(GRANTED).catalog_entry(RESTRICTED)
    assert exc.value.status == 403 and exc.value.code == "client.access_denied"
    with pytest.raises(ExchangeError) as exc:
        await sdk(GRANTED).catalog_entry("no.such-resource")
    assert exc.value.status == 404 and exc.value.code == "client.not_found"


async def test_msgpack_request_and_response(raw: Raw) -> None:
    rec = id_card()
    body = msgspec.msgpack.encode({"records": [rec]})
    r = await raw.request(
        "POST",
        f"/v1/resources/{ID_CARD}/records",
        body=body,
        content_type="application/msgpack",
        headers={"Accept": "application/msgpack"},
    )
    assert r.status == 200, r.body
    assert r.headers["Content-Type"].startswith("application/msgpack")
    res = msgspec.msgpack.decode(r.body)
    assert res["count"] == 1 and res["replayed"] is False

    q = f"after={res['first'] - 1}&limit=1"
    for client, expect in (
        (OWNER, rec["data"]),
        (GRANTED, {"id_number": rec["key"], "name": rec["data"]["name"]}),
    ):
        r = await raw.request(
            "GET",
            f"/v1/resources/{ID_CARD}/records",
            query=q,
            client=client,
            headers={"Accept": "application/msgpack"},
        )
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/msgpack")
        doc = msgspec.msgpack.decode(r.body)
        assert doc["next"] == res["first"] and doc["records"][0]["data"] == expect
        assert doc["records"][0]["key"] == rec["key"]

    r = await raw.request(
        "GET",
        f"/v1/resources/{ID_CARD}/records/{rec['key']}",
        client=PENSION,
        headers={"Accept": "application/msgpack", "X-Exchange-Purpose": PENSION_PURPOSE},
    )
    assert msgspec.msgpack.decode(r.body)["data"]["name"] == rec["data"]["name"]

    r = await raw.request(
        "PUT",
        f"/v1/resources/{ID_CARD}/cursor",
        client=GRANTED,
        body=msgspec.msgpack.encode({"offset": res["first"]}),
        content_type="application/msgpack",
        headers={"Accept": "application/msgpack"},
    )
    assert r.status == 200 and msgspec.msgpack.decode(r.body) == {"offset": res["first"]}

    # JSON is the default answer; an error stays problem+json even when msgpack was asked for.
    r = await raw.request("GET", f"/v1/resources/{ID_CARD}/records", query="limit=1")
    assert r.headers["Content-Type"].startswith("application/json")
    r = await raw.request(
        "GET",
        f"/v1/resources/{ID_CARD}/records",
        query="limit=0",
        headers={"Accept": "application/msgpack"},
    )
    assert_problem(r, 400, "client.bad_request")


async def test_long_poll_wakes_on_push(sdk, raw: Raw) -> None:
    owner, consumer = sdk(OWNER), sdk(GRANTED)
    res = await owner.push(ID_CARD, [id_card()])
    poll = asyncio.create_task(consumer.pull(ID_CARD, after=res["last"], wait=20))

    async def polling() -> bool:  # the poll and this /metrics request itself
        return await inflight(raw) >= 2 or poll.done()

    await wait_until(polling)
    assert not poll.done()
    rec = id_card()
    res2 = await owner.push(ID_CARD, [rec])
    page = await asyncio.wait_for(poll, 15)
    assert [r["key"] for r in page.records] == [rec["key"]]
    assert page.next == res2["last"]


async def test_long_poll_times_out_with_next_equal_after(sdk, catalog: Catalog) -> None:
    res = await sdk(OWNER).push(HUKOU, [record_for(catalog, HUKOU)])
    page = await sdk(GRANTED).pull(HUKOU, after=res["last"], wait=1)
    assert page.records == [] and page.next == res["last"]


async def test_idempotent_retry_replays_and_appends_nothing(raw: Raw, catalog: Catalog) -> None:
    recs = [id_card(), id_card()]
    hdr = {"Idempotency-Key": "retry-" + recs[0]["key"]}
    first = await raw.push(ID_CARD, recs, headers=hdr)
    assert first.status == 200 and first.json()["replayed"] is False
    before = await raw.snapshot(ID_CARD)

    again = await raw.push(ID_CARD, recs, headers=hdr)
    assert again.status == 200
    assert again.json() == {**first.json(), "replayed": True}
    assert await raw.snapshot(ID_CARD) == before

    other = await raw.push(ID_CARD, [id_card()], headers=hdr)
    assert_problem(other, 409, "client.conflict")
    assert await raw.snapshot(ID_CARD) == before

    # The key is scoped to (client, resource): the same key on another resource is new.
    hk = await raw.push(HUKOU, [record_for(catalog, HUKOU)], headers=hdr)
    assert hk.status == 200 and hk.json()["replayed"] is False


async def test_sdk_push_retry_with_same_key_is_replayed(sdk) -> None:
    owner = sdk(OWNER)
    recs = [id_card()]
    a = await owner.push(ID_CARD, recs, idempotency_key="sdk-retry-" + recs[0]["key"])
    b = await owner.push(ID_CARD, recs, idempotency_key="sdk-retry-" + recs[0]["key"])
    assert b["replayed"] is True and (a["first"], a["last"]) == (b["first"], b["last"])


async def test_every_response_has_a_request_id(raw: Raw) -> None:
    ids = set()
    for method, path, signed in (
        ("GET", "/healthz", False),
        ("GET", "/v1/catalog", True),
        ("GET", "/v1/catalog", False),
        ("GET", "/nope", False),
        ("DELETE", "/v1/catalog", True),
        ("GET", "/metrics", False),
    ):
        r = await raw.request(method, path, signed=signed)  # Raw.check asserts the header
        ids.add(r.headers["X-Exchange-Request-Id"])
    assert len(ids) == 6


@pytest.mark.parametrize(
    "key",
    ["a/b", "with space", "名字-1", "100%", "x?y#z", "a+b=c&d", "semi;colon", "a%2Fb", "~tilde_"],
)
async def test_keyed_read_of_keys_needing_escapes(sdk, catalog: Catalog, key: str) -> None:
    rec = record_for(catalog, OPEN, listing_id=key)
    assert rec["key"] == key
    await sdk(UNGRANTED).push(OPEN, [rec])
    got = await sdk(GRANTED).get(OPEN, key)
    assert got is not None and got["key"] == key and got["data"] == rec["data"]


async def test_default_after_without_a_cursor_is_zero(sdk, catalog: Catalog) -> None:
    await sdk(UNGRANTED).push(OPEN, [record_for(catalog, OPEN)])
    reader = sdk("SH/GOV/psb/cases")  # has never committed a cursor on this resource
    from_zero = await reader.pull(OPEN, after=0, limit=5)
    default = await reader.pull(OPEN, limit=5)
    assert default.records and default.records == from_zero.records


async def test_concurrent_retries_with_one_key_append_once(raw: Raw) -> None:
    recs = [id_card(), id_card()]
    hdr = {"Idempotency-Key": "concurrent-" + recs[0]["key"]}
    before = await raw.snapshot(ID_CARD)
    replies = await asyncio.gather(*(raw.push(ID_CARD, recs, headers=hdr) for _ in range(12)))
    assert {r.status for r in replies} == {200}, [r.body for r in replies if r.status != 200]
    docs = [r.json() for r in replies]
    assert len({(d["first"], d["last"], d["count"]) for d in docs}) == 1
    assert sum(not d["replayed"] for d in docs) == 1
    after = await raw.snapshot(ID_CARD)
    assert after[: len(before)] == before and len(after) == len(before) + 2


async def test_concurrent_pushes_get_distinct_increasing_offsets(sdk) -> None:
    owners = [sdk(OWNER) for _ in range(4)]
    batches = [[id_card() for _ in range(10)] for _ in range(20)]
    results = await asyncio.gather(*(owners[i % 4].push(ID_CARD, b) for i, b in enumerate(batches)))
    page = await owners[0].pull(ID_CARD, after=min(r["first"] for r in results) - 1, limit=1000)
    offsets = [r["offset"] for r in page.records]
    assert len(page.records) == 200 and offsets == sorted(set(offsets))
    at = {r["key"]: r["offset"] for r in page.records}
    for b, res in zip(batches, results, strict=True):
        mine = [at[r["key"]] for r in b]
        assert mine == sorted(mine) and mine[0] == res["first"] and mine[-1] == res["last"]


async def test_default_limit_is_100(sdk) -> None:
    owner = sdk(OWNER)
    res = await owner.push(ID_CARD, [id_card() for _ in range(150)])
    doc = await owner.request(
        "GET", f"/v1/resources/{ID_CARD}/records", params={"after": res["first"] - 1}
    )
    assert len(doc["records"]) == 100 and doc["next"] == doc["records"][-1]["offset"]


async def test_a_refused_push_does_not_use_up_its_idempotency_key(raw: Raw) -> None:
    rec = id_card()
    hdr = {"Idempotency-Key": "refused-first-" + rec["key"]}
    bad = dict(rec, data={**rec["data"], "name": 5})
    r = await raw.push(ID_CARD, [bad], headers=hdr)
    assert r.status == 422
    r = await raw.push(ID_CARD, [rec], headers=hdr)
    assert r.status == 200 and r.json()["replayed"] is False
    r2 = await raw.push(ID_CARD, [rec], headers=hdr)
    assert r2.status == 200 and r2.json() == {**r.json(), "replayed": True}


async def test_cursor_never_moves_back_without_force(sdk) -> None:
    owner, consumer = sdk(OWNER), sdk(GRANTED)
    res = await owner.push(ID_CARD, [id_card(), id_card()])
    assert await consumer.commit(ID_CARD, res["last"]) == res["last"]
    with pytest.raises(ExchangeError) as exc:
        await consumer.commit(ID_CARD, res["first"])
    assert exc.value.status == 409 and exc.value.code == "client.conflict"
    assert (await consumer.pull(ID_CARD)).next == res["last"]
    assert await consumer.commit(ID_CARD, res["first"], force=True) == res["first"]
    page = await consumer.pull(ID_CARD, limit=10)
    assert [r["offset"] for r in page.records][:1] == [res["last"]]
    assert await consumer.commit(ID_CARD, res["last"]) == res["last"]
