from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.identity import ANONYMOUS, Identity


@pytest.mark.parametrize("user", ["", " ", "\t\n"])
def test_identity_refuses_empty_user(user: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        Identity(user=user)


def test_identity_refuses_unknown_method() -> None:
    with pytest.raises(ValueError, match="method"):
        Identity(user="alice", method="magic")


def test_identity_extra_is_a_frozen_copy() -> None:
    source: dict[str, Any] = {"scopes": ["view"]}
    identity = Identity(user="alice", extra=source)
    source["scopes"].append("edit")
    assert identity.extra == {"scopes": ("view",)}
    with pytest.raises(TypeError):
        identity.extra["scopes"] = ("edit",)  # type: ignore[index]


def test_identities_are_hashable_and_equal_by_value() -> None:
    a = Identity(user="alice", groups=("g",), extra={"k": ("v",)}, method="x509")
    lists: dict[str, Any] = {"groups": ["g"], "extra": {"k": ["v"]}}
    b = Identity(user="alice", method="x509", **lists)
    assert a == b
    assert hash(a) == hash(b)
    assert a != Identity(user="alice", groups=("g",), extra={"k": ("w",)}, method="x509")


def test_anonymous_is_system_anonymous() -> None:
    assert ANONYMOUS.user == "system:anonymous"
    assert ANONYMOUS.groups == ("system:unauthenticated",)


@given(st.text(min_size=1).filter(str.strip), st.lists(st.text()))
def test_groups_keep_order_without_duplicates(user: str, groups: list[str]) -> None:
    identity = Identity(user=user, groups=tuple(groups))
    assert identity.groups == tuple(dict.fromkeys(groups))
    assert identity.user == user
