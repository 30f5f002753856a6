"""Tables of custom resources: apiextensions' convertor over a CRD's additionalPrinterColumns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import clock
from tenant_proxy.emulator.field_docs import CREATED_DOC
from tenant_proxy.emulator.printer import NAME, Column, Printer
from tenant_proxy.emulator.types import KubeObject


def custom_resource_printer(printer_columns: Sequence[Mapping[str, Any]]) -> Printer:
    """apiextensions' convertor: Name, then the CRD's columns (Age when it declares none)."""
    specs = list(printer_columns) or [
        {
            "name": "Age",
            "type": "date",
            "description": CREATED_DOC,
            "jsonPath": ".metadata.creationTimestamp",
        }
    ]
    columns = (NAME, *(_crd_column(s) for s in specs))

    def cells(obj: KubeObject, now: datetime) -> list[Any]:
        name = obj.get("metadata", {}).get("name", "")
        return [name, *(_crd_cell(s, obj, now) for s in specs)]

    return Printer(columns, cells)


def _crd_column(spec: Mapping[str, Any]) -> Column:
    return Column(
        name=str(spec.get("name", "")),
        description=str(spec.get("description", "")),
        type=str(spec.get("type", "string")),
        format=str(spec.get("format", "")),
        priority=int(spec.get("priority", 0)),
    )


def _crd_cell(spec: Mapping[str, Any], obj: KubeObject, now: datetime) -> Any:
    found, value = json_path(obj, str(spec.get("jsonPath", "")))
    if not found or value is None:
        return None
    return _typed_cell(str(spec.get("type", "string")), value, now)


def json_path(obj: Any, path: str) -> tuple[bool, Any]:
    """The first value a CRD column's simple JSONPath (`.a.b[0]`, `[?(@.k=="v")]`) selects."""
    current = obj
    for step in _path_steps(path.strip().removeprefix("{").removesuffix("}")):
        found, current = _step(current, step)
        if not found:
            return False, None
    return True, current


def _path_steps(path: str) -> list[str]:
    """`.a.b[0][?(@.c=="d")]` -> `a`, `b`, `[0]`, `[?(@.c=="d")]` (brackets kept whole)."""
    steps: list[str] = []
    rest = path
    while rest:
        if rest.startswith("["):
            end = rest.find("]")
            end = len(rest) - 1 if end < 0 else end
            steps.append(rest[: end + 1])
            rest = rest[end + 1 :]
            continue
        rest = rest.removeprefix(".")
        cut = min((i for i in (rest.find("."), rest.find("[")) if i >= 0), default=len(rest))
        if rest[:cut]:
            steps.append(rest[:cut])
        rest = rest[cut:]
    return steps


def _step(current: Any, step: str) -> tuple[bool, Any]:
    if step.startswith("[") and step.endswith("]"):
        return _index_step(current, step[1:-1])
    if isinstance(current, Mapping) and step in current:
        return True, current[step]
    return False, None


def _index_step(current: Any, selector: str) -> tuple[bool, Any]:
    if not isinstance(current, list):
        return False, None
    if selector.startswith("?(@.") and selector.endswith(")") and "==" in selector:
        key, _, wanted = selector[4:-1].partition("==")
        wanted = wanted.strip().strip("'\"")
        for item in current:
            if isinstance(item, Mapping) and str(item.get(key.strip())) == wanted:
                return True, item
        return False, None
    if selector.lstrip("-").isdigit() and -len(current) <= int(selector) < len(current):
        return True, current[int(selector)]
    return False, None


def _typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """apiextensions' cellForJSONValue: a value of the wrong type gives an empty (null) cell."""
    if column_type == "string":
        return value if isinstance(value, str) else _json_text(value)
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return clock.age(value, now) if clock.parse_timestamp(value) else "<invalid>"
    return None


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)
    )
