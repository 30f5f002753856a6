"""PATCH bodies: JSON merge patch, JSON patch, and a strategic merge patch. Pure.

The strategic merge patch here is a merge patch that understands the directives kubectl sends
(`$patch: delete|replace`, `$retainKeys`, `$setElementOrder/...`, `$deleteFromPrimitiveList/...`)
and merges lists of objects by `name` (containers, env, volumes, ports...) when every element
has one; other lists are replaced, as in a merge patch. That covers what kubectl apply, label,
annotate and edit send for the kinds the emulator serves.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


class PatchError(ValueError):
    """A patch that cannot be applied (answered as 422 or 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _named_list(items: Any) -> bool:
    return (
        isinstance(items, list)
        and bool(items)
        and all(isinstance(i, dict) and "name" in i for i in items)
    )


def _merge_named_lists(target: list[Any], patch: list[Any]) -> list[Any]:
    out = [copy.deepcopy(i) for i in target]
    index = {i["name"]: n for n, i in enumerate(out)}
    for item in patch:
        directive = item.get("$patch")
        if directive == "delete":
            out = [i for i in out if i["name"] != item["name"]]
            index = {i["name"]: n for n, i in enumerate(out)}
        elif item["name"] in index:
            out[index[item["name"]]] = strategic_merge_patch(out[index[item["name"]]], item)
        else:
            index[item["name"]] = len(out)
            out.append(strategic_merge_patch({}, item))
    return out


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch (see the module docstring for what is supported)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "delete":
        return None
    base = {} if patch.get("$patch") == "replace" else target
    result = dict(base) if isinstance(base, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif _named_list(value) and _named_list(result.get(key)):
            result[key] = _merge_named_lists(result[key], value)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError(f"doc is missing path: /{'/'.join(parts)}")
    return cur


def _get(doc: Any, path: str) -> Any:
    return _container(doc, _pointer(path))


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the root")
    parent = _container(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"unable to remove nonexistent key: {last}: missing value")


def _add(doc: Any, path: str, value: Any, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _container(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise PatchError(f"unable to access invalid index: {last}")
    else:
        raise PatchError(f"doc is missing path: {path}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op["op"], str(op.get("path", ""))
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, str(op.get("from", ""))))
        elif kind == "copy":
            doc = _add(doc, path, _get(doc, str(op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


def three_way_patch(previous: Any, manifest: Any) -> Any:
    """The merge patch `kubectl apply` amounts to: the manifest, plus a null for every field
    the previously applied manifest had and this one dropped (so other writers' fields stay)."""
    if not isinstance(manifest, dict):
        return copy.deepcopy(manifest)
    before = previous if isinstance(previous, dict) else {}
    out: dict[str, Any] = {}
    for key, value in manifest.items():
        out[key] = three_way_patch(before.get(key), value) if isinstance(value, dict) else value
    for key in before:
        if key not in manifest:
            out[key] = None
    return out


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    """The patched document for a supported PATCH content type."""
    if content_type == MERGE:
        return merge_patch(target, patch)
    if content_type == STRATEGIC:
        return strategic_merge_patch(target, patch)
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    raise PatchError(f"unsupported patch type {content_type}")
