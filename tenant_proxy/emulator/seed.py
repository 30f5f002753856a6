"""Seed objects: multi-document YAML loaded the way `kubectl apply -f` would send it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import yaml

from tenant_proxy.emulator.types import KubeObject

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def parse_documents(text: str) -> list[KubeObject]:
    """Every object in a multi-document YAML (or JSON) text; `kind: List` items are expanded."""
    out: list[KubeObject] = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"a YAML document is not an object: {str(doc)[:80]!r}")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            out.append(doc)
    return out


def last_applied(obj: KubeObject) -> str:
    """The annotation value kubectl's client-side apply records (sorted, compact JSON + newline)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    meta["annotations"] = annotations
    return json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":")) + "\n"


def as_applied(obj: KubeObject) -> KubeObject:
    """`obj` with the last-applied-configuration annotation kubectl apply adds."""
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), LAST_APPLIED: last_applied(obj)}
    return {**obj, "metadata": meta}


def load_files(paths: Iterable[Path]) -> list[KubeObject]:
    """Objects from YAML files, in order, each as kubectl apply would send it."""
    return [as_applied(o) for p in paths for o in parse_documents(Path(p).read_text())]


def reference_world() -> list[KubeObject]:
    """The world of the k8s-reference transcripts (tenant namespaces, nodes, PVs, RBAC...)."""
    text = resources.files("tenant_proxy.emulator").joinpath("data/reference-world.yaml")
    return [as_applied(o) for o in parse_documents(text.read_text())]
