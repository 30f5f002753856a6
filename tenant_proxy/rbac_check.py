"""`tenant-proxy check`: which of the rights it is deployed with the proxy lacks.

The rights are those of deploy/clusterrole.yaml and deploy/role-node-leases.yaml, read from the
package's verbatim copies (tests/test_deploy.py keeps them equal). Each rule is expanded into
one (verb, group, resource) and asked of the API server as a SelfSubjectAccessReview: any
authenticated user may create those, and unlike SelfSubjectRulesReview their answer is complete
whatever authorizers the cluster chains (a webhook's rules are not listed by a rules review).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from tenant_proxy.upstream import Upstream, UpstreamError

ROLE_NAMES = {("ClusterRole", "tenant-proxy"), ("Role", "tenant-proxy-node-leases")}


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""

    def describe(self) -> str:
        """As the proxy's readiness names a refusal: `the proxy may not list persistentvolumes`."""
        name = f"{self.resource}.{self.group}" if self.group else self.resource
        name += f"/{self.subresource}" if self.subresource else ""
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"the proxy may not {self.verb} {name}{where}"

    def attributes(self) -> dict[str, str]:
        attrs = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if self.subresource:
            attrs["subresource"] = self.subresource
        if self.namespace:
            attrs["namespace"] = self.namespace
        return attrs


def permissions(roles: list[dict[str, Any]]) -> list[Permission]:
    """Every (verb, group, resource) the roles grant, in their order, without repeats."""
    found: dict[Permission, None] = {}
    for role in roles:
        namespace = (role.get("metadata") or {}).get("namespace", "")
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    # `userextras/scopes`: the extra's key is the subresource of the review.
                    base, _, sub = resource.partition("/")
                    for verb in rule.get("verbs") or []:
                        found[Permission(verb, group, base, sub, namespace)] = None
    return list(found)


def deployed_roles() -> list[dict[str, Any]]:
    text = resources.files("tenant_proxy").joinpath("data/demo-world.yaml").read_text()
    return [
        doc
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict)
        and (doc.get("kind"), (doc.get("metadata") or {}).get("name")) in ROLE_NAMES
    ]


async def allowed(upstream: Upstream, permission: Permission) -> bool:
    status, doc = await upstream.json_call(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": permission.attributes()},
        },
    )
    if status not in (200, 201):
        raise UpstreamError(f"SelfSubjectAccessReview failed with HTTP {status}")
    return bool(((doc or {}).get("status") or {}).get("allowed"))


async def missing(upstream: Upstream, wanted: list[Permission]) -> list[Permission]:
    answers = await asyncio.gather(*(allowed(upstream, p) for p in wanted))
    return [p for p, ok in zip(wanted, answers, strict=True) if not ok]


async def whoami(upstream: Upstream) -> str:
    """The proxy's identity as the API server sees it (SelfSubjectReview, `kubectl auth whoami`)."""
    status, doc = await upstream.json_call(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    if status == 401:
        raise UpstreamError("the API server refuses the proxy's credential (401)")
    if status not in (200, 201):
        # Before v1.28 only admins may create them (system:basic-user may not).
        return f"unnamed (SelfSubjectReview answered HTTP {status})"
    info = ((doc or {}).get("status") or {}).get("userInfo") or {}
    return f"user {info.get('username')!r} groups {info.get('groups') or []}"
