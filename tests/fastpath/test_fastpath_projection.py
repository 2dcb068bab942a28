"""Field projection and masking: explicit rules, refusals and twin agreement."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpath

PERSON = {
    "id_number": "310101199001011234",
    "name": "Zhang San",
    "birth_date": "1990-01-01",
    "address": None,
}


def test_identity_plan(impl: fastpath.Implementation) -> None:
    for fields in (None, ["*"], ("name", "*")):
        plan = impl.compile_plan(fields)
        assert plan.is_identity and plan.fields is None
        out = impl.project(plan, PERSON)
        assert out == PERSON and out is not PERSON


def test_fields_keep_record_order_and_skip_absent(impl: fastpath.Implementation) -> None:
    plan = impl.compile_plan(["birth_date", "id_number", "missing"])
    assert not plan.is_identity
    assert plan.fields == ("birth_date", "id_number", "missing")
    out = impl.project(plan, PERSON)
    assert list(out.items()) == [
        ("id_number", "310101199001011234"),
        ("birth_date", "1990-01-01"),
    ]


def test_empty_field_list_keeps_nothing(impl: fastpath.Implementation) -> None:
    assert impl.project(impl.compile_plan([]), PERSON) == {}


def test_duplicate_fields_are_folded(impl: fastpath.Implementation) -> None:
    assert impl.compile_plan(["a", "b", "a"]).fields == ("a", "b")


@pytest.mark.parametrize(
    ("value", "head", "tail", "masked"),
    [
        ("310101199001011234", 6, 4, "310101********1234"),
        ("0123456789", 6, 4, "**********"),  # len == head + tail: fully masked
        ("012345678", 6, 4, "*********"),
        ("", 6, 4, ""),
        ("abcdef", 0, 0, "******"),
        ("abcdef", 2, 0, "ab****"),
        ("abcdef", 0, 2, "****ef"),
        ("张三丰先生", 1, 1, "张***生"),
        ("a😀bcd😀e", 2, 2, "a😀***😀e"),
        (12345678, 2, 2, "12****78"),
        (True, 1, 1, "T**e"),
        (False, 3, 2, "*****"),
        (1.5, 0, 0, "***"),
        (["x"], 0, 0, "*****"),
        (None, 6, 4, None),
    ],
)
def test_masking(impl: fastpath.Implementation, value, head: int, tail: int, masked) -> None:
    plan = impl.compile_plan(None, {"v": (head, tail)})
    assert not plan.is_identity
    assert impl.project(plan, {"v": value, "w": 1}) == {"v": masked, "w": 1}


def test_mask_on_a_field_outside_the_plan_outputs_nothing(impl: fastpath.Implementation) -> None:
    plan = impl.compile_plan(["name"], {"id_number": (6, 4)})
    assert impl.project(plan, PERSON) == {"name": "Zhang San"}


def test_project_many_and_input_untouched(impl: fastpath.Implementation) -> None:
    plan = impl.compile_plan(["id_number", "name"], {"id_number": (6, 4)})
    records = [dict(PERSON), {"name": "Li Si"}, {}]
    before = [dict(r) for r in records]
    out = impl.project_many(plan, records)
    assert out == [
        {"id_number": "310101********1234", "name": "Zhang San"},
        {"name": "Li Si"},
        {},
    ]
    assert records == before
    assert impl.project_many(plan, []) == []


def test_dict_subclasses_are_read_as_dicts(impl: fastpath.Implementation) -> None:
    class Odd(dict):
        def items(self):  # noqa: ANN202 - must be ignored
            return [("evil", 1)]

    plan = impl.compile_plan(["a"])
    assert impl.project(plan, Odd(a=1, b=2)) == {"a": 1}


@pytest.mark.parametrize(
    ("fields", "masks", "error", "message"),
    [
        ("name", None, TypeError, "fields must be a sequence of field names, not a str"),
        (["a", 1], None, TypeError, "field name 1 is not a str"),
        (["a"], {"a": (1,)}, ValueError, r"mask for 'a' must be \(keep_head, keep_tail\)"),
        (["a"], {"a": (1, -1)}, ValueError, r"mask for 'a'"),
        (["a"], {"a": (1.0, 2)}, ValueError, r"mask for 'a'"),
        (["a"], {"a": "6,4"}, ValueError, r"mask for 'a'"),
        (["a"], {1: (1, 1)}, TypeError, "masked field name 1 is not a str"),
    ],
)
def test_bad_plans_are_refused(impl, fields, masks, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        impl.compile_plan(fields, masks)


def test_records_must_be_dicts(impl: fastpath.Implementation) -> None:
    plan = impl.compile_plan(["a"])
    for bad in (None, [("a", 1)], "a"):
        with pytest.raises(TypeError, match="a record must be a dict"):
            impl.project(plan, bad)
    with pytest.raises(TypeError):
        impl.project_many(plan, [{"a": 1}, 5])


# ---- property tests -----------------------------------------------------------------

_names = st.sampled_from(["id", "name", "birth", "addr", "phone", "*", "x", "é"])
_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=24)
    | st.lists(st.integers(), max_size=3)
)
_records = st.dictionaries(_names.filter(lambda n: n != "*"), _values, max_size=7)
_masks = st.none() | st.dictionaries(
    _names, st.tuples(st.integers(0, 8), st.integers(0, 8)), max_size=3
)


@settings(settings.get_profile("fastpath"), max_examples=400)
@given(
    fields=st.none() | st.lists(_names, max_size=6),
    masks=_masks,
    records=st.lists(_records, max_size=5),
)
def test_implementations_agree(pair, fields, masks, records) -> None:
    cy, py = pair
    plan_c, plan_p = cy.compile_plan(fields, masks), py.compile_plan(fields, masks)
    assert (plan_c.fields, plan_c.masks, plan_c.is_identity) == (
        plan_p.fields,
        plan_p.masks,
        plan_p.is_identity,
    )
    out_c, out_p = cy.project_many(plan_c, records), py.project_many(plan_p, records)
    assert [list(r.items()) for r in out_c] == [list(r.items()) for r in out_p]
    for record, projected in zip(records, out_p, strict=True):
        allowed = set(record) if plan_p.fields is None else set(plan_p.fields)
        assert set(projected) == set(record) & allowed
        assert list(projected) == [k for k in record if k in projected]
        for name, (head, tail) in (masks or {}).items():
            if name in projected and record[name] is not None:
                text = str(record[name])
                assert len(projected[name]) == len(text)
                if len(text) <= head + tail:
                    assert set(projected[name]) <= {"*"}


def test_a_reinitialised_plan_forgets_its_old_fields(impl: fastpath.Implementation) -> None:
    plan = impl.compile_plan(["a", "b"], {"b": (0, 1)})
    record = {"a": "xyz", "b": "xyz", "c": "xyz"}
    assert impl.project(plan, record) == {"a": "xyz", "b": "**z"}
    plan.__init__(("c",), {"c": (1, 0)})
    assert impl.project(plan, record) == {"c": "x**"}


def test_many_field_names_share_the_plan(impl: fastpath.Implementation) -> None:
    """More distinct names than any per-plan cache, seen repeatedly, in fresh objects."""
    names = [f"field_{i}" for i in range(300)]
    plan = impl.compile_plan(names[::3])
    for _ in range(3):
        record = {"".join(list(n)): i for i, n in enumerate(names)}  # new str objects
        assert list(impl.project(plan, record)) == names[::3]
        assert list(impl.project(plan, dict.fromkeys(names, 0))) == names[::3]
