"""Audit events in Kubernetes' own format (`audit.k8s.io/v1` Event), and the policy that picks
which requests get one. Pure: facts and a clock reading in, JSON-ready dicts out.

The shape follows `k8s.io/apiserver/pkg/apis/audit/v1/types.go`, so SIEM pipelines and Falco's
k8saudit plugin read the proxy's lines as they read kube-apiserver's. Only the `None` and
`Metadata` levels exist here: the proxy never writes request or response bodies to its logs.
Stages: `RequestReceived` once the caller is authenticated, `ResponseStarted` when a
long-running answer (watch, exec/attach/port-forward) starts, `ResponseComplete` at its end; a
request refused before anyone was authenticated gets one `ResponseStarted` event with an empty
user, as kube-apiserver's failed-authentication audit writes it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["None", "Metadata"]
Stage = Literal["RequestReceived", "ResponseStarted", "ResponseComplete"]

ANNOTATION_TENANTS = "tenant-proxy.io/tenants"
ANNOTATION_HIDDEN = "tenant-proxy.io/hidden-objects"
ANNOTATION_DECISION = "tenant-proxy.io/decision"
ANNOTATION_AUTHENTICATION = "tenant-proxy.io/authentication"


def long_running(verb: str, code: int) -> bool:
    """A watch, or an upgraded connection (exec, attach, port-forward): kube-apiserver's
    long-running requests, the ones with a ResponseStarted stage."""
    return verb == "watch" or code == 101


@dataclass(frozen=True)
class Rule:
    """One policy rule: it matches when each of its non-empty lists names the request's."""

    level: Level
    verbs: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()  # "nodes", "storageclasses.storage.k8s.io"

    def matches(self, verb: str, resource: str) -> bool:
        return (not self.verbs or verb in self.verbs) and (
            not self.resources or resource in self.resources
        )


@dataclass(frozen=True)
class Policy:
    """Rules in order, the first match decides (as kube-apiserver's audit Policy); else
    `default`."""

    rules: tuple[Rule, ...] = ()
    default: Level = "Metadata"

    def level(self, verb: str, resource: str) -> Level:
        for rule in self.rules:
            if rule.matches(verb, resource):
                return rule.level
        return self.default


@dataclass
class Facts:
    """What an event says about one request (filled in as the request goes along)."""

    audit_id: str
    request_uri: str
    verb: str
    received: dt.datetime
    source_ips: list[str] = field(default_factory=list)
    user_agent: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    impersonated_user: dict[str, Any] | None = None
    object_ref: dict[str, str] | None = None
    code: int = 0
    reason: str = ""
    message: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


def source_ips(forwarded_for: str | None, real_ip: str | None, remote: str) -> list[str]:
    """`sourceIPs` as kube-apiserver fills it (apimachinery util/net `SourceIPs`): every valid
    address of the first X-Forwarded-For line, X-Real-Ip unless the chain holds it, then the
    peer's address unless it is the chain's last. Only the last is the proxy's to vouch for."""
    chain = [ip for part in (forwarded_for or "").split(",") if (ip := _ip(part)) is not None]
    real = _ip(real_ip or "")
    if real is not None and real not in chain:
        chain.append(real)
    peer = _ip(remote)
    if peer is not None and (not chain or chain[-1] != peer):
        chain.append(peer)
    return [str(ip) for ip in chain]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # Go keeps an IPv4 address in its 16-byte form and prints it as IPv4.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def micro_time(moment: dt.datetime) -> str:
    """metav1.MicroTime as kube-apiserver writes it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user_info(
    username: str,
    groups: Iterable[str] = (),
    uid: str = "",
    extra: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """An authentication.k8s.io/v1 UserInfo, empty fields left out as the API server does."""
    info: dict[str, Any] = {"username": username} if username else {}
    if uid:
        info["uid"] = uid
    if groups := list(groups):
        info["groups"] = groups
    if extra:
        info["extra"] = {k: list(v) for k, v in extra.items()}
    return info


def object_ref(
    resource: str, namespace: str, name: str, group: str, version: str, subresource: str
) -> dict[str, str]:
    """The event's objectRef, without empty fields."""
    ref = {
        "resource": resource,
        "namespace": namespace,
        "name": name,
        "apiGroup": group,
        "apiVersion": version,
        "subresource": subresource,
    }
    return {k: v for k, v in ref.items() if v}


def response_status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status for the event: the code, and for a failure what the proxy knows of it."""
    doc: dict[str, Any] = {"metadata": {}, "code": code}
    if code >= 400:
        doc["status"] = "Failure"
        if reason:
            doc["reason"] = reason
        if message:
            doc["message"] = message
    return doc


def event(facts: Facts, stage: Stage, now: dt.datetime) -> dict[str, Any]:
    """The audit.k8s.io/v1 Event of `facts` at `stage` (Metadata level)."""
    doc: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": facts.audit_id,
        "stage": stage,
        "requestURI": facts.request_uri,
        "verb": facts.verb,
        "user": facts.user,
        "sourceIPs": facts.source_ips,
    }
    if facts.impersonated_user is not None:
        doc["impersonatedUser"] = facts.impersonated_user
    if facts.user_agent:
        doc["userAgent"] = facts.user_agent
    if facts.object_ref:
        doc["objectRef"] = facts.object_ref
    if stage != "RequestReceived":
        doc["responseStatus"] = response_status(facts.code, facts.reason, facts.message)
    doc["requestReceivedTimestamp"] = micro_time(facts.received)
    doc["stageTimestamp"] = micro_time(now)
    if facts.annotations:
        doc["annotations"] = dict(facts.annotations)
    return doc
