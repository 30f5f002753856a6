"""Impersonation: the real filter's checks, resulting identity and exact denial messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from dict_store import DictStore
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tenant_proxy.emulator.bootstrap_policy import bootstrap_objects
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.impersonation import apply, unescape_extra_key
from tenant_proxy.emulator.rbac import RBAC_GROUP, Authorizer
from tenant_proxy.emulator.types import Attributes, UserInfo

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def transcript_body(name: str) -> Any:
    path = REFERENCE / name
    lines = path.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line == "<")
    return json.loads("\n".join(lines[start + 1 :]))


def impersonator(rules: list[dict[str, Any]]) -> Authorizer:
    role = {"kind": "ClusterRole", "metadata": {"name": "impersonator"}, "rules": rules}
    binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "impersonator"},
        "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": "tenant-proxy"}],
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "impersonator"},
    }
    return Authorizer(DictStore([*bootstrap_objects(), role, binding]))


EVERYTHING = [
    {
        "verbs": ["impersonate"],
        "apiGroups": ["", "authentication.k8s.io"],
        "resources": ["users", "groups", "serviceaccounts", "userextras/scopes", "uids"],
    }
]
PROXY = UserInfo("tenant-proxy", groups=("system:authenticated",))
ALICE = UserInfo("alice", groups=("tenant-a-devs", "system:authenticated"))


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_without_impersonate_headers_the_caller_is_unchanged() -> None:
    assert apply(ALICE, headers(("Accept", "application/json")), impersonator([])) is ALICE


def test_proxy_acts_as_user_and_groups_plus_authenticated() -> None:
    h = headers(("Impersonate-User", "alice"), ("Impersonate-Group", "tenant-a-devs"))
    user = apply(PROXY, h, impersonator(EVERYTHING))
    assert user == UserInfo("alice", "", ("tenant-a-devs", "system:authenticated"), {})


def test_user_without_impersonate_permission_gets_the_transcript_403() -> None:
    with pytest.raises(StatusError) as caught:
        apply(ALICE, headers(("Impersonate-User", "bob")), impersonator(EVERYTHING))
    assert caught.value.status() == transcript_body("impersonate-403-not-allowed.txt")


def test_each_group_is_checked_and_the_first_denied_one_is_named() -> None:
    rules = [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"]}]
    h = headers(("Impersonate-User", "alice"), ("Impersonate-Group", "admins"))
    with pytest.raises(StatusError) as caught:
        apply(PROXY, h, impersonator(rules))
    assert caught.value.code == 403
    assert caught.value.message == (
        'groups "admins" is forbidden: User "tenant-proxy" cannot impersonate resource "groups" '
        'in API group "" at the cluster scope'
    )


def test_service_account_user_is_checked_in_its_namespace_and_gets_sa_groups() -> None:
    h = headers(("Impersonate-User", "system:serviceaccount:team-a-dev:ci-bot"))
    user = apply(PROXY, h, impersonator(EVERYTHING))
    assert user.name == "system:serviceaccount:team-a-dev:ci-bot"
    assert user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:team-a-dev",
        "system:authenticated",
    )
    with pytest.raises(StatusError) as caught:
        apply(ALICE, h, impersonator([]))
    assert caught.value.message == (
        'serviceaccounts "ci-bot" is forbidden: User "alice" cannot impersonate resource '
        '"serviceaccounts" in API group "" in the namespace "team-a-dev"'
    )
    assert caught.value.details == {"name": "ci-bot", "kind": "serviceaccounts"}


def test_extra_keys_are_percent_decoded_and_checked_as_userextras_subresource() -> None:
    h = headers(
        ("Impersonate-User", "alice"),
        ("Impersonate-Extra-Scopes", "view"),
        ("Impersonate-Extra-Scopes", "edit"),
    )
    user = apply(PROXY, h, impersonator(EVERYTHING))
    assert user.extra == {"scopes": ("view", "edit")}
    h = headers(("Impersonate-User", "alice"), ("Impersonate-Extra-Example.com%2fTeam", "a"))
    with pytest.raises(StatusError) as caught:
        apply(PROXY, h, impersonator(EVERYTHING))
    assert caught.value.message == (
        'userextras.authentication.k8s.io "a" is forbidden: User "tenant-proxy" cannot '
        'impersonate resource "userextras/example.com/team" in API group '
        '"authentication.k8s.io" at the cluster scope'
    )
    assert caught.value.details == {
        "name": "a",
        "group": "authentication.k8s.io",
        "kind": "userextras",
    }


def test_uid_is_impersonated_when_allowed() -> None:
    h = headers(("Impersonate-User", "alice"), ("Impersonate-Uid", "1234"))
    assert apply(PROXY, h, impersonator(EVERYTHING)).uid == "1234"


def test_groups_without_a_user_is_an_internal_error_like_the_real_filter() -> None:
    with pytest.raises(StatusError) as caught:
        apply(PROXY, headers(("Impersonate-Group", "g")), impersonator(EVERYTHING))
    assert caught.value.code == 500
    assert caught.value.message == (
        "Internal error occurred: requested [{Group  g    }] without impersonating a user"
    )


def test_impersonating_anonymous_adds_unauthenticated_not_authenticated() -> None:
    user = apply(PROXY, headers(("Impersonate-User", "system:anonymous")), impersonator(EVERYTHING))
    assert user.groups == ("system:unauthenticated",)


def test_explicit_unauthenticated_group_suppresses_authenticated() -> None:
    h = headers(("Impersonate-User", "bob"), ("Impersonate-Group", "system:unauthenticated"))
    assert apply(PROXY, h, impersonator(EVERYTHING)).groups == ("system:unauthenticated",)


def test_checks_use_the_impersonate_verb_on_the_callers_identity() -> None:
    seen: list[tuple[str, Attributes]] = []

    class Recorder:
        def authorize(self, user: UserInfo, attrs: Attributes) -> bool:
            seen.append((user.name, attrs))
            return True

    h = headers(("Impersonate-User", "alice"), ("Impersonate-Group", "g1"))
    apply(PROXY, h, Recorder())
    assert [(u, a.verb, a.resource, a.name) for u, a in seen] == [
        ("tenant-proxy", "impersonate", "users", "alice"),
        ("tenant-proxy", "impersonate", "groups", "g1"),
    ]


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1))
def test_extra_key_unescaping_inverts_percent_encoding(key: str) -> None:
    assert unescape_extra_key(quote(key, safe="")) == key
