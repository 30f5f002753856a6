"""Value types shared by the emulator's parts: who calls, what they ask, what is served."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KubeObject = dict[str, Any]
"""A Kubernetes object as decoded JSON."""


@dataclass(frozen=True)
class UserInfo:
    """An authenticated (or anonymous) caller, as kube-apiserver's user.Info."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


ANONYMOUS = UserInfo(name="system:anonymous", groups=("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    """What a request asks for, as kube-apiserver's RequestInfo / authorizer.Attributes.

    For a non-resource request only `verb` (lower-case HTTP method: get, post, ...) and `path`
    are meaningful. `api_version` is the served version ("v1"); `api_group` is "" for core.
    """

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True)
class ResourceType:
    """One served resource: the emulator's resource table holds one per (group, version, plural)."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_resource(self) -> str:
        """`plural` or `plural.group`, as Status details and messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural
