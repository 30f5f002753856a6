"""Admin actions on the cluster behind the proxy, with kubernetes_asyncio's dynamic client.

The same calls work against the emulator and against a real cluster, so the end-to-end tests that
change the world run unchanged on both (TENANT_PROXY_E2E_KUBECONFIG). What the emulator does at
once a real cluster does later, through its controllers, so every wait here is on the condition
a real API server shows, polled with a generous bound: a CRD is used once it is `Established` and
discovery serves it; a deleted object is gone once a read says 404 (a namespace stays
`Terminating` while the namespace controller empties it).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

MERGE = "application/merge-patch+json"
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
# Finalizers whose controllers only wait for the object to be unused; a test cluster may not run
# them, and nothing a test made is in use. Any other finalizer is left to its controller (a
# CRD's cleanup finalizer deletes its objects: dropping it would orphan them in storage).
PROTECTION_FINALIZERS = frozenset({"kubernetes.io/pv-protection", "kubernetes.io/pvc-protection"})
# A real cluster's controllers: the namespace controller takes seconds to a minute or more.
CRD_SERVED_WITHIN = 60.0
GONE_WITHIN = 300.0
POLL_SECONDS = 0.25

Key = tuple[str, str, str, str]  # apiVersion, kind, name, namespace ("" when cluster-scoped)
T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T | None]], what: str, within: float, every: float = POLL_SECONDS
) -> T:
    """Poll `check` until it returns a value (not None); TimeoutError naming `what` after
    `within` seconds. Polling, not a watch: it reads what any client would, and needs no
    resumption logic for a condition that holds once reached."""
    try:
        async with asyncio.timeout(within):
            while True:
                found = await check()
                if found is not None:
                    return found
                await asyncio.sleep(every)  # the poll interval, bounded by `within`
    except TimeoutError:
        raise TimeoutError(f"{what}: not within {within:g} s") from None


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace") or ""


def checked(answer: Any) -> Any:
    """`answer`, or ApiException if it is a failure Status: kubernetes_asyncio's dynamic client
    reads bodies unparsed (`_preload_content=False`), so it returns a refusal (404, 409, 422)
    as a Status object instead of raising it."""
    if getattr(answer, "kind", None) == "Status" and getattr(answer, "status", None) == "Failure":
        exc = ApiException(status=int(answer.code), reason=str(answer.reason))
        exc.body = str(answer.message).encode()
        raise exc
    return answer


class CheckedClient:
    """The dynamic client's calls this module makes, each answer `checked`."""

    def __init__(self, dynamic: DynamicClient) -> None:
        self.resources = dynamic.resources
        self._dynamic = dynamic

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        return checked(await self._dynamic.create(*args, **kwargs))

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return checked(await self._dynamic.get(*args, **kwargs))

    async def patch(self, *args: Any, **kwargs: Any) -> Any:
        return checked(await self._dynamic.patch(*args, **kwargs))

    async def replace(self, *args: Any, **kwargs: Any) -> Any:
        return checked(await self._dynamic.replace(*args, **kwargs))

    async def delete(self, *args: Any, **kwargs: Any) -> Any:
        return checked(await self._dynamic.delete(*args, **kwargs))

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        return checked(await self._dynamic.request(*args, **kwargs))


class Cluster:
    """An admin's view of the cluster: create, apply, patch, delete any kind by apiVersion/kind."""

    def __init__(self, api: ApiClient, dynamic: DynamicClient) -> None:
        self._api, self._dynamic = api, CheckedClient(dynamic)
        self.created: list[Key] = []
        self.patched: list[Key] = []

    async def remove_created(self, within: float = GONE_WITHIN) -> None:
        """Delete what `create` made, newest first, then wait until all of it is gone (a test
        leaves a real cluster as it was, and the next one may reuse the names)."""
        made, self.created = self.created, []
        for key in reversed(made):
            await self.delete_now(*key)
        await asyncio.gather(*(self.wait_gone(*key, within=within) for key in made))

    @classmethod
    async def connect(cls, kubeconfig: Path) -> Cluster:
        api = await config.new_client_from_config(config_file=str(kubeconfig))
        return cls(api, await DynamicClient(api))

    async def close(self) -> None:
        await self._api.close()

    async def _resource(self, api_version: str, kind: str) -> Any:
        return await self._dynamic.resources.get(api_version=api_version, kind=kind)

    async def create(self, obj: dict[str, Any]) -> Any:
        """Create; a CRD is returned only once it can be used (Established, and served)."""
        resource = await self._resource(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace")
        created = await self._dynamic.create(resource, body=obj, namespace=namespace)
        self.created.append(key_of(obj))
        if (obj["apiVersion"], obj["kind"]) == CRD:
            await self.wait_crd_served(obj["metadata"]["name"])
        return created

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str = ""
    ) -> dict[str, Any] | None:
        """The object as a plain dict, or None if there is none."""
        resource = await self._resource(api_version, kind)
        try:
            found = await self._dynamic.get(resource, name=name, namespace=namespace or None)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        as_dict: dict[str, Any] = found.to_dict()
        return as_dict

    async def list(
        self, api_version: str, kind: str, label_selector: str = "", namespace: str = ""
    ) -> list[dict[str, Any]]:
        """Every object of a kind (all namespaces, or `namespace`), as plain dicts."""
        resource = await self._resource(api_version, kind)
        found = await self._dynamic.get(
            resource, namespace=namespace or None, label_selector=label_selector or None
        )
        return [item.to_dict() for item in found.items]

    async def apply(self, obj: dict[str, Any]) -> Any:
        """Create, or merge into what exists (enough for test fixtures' own objects)."""
        try:
            return await self.create(obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
        meta = obj["metadata"]
        return await self.patch(
            obj["apiVersion"], obj["kind"], meta["name"], obj, meta.get("namespace", "")
        )

    async def patch(
        self, api_version: str, kind: str, name: str, body: dict[str, Any], namespace: str = ""
    ) -> Any:
        resource = await self._resource(api_version, kind)
        self.patched.append((api_version, kind, name, namespace))
        return await self._dynamic.patch(
            resource, name=name, namespace=namespace or None, body=body, content_type=MERGE
        )

    async def replace(self, obj: dict[str, Any]) -> Any:
        resource = await self._resource(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace") or None
        return await self._dynamic.replace(resource, body=obj, namespace=namespace)

    async def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A TokenRequest for a ServiceAccount (what `kubectl create token` does)."""
        answer = await self._dynamic.request(
            "post",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return str(answer.status.token)

    async def allowed(
        self, user: str, groups: builtins.list[str], attributes: dict[str, str]
    ) -> bool:
        """Whether the API server's authorizer allows `user` this (a SubjectAccessReview)."""
        answer = await self._dynamic.request(
            "post",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
            },
        )
        return bool(answer.status.allowed)

    async def names(self, api_version: str, kind: str, namespace: str = "") -> builtins.list[str]:
        """The names of every object of a kind (in `namespace`, when given)."""
        resource = await self._resource(api_version, kind)
        listed = await self._dynamic.get(resource, namespace=namespace or None)
        return [str(item.metadata.name) for item in listed.items]

    async def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        resource = await self._resource(api_version, kind)
        try:
            await self._dynamic.delete(resource, name=name, namespace=namespace or None)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_now(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        """Delete without a grace period, protection finalizers dropped first (a pod bound to a
        node no kubelet runs would otherwise stay Terminating, and keep its namespace)."""
        current = await self.get(api_version, kind, name, namespace)
        if current is None:
            return
        finalizers = current["metadata"].get("finalizers") or []
        kept = [f for f in finalizers if f not in PROTECTION_FINALIZERS]
        resource = await self._resource(api_version, kind)
        try:
            if kept != finalizers:
                await self._dynamic.patch(
                    resource,
                    name=name,
                    namespace=namespace or None,
                    body={"metadata": {"finalizers": kept or None}},
                    content_type=MERGE,
                )
            await self._dynamic.delete(
                resource, name=name, namespace=namespace or None, grace_period_seconds=0
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def wait_gone(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str = "",
        within: float = GONE_WITHIN,
    ) -> None:
        async def gone() -> bool | None:
            return True if await self.get(api_version, kind, name, namespace) is None else None

        where = f"{namespace}/" if namespace else ""
        await until(gone, f"{kind} {where}{name} to be gone", within)

    async def purge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str = "",
        within: float = GONE_WITHIN,
    ) -> None:
        """Delete and wait until gone: the next test may need the name free."""
        await self.delete_now(api_version, kind, name, namespace)
        await self.wait_gone(api_version, kind, name, namespace, within)

    async def wait_crd_served(self, name: str, within: float = CRD_SERVED_WITHIN) -> None:
        """Wait until the CRD is `Established` and discovery lists its resource.

        kube-apiserver serves a new CRD's objects only once its establishing controller set the
        condition, and lists it in discovery a moment later (the discovery controller): a
        client creating an object right after the CRD gets a 404 or, from a discovery-driven
        client, `ResourceNotFoundError`. Then the dynamic client's discovery cache is renewed.
        """

        async def established() -> dict[str, Any] | None:
            crd = await self.get(*CRD, name)
            conditions = ((crd or {}).get("status") or {}).get("conditions") or []
            ready = any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            )
            return crd if ready else None

        crd = await until(established, f"CRD {name} to be Established", within)
        spec = crd["spec"]
        plural = spec["names"]["plural"]
        versions = [v["name"] for v in spec["versions"] if v.get("served")]

        async def discovered() -> bool | None:
            for version in versions:
                try:
                    listed = await self._dynamic.request("get", f"/apis/{spec['group']}/{version}")
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise
                if plural not in {r.name for r in listed.resources}:
                    return None
            return True

        await until(discovered, f"discovery to serve {plural}.{spec['group']}", within)
        await self._dynamic.resources.invalidate_cache()
