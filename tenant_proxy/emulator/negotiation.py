"""Accept-header negotiation as kube-apiserver does it: JSON, Table or PartialObjectMetadata.

The emulator serves JSON only (and protobuf for the access reviews kubectl asks, see
`negotiate_review`). A media range is tried in Accept order (highest q first, concrete
types before wildcards, otherwise as sent); the first one JSON can satisfy wins, so a protobuf
Accept with a JSON alternative (`application/vnd.kubernetes.protobuf, */*`) gets JSON, and one
with nothing JSON can satisfy gets 406. Parameters `as`, `g`, `v` ask for a transformation; a
clause asking for one the server cannot do is skipped, as the real server skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.types import ResourceType

META_GROUP = "meta.k8s.io"
META_VERSIONS = ("v1", "v1beta1")
_PARTIAL_KINDS = ("PartialObjectMetadata", "PartialObjectMetadataList")

FormatKind = Literal["json", "table", "partial"]


@dataclass(frozen=True)
class Format:
    """What to answer with. `version` is the meta.k8s.io version for table/partial, else ""."""

    kind: FormatKind
    version: str = ""

    @property
    def api_version(self) -> str:
        """`meta.k8s.io/<version>` for a transformed answer."""
        return f"{META_GROUP}/{self.version}" if self.version else ""


JSON = Format("json")


@dataclass(frozen=True)
class MediaRange:
    """One clause of an Accept header."""

    type: str
    subtype: str
    params: dict[str, str]
    q: float = 1.0


def parse_accept(header: str) -> list[MediaRange]:
    """The clauses of an Accept header in the order the server tries them."""
    ranges = [r for r in (_parse_range(part) for part in header.split(",")) if r is not None]
    # A stable sort keeps the client's order between equally preferred clauses.
    return sorted(ranges, key=lambda r: (-r.q, r.type == "*", r.subtype == "*"))


def _parse_range(part: str) -> MediaRange | None:
    pieces = [p.strip() for p in part.split(";")]
    media, params = pieces[0].lower(), pieces[1:]
    if media == "*":
        media = "*/*"
    type_, sep, subtype = media.partition("/")
    if not sep or not type_ or not subtype:
        return None
    values: dict[str, str] = {}
    q = 1.0
    for param in params:
        key, eq, value = param.partition("=")
        if not eq:
            continue
        key, value = key.strip().lower(), value.strip().strip('"')
        if key == "q":
            q = _quality(value)
        else:
            values[key] = value
    return MediaRange(type_, subtype, values, q)


def _quality(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


def negotiate(
    accept: str | None,
    *,
    is_list: bool,
    is_watch: bool,
    rt: ResourceType | None = None,
) -> Format:
    """The answer's format for a resource request; raise a 406 StatusError when none fits.

    `rt`, when given, only names the Go type in the messages of the transformation errors.
    """
    if not accept or not accept.strip():
        return JSON
    for clause in parse_accept(accept):
        choice = _accept_clause(clause)
        if choice is not None:
            return _fit_to_request(choice, is_list=is_list, is_watch=is_watch, rt=rt)
    raise errors.not_acceptable(accept)


def negotiate_plain(accept: str | None) -> Format:
    """Negotiation for endpoints that allow no transformation (discovery, /version, openapi).

    kubectl asks for aggregated discovery first
    (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...,application/json`);
    that clause is skipped like any unknown `as=`, and the plain `application/json` answers.
    """
    if not accept or not accept.strip():
        return JSON
    for clause in parse_accept(accept):
        if _serves_json(clause) and not {"as", "g", "v"} & clause.params.keys():
            return JSON
    raise errors.not_acceptable(accept)


def negotiate_review(accept: str | None, *, protobuf: bool) -> Literal["json", "protobuf"]:
    """The answer's encoding for an access review: the first clause the server can serve.

    The real server's serializers come in the order JSON, YAML, protobuf, so a wildcard gets
    JSON and protobuf only when a clause names it (kubectl sends
    `application/vnd.kubernetes.protobuf,application/json`). `protobuf`: whether this kind
    has a protobuf encoding here; without one its clause is passed over.
    """
    if not accept or not accept.strip():
        return "json"
    for clause in parse_accept(accept):
        if {"as", "g", "v"} & clause.params.keys():
            continue
        if protobuf and clause.q > 0 and (clause.type, clause.subtype) == _PROTOBUF:
            return "protobuf"
        if _serves_json(clause):
            return "json"
    raise errors.not_acceptable(accept)


_PROTOBUF = ("application", "vnd.kubernetes.protobuf")


def _serves_json(clause: MediaRange) -> bool:
    if clause.q <= 0:
        return False
    if clause.type == "*":
        return clause.subtype == "*"
    return clause.type == "application" and clause.subtype in ("json", "*")


@dataclass(frozen=True)
class _Choice:
    """The format a clause asks for, before it is fitted to the request."""

    format: Format
    wants_list: bool = False


def _accept_clause(clause: MediaRange) -> _Choice | None:
    if not _serves_json(clause):
        return None
    if clause.params.get("stream", "watch") not in ("", "watch"):
        # The only streaming schema the server knows is the watch framing.
        return None
    kind, group, version = (clause.params.get(k) for k in ("as", "g", "v"))
    if kind is None and group is None and version is None:
        return _Choice(JSON)
    if group != META_GROUP or version not in META_VERSIONS:
        return None
    if kind == "Table":
        return _Choice(Format("table", version))
    if kind in _PARTIAL_KINDS:
        return _Choice(Format("partial", version), wants_list=kind.endswith("List"))
    return None


def _fit_to_request(
    choice: _Choice, *, is_list: bool, is_watch: bool, rt: ResourceType | None
) -> Format:
    if choice.format.kind != "partial":
        return choice.format
    if is_watch:
        # A watch event holds one object: PartialObjectMetadataList cannot be made from it, and
        # the real server then falls back to sending the full object.
        return JSON if choice.wants_list else choice.format
    if is_list and not choice.wants_list:
        raise _transform_error(
            "you requested PartialObjectMetadata, but the requested object is a list "
            f"({_go_type(rt, is_list=True)})"
        )
    if not is_list and choice.wants_list:
        raise _transform_error(
            "you requested PartialObjectMetadataList, but the requested object is not a list "
            f"({_go_type(rt, is_list=False)})"
        )
    return choice.format


def _transform_error(message: str) -> StatusError:
    # The real server's errNotAcceptable carries no details.
    return StatusError(406, "NotAcceptable", message)


# Internal API packages that hold each built-in group's Go types, for %T in messages.
_GO_PACKAGES = {
    "": "core",
    "apps": "apps",
    "batch": "batch",
    "policy": "policy",
    "autoscaling": "autoscaling",
    "rbac.authorization.k8s.io": "rbac",
    "storage.k8s.io": "storage",
    "networking.k8s.io": "networking",
    "scheduling.k8s.io": "scheduling",
    "node.k8s.io": "node",
    "coordination.k8s.io": "coordination",
    "discovery.k8s.io": "discovery",
    "events.k8s.io": "core",
    "certificates.k8s.io": "certificates",
    "admissionregistration.k8s.io": "admissionregistration",
    "apiextensions.k8s.io": "apiextensions",
    "flowcontrol.apiserver.k8s.io": "flowcontrol",
    "metrics.k8s.io": "metrics",
}


def _go_type(rt: ResourceType | None, *, is_list: bool) -> str:
    suffix = "List" if is_list else ""
    if rt is None or rt.group not in _GO_PACKAGES:
        return f"*unstructured.Unstructured{suffix}"
    return f"*{_GO_PACKAGES[rt.group]}.{rt.kind}{suffix}"
