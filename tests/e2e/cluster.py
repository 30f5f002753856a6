"""Admin actions on the cluster behind the proxy, with kubernetes_asyncio's dynamic client.

The same calls work against the emulator and against a real cluster, so the end-to-end tests that
change the world run unchanged on both (TENANT_PROXY_E2E_KUBECONFIG).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

MERGE = "application/merge-patch+json"


class Cluster:
    """An admin's view of the cluster: create, apply, patch, delete any kind by apiVersion/kind."""

    def __init__(self, api: ApiClient, dynamic: DynamicClient) -> None:
        self._api, self._dynamic = api, dynamic
        self.created: list[tuple[str, str, str, str]] = []

    async def remove_created(self) -> None:
        """Delete what `create` made, newest first (a test leaves a real cluster as it was)."""
        while self.created:
            await self.purge(*self.created.pop())

    @classmethod
    async def connect(cls, kubeconfig: Path) -> Cluster:
        api = await config.new_client_from_config(config_file=str(kubeconfig))
        return cls(api, await DynamicClient(api))

    async def close(self) -> None:
        await self._api.close()

    async def _resource(self, api_version: str, kind: str) -> Any:
        return await self._dynamic.resources.get(api_version=api_version, kind=kind)

    async def create(self, obj: dict[str, Any]) -> Any:
        resource = await self._resource(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace")
        created = await self._dynamic.create(resource, body=obj, namespace=namespace)
        self.created.append(
            (obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace or "")
        )
        return created

    async def list(
        self, api_version: str, kind: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Every object of a kind (all namespaces), as plain dicts."""
        resource = await self._resource(api_version, kind)
        found = await self._dynamic.get(resource, label_selector=label_selector or None)
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
        return await self._dynamic.patch(
            resource, name=name, namespace=namespace or None, body=body, content_type=MERGE
        )

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

    async def names(self, api_version: str, kind: str, namespace: str = "") -> list[str]:
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

    async def purge(
        self, api_version: str, kind: str, name: str, namespace: str = "", within: float = 60
    ) -> None:
        """Delete and wait until gone: finalizers are dropped first, since a test cluster may
        lack the controller that would remove them (pv-protection), and the next test needs
        the name free."""
        resource = await self._resource(api_version, kind)
        ns = namespace or None
        try:
            await self._dynamic.patch(
                resource,
                name=name,
                namespace=ns,
                body={"metadata": {"finalizers": None}},
                content_type=MERGE,
            )
            await self._dynamic.delete(resource, name=name, namespace=ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return
        async with asyncio.timeout(within):
            while not await self._gone(resource, name, ns):
                await asyncio.sleep(0.2)  # polling for the deletion, bounded by `within`

    async def _gone(self, resource: Any, name: str, namespace: str | None) -> bool:
        try:
            found = await self._dynamic.get(resource, name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        # kubernetes_asyncio's dynamic client answers some 404s as a Status instead of raising.
        return bool(getattr(found, "kind", None) == "Status" and getattr(found, "code", 0) == 404)
