"""Label selectors: kube's grammar, validation, matching, serialisation and combination."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.kube.labels import (
    EVERYTHING,
    Op,
    Requirement,
    Selector,
    SelectorError,
    and_selectors,
    from_label_selector,
    new_requirement,
    selector_of,
)
from tenant_proxy.kube.selector_syntax import parse_selector

KEYS = ["a", "b", "app", "example.com/tenant", "kubernetes.io/metadata.name", "in", "notin"]
VALUES = ["", "x", "y", "team-a", "in", "5", "12"]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("a", "a"),
        ("!a", "!a"),
        (" a = b ", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a=", "a="),
        ("b in (y,x,x), a notin (z)", "a notin (z),b in (x,y)"),
        ("a in ()", "a in ()"),
        ("a in (,)", "a in ()"),
        ("a in (x,)", "a in (,x)"),
        ("a>5,a<10", "a>5,a<10"),
        ("in in (in,notin)", "in in (in,notin)"),
        ("example.com/tenant=team-a", "example.com/tenant=team-a"),
        ("a\tin\n(x)", "a in (x)"),
    ],
)
def test_kube_accepted_selectors_parse_to_their_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "a=b=c",
        "a in",
        "a in (x",
        "a in (x y)",
        "a,",
        ",a",
        "!a=b",
        "a<b",
        "a>-5",
        "a>9223372036854775808",
        "a b",
        "=b",
        "a=(b)",
        "a notin x",
        "-a=b",
        "a=-b",
        "Example.com/x=y",
        "/a=b",
        "a/b/c=d",
        "a=" + "v" * 64,
        "k" * 64,
        "a=b c",
        "a!b",
        "a=b,,c=d",
        "a in (x),",
        "ä=b",
    ],
)
def test_selectors_kube_refuses_are_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_gt_lt_compare_as_int64() -> None:
    selector = parse_selector("a>9223372036854775806")
    assert selector.matches({"a": "9223372036854775807"})
    assert not selector.matches({"a": "9223372036854775808"})
    assert not selector.matches({"a": "1e30"})
    assert parse_selector("a<5").matches({"a": "+4"})


def test_nul_ends_the_selector_as_in_go() -> None:
    assert str(parse_selector("a=b\x00,c")) == "a=b"


requirements = st.one_of(
    st.builds(
        lambda k, op, v: Requirement(k, op, (v,)),
        st.sampled_from(KEYS),
        st.sampled_from([Op.EQUALS, Op.DOUBLE_EQUALS, Op.NOT_EQUALS]),
        st.sampled_from(VALUES),
    ),
    st.builds(
        lambda k, op, vs: Requirement(k, op, tuple(sorted(vs))),
        st.sampled_from(KEYS),
        st.sampled_from([Op.IN, Op.NOT_IN]),
        st.frozensets(st.sampled_from(VALUES), min_size=1),
    ),
    st.builds(
        lambda k, op: Requirement(k, op, ()),
        st.sampled_from(KEYS),
        st.sampled_from([Op.EXISTS, Op.DOES_NOT_EXIST]),
    ),
    st.builds(
        lambda k, op, v: Requirement(k, op, (str(v),)),
        st.sampled_from(KEYS),
        st.sampled_from([Op.GREATER_THAN, Op.LESS_THAN]),
        st.integers(0, 20),
    ),
)
selectors = st.lists(requirements, max_size=5).map(selector_of)
label_sets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from([*VALUES, "7", "x1"]))


def oracle_matches(req: Requirement, labels: dict[str, str]) -> bool:
    """labels.Requirement.Matches, written out case by case."""
    value = labels.get(req.key)
    if req.op == Op.EXISTS:
        return value is not None
    if req.op == Op.DOES_NOT_EXIST:
        return value is None
    if req.op in (Op.EQUALS, Op.DOUBLE_EQUALS, Op.IN):
        return value is not None and value in req.values
    if req.op in (Op.NOT_EQUALS, Op.NOT_IN):
        return value is None or value not in req.values
    if value is None or not value.isdigit():
        return False
    bound = int(req.values[0])
    return int(value) > bound if req.op == Op.GREATER_THAN else int(value) < bound


@given(selectors)
def test_serialised_selectors_parse_back_to_the_same_selector(selector: Selector) -> None:
    assert parse_selector(str(selector)) == selector


@given(selectors, label_sets)
def test_a_selector_matches_when_every_requirement_holds(selector: Selector, labels: dict) -> None:
    expected = all(oracle_matches(r, labels) for r in selector.requirements)
    assert selector.matches(labels) == expected
    assert parse_selector(str(selector)).matches(labels) == expected


@given(selectors, selectors, label_sets)
def test_and_selectors_matches_exactly_what_both_match(
    a: Selector, b: Selector, labels: dict
) -> None:
    both = parse_selector(str(and_selectors(a, b)))
    assert both.matches(labels) == (a.matches(labels) and b.matches(labels))


@given(st.text(alphabet="ab=!(),<> in\tx/.-5", max_size=20))
def test_parser_only_ever_refuses_with_selector_error(text: str) -> None:
    try:
        selector = parse_selector(text)
    except SelectorError:
        return
    assert parse_selector(str(selector)) == selector


def test_empty_selector_matches_everything() -> None:
    assert parse_selector("") == EVERYTHING
    assert EVERYTHING.matches({})
    assert EVERYTHING.matches({"a": "b"})


def test_label_selector_object_becomes_requirements() -> None:
    spec = {
        "matchLabels": {"pool": "team-a"},
        "matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["z1", "z2"]},
            {"key": "tainted", "operator": "DoesNotExist"},
        ],
    }
    selector = from_label_selector(spec)
    assert str(selector) == "pool=team-a,!tainted,zone in (z1,z2)"
    assert selector.matches({"pool": "team-a", "zone": "z2"})
    assert not selector.matches({"pool": "team-a", "zone": "z2", "tainted": ""})
    assert from_label_selector({}) == EVERYTHING


@pytest.mark.parametrize(
    "spec",
    [
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
        {"matchLabels": {"a": 1}},
        {"matchLabels": {"bad key": "x"}},
        {"matchLabels": ["a"]},
    ],
)
def test_invalid_label_selector_objects_are_refused(spec: dict) -> None:
    with pytest.raises(SelectorError):
        from_label_selector(spec)


def test_new_requirement_normalises_values() -> None:
    assert new_requirement("a", Op.IN, ["y", "x", "y"]).values == ("x", "y")


expressions = st.builds(
    lambda key, op, values: {"key": key, "operator": op, "values": values},
    st.sampled_from(KEYS),
    st.sampled_from(["In", "NotIn"]),
    st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
) | st.builds(
    lambda key, op: {"key": key, "operator": op},
    st.sampled_from(KEYS),
    st.sampled_from(["Exists", "DoesNotExist"]),
)
label_selector_objects = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES)),
        "matchExpressions": st.lists(expressions, max_size=3),
    },
)


def oracle_label_selector(spec: dict, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics, straight from the API reference."""
    if any(labels.get(k) != v for k, v in spec.get("matchLabels", {}).items()):
        return False
    for e in spec.get("matchExpressions", []):
        present = e["key"] in labels
        if e["operator"] == "In" and not (present and labels[e["key"]] in e["values"]):
            return False
        if e["operator"] == "NotIn" and present and labels[e["key"]] in e["values"]:
            return False
        if e["operator"] == "Exists" and not present:
            return False
        if e["operator"] == "DoesNotExist" and present:
            return False
    return True


@given(label_selector_objects, label_sets)
def test_label_selector_objects_match_as_the_api_defines_and_serialise_faithfully(
    spec: dict, labels: dict[str, str]
) -> None:
    selector = from_label_selector(spec)
    assert selector.matches(labels) == oracle_label_selector(spec, labels)
    assert parse_selector(str(selector)) == selector
