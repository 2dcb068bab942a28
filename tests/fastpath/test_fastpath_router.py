"""Route table: explicit rules, traversal/encoding rejections, fuzzing and twin agreement."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpath

RIDS = ["psb.id-card", "hrss.employment", "a", "sh-water.meter-7"]
SERVICES = ["SH/GOV/psb/hukou/getPerson", "SH/COM/sh-water/billing/v1.invoice"]
TEMPLATES = [  # the gateway's shapes (fastpath knows none of them itself)
    "/healthz",
    "/v1/catalog",
    "/v1/services",
    "/v1/consents",
    "/v1/resources/{rid}/records",
    "/v1/resources/{rid}/cursor",
    "/v1/resources/{rid}/records/{key}",
    "/v1/catalog/{rid}",
    "/v1/services/{service}/{tail}",
    "/v1/consents/{id}",
    "/v1/citizens/{id}/access-log",
]
(HEALTHZ, CATALOG, SERVICES_LIST, CONSENTS, RECORDS, CURSOR, RECORD, CATALOG_ITEM, SERVICE, CONSENT,
 ACCESS_LOG) = range(len(TEMPLATES))
SVC = "/v1/services/SH/GOV/psb/hukou/getPerson"


@pytest.fixture(scope="module")
def table(impl: fastpath.Implementation):
    return impl.RouteTable(TEMPLATES, RIDS, SERVICES)


def match(table, path: str):
    return table.match(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/healthz", (HEALTHZ, -1, None, None)),
        ("/v1/catalog", (CATALOG, -1, None, None)),
        ("/v1/services", (SERVICES_LIST, -1, None, None)),
        ("/v1/consents", (CONSENTS, -1, None, None)),
        ("/v1/resources/psb.id-card/records", (RECORDS, 0, "psb.id-card", None)),
        ("/v1/resources/hrss.employment/cursor", (CURSOR, 1, "hrss.employment", None)),
        ("/v1/resources/a/records/k1", (RECORD, 2, "a", "k1")),
        ("/v1/catalog/sh-water.meter-7", (CATALOG_ITEM, 3, "sh-water.meter-7", None)),
        (SVC, (SERVICE, 0, "SH/GOV/psb/hukou/getPerson", "")),
        (SVC + "/people/42", (SERVICE, 0, "SH/GOV/psb/hukou/getPerson", "/people/42")),
        (
            "/v1/services/SH/COM/sh-water/billing/v1.invoice/a%20b/c",
            (SERVICE, 1, "SH/COM/sh-water/billing/v1.invoice", "/a%20b/c"),
        ),
    ],
)
def test_routes(table, path: str, expected: tuple) -> None:
    assert match(table, path) == expected


def test_unknown_but_valid_ids_have_index_minus_one(table) -> None:
    assert match(table, "/v1/resources/nobody.x/records") == (
        RECORDS,
        -1,
        "nobody.x",
        None,
    )
    assert match(table, "/v1/catalog/nobody.x") == (CATALOG_ITEM, -1, "nobody.x", None)
    assert match(table, "/v1/services/SH/GOV/x/y/z/t") == (
        SERVICE,
        -1,
        "SH/GOV/x/y/z",
        "/t",
    )


@pytest.mark.parametrize(
    ("raw_key", "key"),
    [
        ("31010119900101123X", "31010119900101123X"),
        ("a%2Fb", "a/b"),
        ("a%2fb", "a/b"),
        ("%E4%B8%AD%E6%96%87", "中文"),
        ("%e4%b8%ad", "中"),
        ("a%20b", "a b"),
        ("a%5Cb", "a\\b"),
        ("...", "..."),
        ("%2e%2e%2e", "..."),
        (".a", ".a"),
        ("a+b", "a+b"),
        ("~user@x:1", "~user@x:1"),
    ],
)
def test_record_keys_are_percent_decoded(table, raw_key: str, key: str) -> None:
    assert match(table, f"/v1/resources/a/records/{raw_key}") == (RECORD, 2, "a", key)


@pytest.mark.parametrize(
    "raw_key",
    [
        "",  # empty key: trailing slash
        ".",
        "..",
        "%2e",
        "%2E%2e",
        ".%2E",
        "%",
        "%2",
        "a%2",
        "%zz",
        "%g0",
        "%ff",  # not UTF-8
        "%C0%AF",  # overlong UTF-8
        "%ED%A0%80",  # UTF-16 surrogate
        "%E4%B8",  # truncated UTF-8
        "%00",
        "a%0Ab",
        "%7F",
        "a/b",  # two segments
    ],
)
def test_bad_record_keys_do_not_match(table, raw_key: str) -> None:
    assert match(table, f"/v1/resources/a/records/{raw_key}") is None


@pytest.mark.parametrize(
    "tail",
    [
        "/..",
        "/.",
        "/a/../b",
        "/a/./b",
        "/%2e%2e",
        "/%2E%2E/etc",
        "/.%2e/x",
        "/%2e./x",
        "/%2e",
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/a\\b",
        "/a//b",
        "/a/",
        "/",
        "/%",
        "/%4",
        "/%4G",
        "/%00",
        "/a%0d%0aSet-Cookie:x",
        "/%ff",
        "/a b",
        "/a\x00b",
        "/a\tb",
        "/中",
    ],
)
def test_service_tail_traversal_and_encoding_are_rejected(table, tail: str) -> None:
    assert match(table, SVC + tail) is None


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "//",
        "healthz",
        "/healthz/",
        "/v1/catalog/",
        "/v1/resources/a/records/",
        "/v1/resources/a/cursor/",
        "/v1/resources/a",
        "/v1/resources/a/",
        "/v1/resources/a/other",
        "/v1/resources/a/cursor/x",
        "/v1/resources/a/records/k/more",
        "/v1//resources/a/records",
        "//v1/resources/a/records",
        "/v1/resources//records",
        "/v1/resources/A/records",  # upper case is not a resource id
        "/v1/resources/-a/records",
        "/v1/resources/.a/records",
        "/v1/resources/../records",
        "/v1/resources/%61/records",  # ids are never percent-decoded
        "/v1/resources/a/records?after=1",  # the query is the caller's to strip
        "/v1/resources/a/records#x",
        "/v1/resources/a/rec%6Frds",
        "/v1/resources/a/./records",
        "/v1/resources/a/../a/records",
        "/v2/resources/a/records",
        "/V1/resources/a/records",
        "/v1/catalog/a/b",
        "/v1/catalog/" + "a" * 129,
        "/v1/services/SH/GOV/psb/hukou",
        "/v1/services/SH/GOV/psb/hukou/",
        "/v1/services/SH/GOV/psb/../getPerson",
        "/v1/services/SH/GOV/./hukou/getPerson",
        "/v1/services/SH/GOV/psb/hukou/%67etPerson",
        "/v1/services/SH/GOV/p b/hukou/getPerson",
        "/v1/services/SH/GOV/psb/hukou/get:Person",
        "/v1/services/SH/GOV/psb/hukou/" + "s" * 129,
        "/v1/resources/a\x00/records",
        "/v1/resources/a/records/k\n",
        "/v1/resources/é/records",
        "/v1/resources/a/records/\ud800",
        "\\v1\\resources\\a\\records",
    ],
)
def test_malformed_paths_do_not_match(table, path: str) -> None:
    assert match(table, path) is None


def test_longest_resource_id_matches(impl: fastpath.Implementation) -> None:
    rid = "a" * 128
    table = impl.RouteTable(TEMPLATES, [rid])
    assert table.match(f"/v1/catalog/{rid}") == (CATALOG_ITEM, 0, rid, None)


def test_max_path_is_enforced(impl: fastpath.Implementation) -> None:
    table = impl.RouteTable(TEMPLATES, ["a"], max_path=40)
    ok = "/v1/resources/a/records/" + "k" * 16
    assert len(ok) == 40
    assert table.match(ok) == (RECORD, 0, "a", "k" * 16)
    assert table.match(ok + "k") is None
    assert table.max_path == 40
    huge = impl.RouteTable(TEMPLATES, ["a"], max_path=2**80)
    assert huge.match(ok + "k") == (RECORD, 0, "a", "k" * 17)


def test_id_parameters_match_one_plain_segment(table) -> None:
    assert match(table, "/v1/consents/c-0123") == (CONSENT, -1, "c-0123", None)
    assert match(table, "/v1/citizens/user@x:1/access-log") == (ACCESS_LOG, -1, "user@x:1", None)
    for bad in ("/v1/consents/a%20b", "/v1/consents/..", "/v1/consents/" + "x" * 129, "/v1/consents/a!b",
                "/v1/citizens/u/access-log/x", "/v1/consents/a/b"):
        assert match(table, bad) is None, bad


def test_non_str_paths_do_not_match(table) -> None:
    for value in (None, b"/healthz", 1, ["/healthz"], bytearray(b"/healthz")):
        assert table.match(value) is None


def test_str_subclass_matches_like_str(table) -> None:
    class Weird(str):
        def __hash__(self) -> int:
            raise RuntimeError("no")

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

    assert match(table, Weird("/healthz")) == (HEALTHZ, -1, None, None)
    assert match(table, Weird("/v1/resources/a/records/k")) == (RECORD, 2, "a", "k")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((TEMPLATES, ["Bad"]), "resource id #0 'Bad' is not a valid resource id"),
        ((TEMPLATES, ["a", "a"]), "resource id 'a' appears twice"),
        ((TEMPLATES, ["a", 1]), "resource id #1 1 is not a valid resource id"),
        ((TEMPLATES, ["a"], ["SH/GOV/x/y"]), "service id #0 'SH/GOV/x/y' is not a valid service id"),
        ((TEMPLATES, ["a"], ["SH/GOV/x/y/.."]), "is not a valid service id"),
        ((["healthz"],), "route template 'healthz' must be a str starting with '/'"),
        ((["/a", "/a"],), "route template '/a' appears twice"),
        ((["/a/{rid}", "/a/{rid}"],), "matches the same paths as route #0"),
        ((["/a/{nope}"],), "unknown parameter type 'nope'"),
        ((["/a/{tail}/b"],), "a tail parameter must be last"),
        ((["/a/{rid}/{key}/{id}"],), "at most two parameters"),
        ((["/a/{rid}/{service}"],), "at most one rid or service parameter"),
        ((["/a b"],), "bad segment 'a b'"),
        ((["/a//b"],), "bad segment ''"),
        (("/healthz",), "templates must be a sequence"),
        ((TEMPLATES, ["a"], (), 0), "max_path must be a positive int"),
        ((TEMPLATES, ["a"], (), 2.5), "max_path must be a positive int, not 2.5"),
        ((TEMPLATES, ["a"], (), True), "max_path must be a positive int, not True"),
    ],
)
def test_bad_tables_are_refused(impl: fastpath.Implementation, args: tuple, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        impl.RouteTable(*args)


def test_table_is_immutable(table) -> None:
    with pytest.raises(AttributeError):
        table.extra = 1
    assert len(table) == len(RIDS)


# ---- property tests -----------------------------------------------------------------

_pieces = st.sampled_from(
    [
        "a",
        "psb.id-card",
        "hrss.employment",
        "x-1",
        "SH",
        "GOV",
        "psb",
        "hukou",
        "getPerson",
        "records",
        "cursor",
        "resources",
        "catalog",
        "services",
        "v1",
        ".",
        "..",
        "",
        "%2e",
        "%2E",
        "%2F",
        "%2f",
        "%5C",
        "%5c",
        "%",
        "%2",
        "%zz",
        "%00",
        "%0a",
        "%20",
        "%e4%b8%ad",
        "%E4%B8",
        "%ff",
        "%C3%A9",
        "中",
        "\\",
        "?",
        "#",
        " ",
        "\x00",
        "\n",
        "~",
        "a.b",
        "A",
        "-",
        "@:!$&'()*+,;=",
    ]
)
_segment = st.lists(_pieces, min_size=0, max_size=3).map("".join) | st.text(max_size=6)
_prefix = st.sampled_from(
    ["/v1/resources/", "/v1/catalog/", "/v1/services/", SVC + "/", "/v1/", "/", "", "/v1/consents/",
     "/v1/citizens/"]
)
_paths = st.builds(
    lambda p, segs: p + "/".join(segs), _prefix, st.lists(_segment, min_size=0, max_size=7)
) | st.text(max_size=40)


@settings(settings.get_profile("fastpath"), max_examples=1500)
@given(path=_paths)
def test_implementations_agree_on_paths(pair, path: str) -> None:
    tables = _pair_tables(pair)
    assert tables[0].match(path) == tables[1].match(path), path


@settings(settings.get_profile("fastpath"), max_examples=300)
@given(path=st.text(max_size=200))
def test_router_never_raises_on_random_text(impl: fastpath.Implementation, path: str) -> None:
    table = _table_for(impl)
    result = table.match(path)
    assert result is None or (isinstance(result, tuple) and len(result) == 4)
    result = table.match("/v1/resources/a/records/" + path)
    assert result is None or result[0] == RECORD
    result = table.match(SVC + "/" + path)
    assert result is None or result[0] == SERVICE


@settings(settings.get_profile("fastpath"), max_examples=300)
@given(key=st.text(min_size=1, max_size=30))
def test_quoted_keys_round_trip(impl: fastpath.Implementation, key: str) -> None:
    from urllib.parse import quote

    table = _table_for(impl)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates cannot be sent
    result = table.match("/v1/resources/a/records/" + quote(key, safe=""))
    bad = key in (".", "..") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
    assert result == (None if bad else (RECORD, 2, "a", key))


@settings(settings.get_profile("fastpath"), max_examples=100)
@given(
    rids=st.lists(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True), unique=True),
    probe=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
)
def test_implementations_agree_on_random_tables(pair, rids: list[str], probe: str) -> None:
    cy, py = pair
    a, b = cy.RouteTable(TEMPLATES, rids), py.RouteTable(TEMPLATES, rids)
    for rid in [*rids[:5], probe]:
        for path in (f"/v1/resources/{rid}/records", f"/v1/catalog/{rid}"):
            assert a.match(path) == b.match(path)
            expected = rids.index(rid) if rid in rids else -1
            assert a.match(path)[1] == expected


_TABLES: dict[str, object] = {}


def _table_for(impl: fastpath.Implementation):
    if impl.name not in _TABLES:
        _TABLES[impl.name] = impl.RouteTable(TEMPLATES, RIDS, SERVICES)
    return _TABLES[impl.name]


def _pair_tables(pair):
    return _table_for(pair[0]), _table_for(pair[1])


_part = st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True).filter(lambda p: p not in (".", ".."))


@settings(settings.get_profile("fastpath"), max_examples=150)
@given(
    services=st.lists(st.lists(_part, min_size=5, max_size=5).map("/".join), unique=True),
    probe=st.lists(_part, min_size=5, max_size=5).map("/".join),
    tail=st.lists(_segment, max_size=3).map(lambda segs: "".join("/" + s for s in segs)),
)
def test_implementations_agree_on_service_tables(pair, services, probe, tail) -> None:
    cy, py = pair
    a, b = cy.RouteTable(TEMPLATES, [], services), py.RouteTable(TEMPLATES, [], services)
    for sid in [*services[:3], probe]:
        path = f"/v1/services/{sid}{tail}"
        assert a.match(path) == b.match(path), path
        result = b.match(path)
        if result is not None:
            assert result[:3] == (
                SERVICE,
                services.index(sid) if sid in services else -1,
                sid,
            )
            assert result[3] == tail


def test_every_id_of_a_large_table_resolves_to_its_index(impl: fastpath.Implementation) -> None:
    rids = [f"agency{i % 50}.dataset-{i}" for i in range(20000)]
    rids += ["a" * n for n in range(1, 129)]  # every length the hash's tail handles
    table = impl.RouteTable(TEMPLATES, rids)
    for index, rid in enumerate(rids):
        assert table.match(f"/v1/catalog/{rid}") == (
            CATALOG_ITEM,
            index,
            rid,
            None,
        )
    for rid in ("agency0.dataset-20000", "agency0.dataset-1", "a" * 127 + "b", "b"):
        expected = rids.index(rid) if rid in rids else -1
        assert table.match(f"/v1/catalog/{rid}")[1] == expected
