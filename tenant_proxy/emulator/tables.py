"""`meta.k8s.io` Tables and PartialObjectMetadata, as kube-apiserver renders them.

Built-in kinds get the columns of kube-apiserver's printers (pkg/printers/internalversion), which
the server always runs in wide mode, so priority-1 columns carry cells too. Kinds without a
printer get the default convertor's `Name` / `Created At`; custom resources get their CRD's
additionalPrinterColumns (or `Age` when there are none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import clock, cluster_printers, errors, workload_printers
from tenant_proxy.emulator.crd_printer import custom_resource_printer
from tenant_proxy.emulator.pod_printer import POD_PRINTER
from tenant_proxy.emulator.printer import CREATED_AT, NAME, Printer
from tenant_proxy.emulator.types import KubeObject, ResourceType

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")


def table_for(
    rt: ResourceType,
    objects: Sequence[KubeObject],
    *,
    include_object: str,
    version: str,
    list_meta: Mapping[str, Any],
    with_columns: bool,
    now: datetime,
    printer_columns: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `meta.k8s.io/<version>` Table of `objects` (one object for a get or a watch event).

    `include_object` is the request's includeObject ("" means Metadata); an unknown value is a
    400. `with_columns=False` gives `"columnDefinitions": null`, as watch events after the first.
    `printer_columns` marks a custom resource: its CRD version's additionalPrinterColumns.
    """
    if include_object not in ("", *INCLUDE_OBJECT_VALUES):
        raise errors.bad_request(f'unrecognized includeObject value: "{include_object}"')
    printer = printer_for(rt, printer_columns)
    columns = [c.definition() for c in printer.columns] if with_columns else None
    rows: list[dict[str, Any]] | None = [
        _row(rt, printer, obj, include_object, version, now) for obj in objects
    ]
    if not rows and printer is DEFAULT_PRINTER:
        # The default convertor appends to a nil slice: an empty Table has `"rows": null`.
        rows = None
    if not rows and printer.columns_from_rows:
        columns, rows = None, None
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": dict(list_meta),
        "columnDefinitions": columns,
        "rows": rows,
    }


def _row(
    rt: ResourceType,
    printer: Printer,
    obj: KubeObject,
    include_object: str,
    version: str,
    now: datetime,
) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": printer.cells(obj, now)}
    conditions = printer.conditions(obj) if printer.conditions else []
    if conditions:
        row["conditions"] = conditions
    row["object"] = _row_object(rt, obj, include_object, version)
    return row


def _row_object(
    rt: ResourceType, obj: KubeObject, include_object: str, version: str
) -> KubeObject | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        # Items of a list may be stored without their type; a row's object always has it.
        return {"kind": rt.kind, "apiVersion": rt.api_version, **obj}
    return partial_metadata(obj, version)


def partial_metadata(obj: KubeObject, version: str) -> dict[str, Any]:
    """The object reduced to its metadata, as `PartialObjectMetadata`."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj.get("metadata", {}),
    }


def partial_metadata_list(
    objs: Sequence[KubeObject], version: str, list_meta: Mapping[str, Any]
) -> dict[str, Any]:
    """A list answered as `PartialObjectMetadataList`."""
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": dict(list_meta),
        "items": [partial_metadata(obj, version) for obj in objs],
    }


def printer_for(
    rt: ResourceType, printer_columns: Sequence[Mapping[str, Any]] | None = None
) -> Printer:
    """The printer kube-apiserver uses for `rt`."""
    if printer_columns is not None:
        return custom_resource_printer(printer_columns)
    return PRINTERS.get((rt.group, rt.plural), DEFAULT_PRINTER)


def _default_cells(obj: KubeObject, now: datetime) -> list[Any]:
    meta = obj.get("metadata", {})
    created = clock.parse_timestamp(meta.get("creationTimestamp", ""))
    # Go formats a zero time as 0001-01-01T00:00:00Z.
    return [meta.get("name", ""), clock.rfc3339(created) if created else "0001-01-01T00:00:00Z"]


DEFAULT_PRINTER = Printer((NAME, CREATED_AT), _default_cells)


PRINTERS: dict[tuple[str, str], Printer] = {
    **cluster_printers.PRINTERS,
    **workload_printers.PRINTERS,
    ("", "pods"): POD_PRINTER,
}
"""Built-in printers by (group, plural); anything else gets DEFAULT_PRINTER."""
