"""Synthetic Shanghai-scale catalogs (and matching keyrings) for scale tests and benchmarks.

``synth_catalog`` builds a catalog document with the shape of Shanghai's Big Data Center
(about 50 agencies and firms, 16,000+ data resources, grants between them) that is the same
for the same seed on every run and machine. ``write_catalog`` writes it as TOML that
:func:`gateway.catalog.load_catalog` loads; ``synth_keyring`` gives benchmark keys for its
subsystems. CLI: ``python -m gateway catalog synth --resources 16000 --members 50 --out FILE``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import os
import random
import sys
from pathlib import Path
from typing import Any

import tomli_w

__all__ = [
    "synth_catalog",
    "synth_keyring",
    "write_catalog",
    "main",
    "MAX_RESOURCES",
    "MAX_MEMBERS",
]

#: Upper bounds accepted by :func:`synth_catalog` (keeps a typo from eating the machine).
MAX_RESOURCES = 1_000_000
MAX_MEMBERS = 10_000

#: The Big Data Center's portal: a consumer of every personal conditional resource, so that
#: a load test can read any citizen's certificates through one subsystem.
PORTAL = "portal"

_GOV = [
    ("bdc", "Shanghai Municipal Big Data Center"),
    ("psb", "Shanghai Municipal Public Security Bureau"),
    ("hrss", "Shanghai Municipal Human Resources and Social Security Bureau"),
    ("civil-affairs", "Shanghai Municipal Civil Affairs Bureau"),
    ("housing", "Shanghai Municipal Housing and Urban-Rural Development Commission"),
    ("planning", "Shanghai Municipal Planning and Natural Resources Bureau"),
    ("transport", "Shanghai Municipal Transportation Commission"),
    ("tax", "Shanghai Municipal Tax Service"),
    ("samr", "Shanghai Municipal Administration for Market Regulation"),
    ("health", "Shanghai Municipal Health Commission"),
    ("medinsurance", "Shanghai Municipal Healthcare Security Administration"),
    ("hpf", "Shanghai Housing Provident Fund Management Center"),
    ("education", "Shanghai Municipal Education Commission"),
    ("ecology", "Shanghai Municipal Bureau of Ecology and Environment"),
    ("justice", "Shanghai Municipal Justice Bureau"),
    ("court", "Shanghai High People's Court"),
    ("customs", "Shanghai Customs District"),
    ("exit-entry", "Shanghai Exit-Entry Administration Bureau"),
    ("sicenter", "Shanghai Social Insurance Affairs Management Center"),
    ("pbc-crc", "PBoC Credit Reference Center, Shanghai"),
    ("disabled", "Shanghai Disabled Persons' Federation"),
    ("veterans", "Shanghai Municipal Veterans Affairs Bureau"),
    ("finance", "Shanghai Municipal Finance Bureau"),
    ("statistics", "Shanghai Municipal Statistics Bureau"),
    ("drug", "Shanghai Municipal Medical Products Administration"),
    ("culture-tourism", "Shanghai Municipal Administration of Culture and Tourism"),
    ("emergency", "Shanghai Municipal Emergency Management Bureau"),
    ("fire", "Shanghai Fire and Rescue Corps"),
    ("agriculture", "Shanghai Municipal Agriculture and Rural Affairs Commission"),
    ("commerce", "Shanghai Municipal Commission of Commerce"),
    ("stcsm", "Science and Technology Commission of Shanghai Municipality"),
    ("sheitc", "Shanghai Municipal Commission of Economy and Informatization"),
    ("ndrc", "Shanghai Municipal Development and Reform Commission"),
    ("water-authority", "Shanghai Water Authority"),
    ("greening", "Shanghai Landscaping and City Appearance Bureau"),
    ("sports", "Shanghai Administration of Sports"),
    ("archives", "Shanghai Municipal Archives Bureau"),
    ("pudong", "Pudong New Area People's Government"),
    ("huangpu", "Huangpu District People's Government"),
    ("xuhui", "Xuhui District People's Government"),
    ("jingan", "Jing'an District People's Government"),
    ("minhang", "Minhang District People's Government"),
]

_COM = [
    ("sh-water", "Shanghai Chengtou Water Group"),
    ("sgcc-sh", "State Grid Shanghai Municipal Electric Power Company"),
    ("sh-gas", "Shanghai Gas Group"),
    ("telecom-sh", "China Telecom Shanghai"),
    ("mobile-sh", "China Mobile Shanghai"),
    ("unicom-sh", "China Unicom Shanghai"),
    ("icbc-sh", "ICBC Shanghai Branch"),
    ("bocom", "Bank of Communications"),
    ("sptc", "Shanghai Public Transportation Card Co."),
    ("ruijin-hospital", "Ruijin Hospital"),
    ("cpic", "China Pacific Insurance"),
    ("shentong-metro", "Shanghai Shentong Metro"),
]

_SUBSYSTEMS = [
    "registry",
    "records",
    "services",
    "accounts",
    "billing",
    "permits",
    "cases",
    "archive",
]
_BDC_SUBSYSTEMS = [PORTAL, "directory", "hotline"]

_DATASETS = [
    "register", "certificates", "records", "permits", "accounts", "bills", "payments",
    "cases", "applications", "inspections", "licences", "statistics", "directory",
    "notices", "subsidies", "filings", "appointments", "assessments",
]  # fmt: skip

# (key field, type, personal): every synthetic resource is keyed.
_KEYS = [
    ("id_number", "str", True),
    ("id_number", "str", True),
    ("account_number", "str", True),
    ("certificate_number", "str", True),
    ("uscc", "str", False),
    ("licence_number", "str", False),
    ("record_id", "str", False),
    ("record_no", "int", False),
]

_FIELDS = [
    ("name", "str"), ("gender", "str"), ("birth_date", "date"), ("address", "str"),
    ("district", "str"), ("phone", "str"), ("email", "str"), ("status", "str"),
    ("issued", "date"), ("valid_until", "date"), ("updated_at", "datetime"),
    ("amount_yuan", "float"), ("balance_yuan", "float"), ("count", "int"), ("year", "int"),
    ("period", "str"), ("tags", "list[str]"), ("category", "str"), ("verified", "bool"),
    ("active", "bool"), ("score", "int"), ("area_sqm", "float"), ("latitude", "float"),
    ("longitude", "float"), ("notes", "str"), ("household_members", "int"),
    ("employer_uscc", "str"), ("plate_number", "str"), ("usage", "float"), ("paid", "bool"),
    ("due", "date"), ("level", "str"), ("grade", "int"), ("registered", "date"),
    ("created_at", "datetime"), ("channels", "list[str]"), ("fee_yuan", "float"),
]  # fmt: skip

_PURPOSES = [
    "one-stop service eligibility check",
    "verify an applicant's certificate",
    "means test for social assistance",
    "pre-fill an online application form",
    "cross-check a registration",
    "statistics and planning",
    "supervision after licensing",
]

_LEGAL_BASES = [
    "Shanghai Public Data Governance Measures, art. 22",
    "Regulations of Shanghai on Public Data, art. 38",
    "Social Insurance Law of the PRC, art. 10",
]

_GRANT_EXPIRY = dt.date(2030, 12, 31)


def _check_sizes(resources: int, members: int) -> None:
    if isinstance(resources, bool) or not isinstance(resources, int):
        raise ValueError(f"resources must be an integer, got {resources!r}")
    if isinstance(members, bool) or not isinstance(members, int):
        raise ValueError(f"members must be an integer, got {members!r}")
    if not 1 <= resources <= MAX_RESOURCES:
        raise ValueError(f"resources must be between 1 and {MAX_RESOURCES}, got {resources}")
    if not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"members must be between 1 and {MAX_MEMBERS}, got {members}")
    if members > resources:
        raise ValueError(
            f"members ({members}) must not exceed resources ({resources}): "
            "every member owns at least one resource"
        )


def _members(n: int) -> list[tuple[str, str, str]]:
    """(class, code, name) for n members: about 80 % agencies, the rest firms; bdc first."""
    n_com = 0 if n < 2 else max(1, round(n * 0.2))
    n_gov = n - n_com
    gov = [("GOV", c, name) for c, name in _GOV[:n_gov]]
    gov += [("GOV", f"agency-{i:04d}", f"Municipal agency {i}") for i in range(len(gov), n_gov)]
    com = [("COM", c, name) for c, name in _COM[:n_com]]
    com += [("COM", f"firm-{i:04d}", f"Public service firm {i}") for i in range(len(com), n_com)]
    return gov + com


def synth_catalog(
    resources: int = 16000, members: int = 50, seed: int = 0, instance: str = "SH"
) -> dict[str, Any]:
    """A deterministic catalog document (the shape of ``CatalogFile``) for a seed.

    Members are agencies ``SH/GOV/...`` and firms ``SH/COM/...`` with 1-3 subsystems each
    (the first member is the Big Data Center with ``portal``); resources are named
    ``<code>.<dataset>-<n>``, have a key and 3-12 typed fields, and are about 60 %
    conditional, 30 % open and 10 % restricted; each conditional resource has about three
    grants, and the portal (declared in ``portals``) has a grant of every personal
    conditional resource.
    Raises ``ValueError`` for sizes out of range.
    """
    _check_sizes(resources, members)
    rng = random.Random(seed)
    doc: dict[str, Any] = {
        "instance": instance,
        "members": [],
        "subsystems": [],
        "resources": [],
        "grants": [],
    }
    owners_of: list[list[str]] = []  # per member: subsystems that may own resources
    all_subsystems: list[str] = []
    for cls, code, name in _members(members):
        mid = f"{instance}/{cls}/{code}"
        doc["members"].append({"id": mid, "name": name})
        if code == "bdc":
            subs = list(_BDC_SUBSYSTEMS)
        else:
            subs = rng.sample(_SUBSYSTEMS, rng.randint(1, 3))
        for s in subs:
            sid = f"{mid}/{s}"
            doc["subsystems"].append({"id": sid})
            all_subsystems.append(sid)
        owners_of.append([f"{mid}/{s}" for s in subs if s != PORTAL])
    portal = f"{instance}/GOV/bdc/{PORTAL}" if _members(members)[0][1] == "bdc" else None
    if portal is not None:
        doc["portals"] = [portal]  # acts for citizens: reads their own personal records

    # Every member owns one resource; the rest go to members with skewed weights, as a
    # few large agencies (police, social security, tax) hold most of a city's data.
    weights = [rng.paretovariate(1.2) for _ in range(members)]
    owner_member = list(range(members)) + rng.choices(
        range(members), weights=weights, k=resources - members
    )
    rng.shuffle(owner_member)
    codes = [m["id"].rsplit("/", 1)[1] for m in doc["members"]]

    for n, mi in enumerate(owner_member):
        owner = rng.choice(owners_of[mi])
        key, key_type, personal = rng.choice(_KEYS)
        fields = {key: key_type}
        for fname, ftype in rng.sample(_FIELDS, rng.randint(2, 11)):
            if fname != key:
                fields[fname] = ftype + ("?" if rng.random() < 0.2 else "")
        roll = rng.random()
        sharing = "conditional" if roll < 0.6 else "open" if roll < 0.9 else "restricted"
        rid = f"{codes[mi]}.{rng.choice(_DATASETS)}-{n}"
        res: dict[str, Any] = {
            "id": rid,
            "owner": owner,
            "title": f"Synthetic data resource {n} of {codes[mi]}",
            "sharing": sharing,
            "personal": personal and sharing != "open",
            "key": key,
            "fields": fields,
        }
        doc["resources"].append(res)
        if sharing == "conditional":
            doc["grants"].extend(_grants(rng, res, all_subsystems, portal))
    return doc


def _grants(
    rng: random.Random, res: dict[str, Any], subsystems: list[str], portal: str | None
) -> list[dict[str, Any]]:
    """About three grants of one conditional resource to other members' subsystems."""
    owner_member = res["owner"].rpartition("/")[0]
    names = list(res["fields"])
    out: list[dict[str, Any]] = []
    taken = {portal}
    if portal is not None and res["personal"]:
        out.append(
            {
                "consumer": portal,
                "resource": res["id"],
                "fields": ["*"],
                "purpose": "show the citizen's own data in the one-stop portal",
            }
        )
    for _ in range(rng.randint(1, 5)):
        consumer = rng.choice(subsystems)
        if consumer in taken or consumer.rpartition("/")[0] == owner_member:
            continue
        taken.add(consumer)
        if rng.random() < 0.1:
            fields = ["*"]
        else:
            extra = rng.sample(names[1:], rng.randint(0, len(names) - 1)) if len(names) > 1 else []
            fields = [names[0], *extra]
        grant: dict[str, Any] = {
            "consumer": consumer,
            "resource": res["id"],
            "fields": fields,
            "purpose": rng.choice(_PURPOSES),
        }
        if res["fields"][names[0]] == "str" and rng.random() < 0.2:
            grant["masks"] = {names[0]: [6, 4]}
        if res["personal"] and rng.random() < 0.3:
            grant["legal_basis"] = rng.choice(_LEGAL_BASES)
        if rng.random() < 0.1:
            grant["expires"] = _GRANT_EXPIRY
        out.append(grant)
    return out


def write_catalog(doc: dict[str, Any], path: str | Path) -> None:
    """Write a catalog document as TOML (atomically: a temporary file, then rename)."""
    path = Path(path)
    header = (
        "# Synthetic catalog written by `python -m gateway catalog synth`: "
        f"{len(doc.get('members', []))} members, {len(doc.get('resources', []))} resources, "
        f"{len(doc.get('grants', []))} grants.\n"
        "# Made-up data for scale tests and benchmarks; regenerate rather than edit.\n\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + tomli_w.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def synth_keyring(doc: dict[str, Any], seed: int = 0) -> str:
    """A keyring TOML with one key per subsystem of ``doc``, secrets derived from ``seed``.

    The secrets are predictable by design (anyone with the seed can compute them): for
    benchmarks and tests only, never for a node that holds real data.
    """
    lines = [
        "# Benchmark keyring written by `python -m gateway catalog synth --keyring`.",
        f"# Secrets are derived from the public seed {seed}: for benchmarks only, NEVER for real data.",
        'citizen_key = "' + hmac.new(b"onestop-exchange synthetic keyring", f"{seed}\ncitizen key".encode(),
                                     hashlib.sha256).hexdigest() + '"',
        "",
    ]
    for sub in doc.get("subsystems", []):
        client = sub["id"]
        secret = hmac.new(
            b"onestop-exchange synthetic keyring", f"{seed}\n{client}".encode(), hashlib.sha256
        ).hexdigest()
        kid = "k-" + client.replace("/", "-").lower()
        lines.append(tomli_w.dumps({"keys": [{"id": kid, "client": client, "secret": secret}]}))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gateway catalog synth",
        description=(
            "Write a deterministic synthetic catalog of Shanghai's scale (agencies SH/GOV/..., "
            "firms SH/COM/..., data resources with typed fields, grants) for scale tests and "
            "benchmarks. The same seed gives the same file."
        ),
    )
    p.add_argument("--resources", type=int, default=16000, metavar="N",
                   help=f"number of data resources, 1..{MAX_RESOURCES} (default 16000)")  # fmt: skip
    p.add_argument("--members", type=int, default=50, metavar="N",
                   help=f"number of members, 1..{MAX_MEMBERS} and at most --resources (default 50)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="random seed (default 0)")  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE", help="catalog TOML file to write")
    p.add_argument("--keyring", metavar="FILE",
                   help="also write a benchmark keyring (mode 0600) with one key per subsystem, "
                        "secrets derived from the seed (never for real data)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry: parse ``argv``, write the catalog (and keyring); 0 on success, 2 on bad flags."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _check_sizes(args.resources, args.members)
    except ValueError as exc:
        parser.error(str(exc))
    for flag, value in (("--out", args.out), ("--keyring", args.keyring)):
        if value is None:
            continue
        target = Path(value)
        if target.is_dir():
            parser.error(f"{flag} {value}: is a directory")
        if not target.parent.is_dir():
            parser.error(f"{flag} {value}: folder {str(target.parent)!r} does not exist")
    doc = synth_catalog(args.resources, args.members, args.seed)
    try:
        write_catalog(doc, args.out)
        if args.keyring:
            from gateway.keyring import write_private

            write_private(args.keyring, synth_keyring(doc, args.seed))
    except OSError as exc:
        print(f"python -m gateway catalog synth: error: cannot write: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {len(doc['members'])} members, {len(doc['subsystems'])} subsystems, "
        f"{len(doc['resources'])} resources, {len(doc['grants'])} grants (seed {args.seed})"
        + (f"; keyring {args.keyring}" if args.keyring else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
