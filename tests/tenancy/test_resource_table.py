"""The resource table: each filtered resource's row is what the settings, the three parsers and
the model read, so a class kind added as one row (csidrivers) is ruled from every source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.model import Tenant, owns, view_for
from tenant_proxy.tenancy.resource_table import BUILTIN_PATHS, RESOURCE_TABLE, FilteredResource
from tenant_proxy.tenancy.rules import ClassRule, GenericRule
from tenant_proxy.tenancy.settings import TenantSettings

CSI_DRIVERS = GroupResource("storage.k8s.io", "csidrivers")
RULE = {"names": ["a.csi.example.com"], "regex": "team-d-.*", "selector": {"csi": "team-d"}}
DAVE = Identity(user="dave", groups=())


def csi_driver(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": meta}


def from_config() -> Tenant:
    selector = {"matchLabels": RULE["selector"]}
    settings = parse_settings(
        {
            "tls": {"cert_file": "c", "key_file": "k"},
            "upstream": {"server": "https://127.0.0.1:1"},
            "tenancy": {
                "tenants": [
                    {
                        "name": "team-d",
                        "members": {"users": ["dave"]},
                        "csidrivers": {**RULE, "selector": selector},
                    }
                ]
            },
        },
        environ={},
    )
    (tenant,) = sources.tenants_from_settings(settings.tenancy.tenants)
    return tenant


def from_cr() -> Tenant:
    spec = {
        "members": {"users": ["dave"]},
        "csiDrivers": {**RULE, "selector": {"matchLabels": RULE["selector"]}},
    }
    return sources.tenant_from_cr({"metadata": {"name": "team-d"}, "spec": spec})


@pytest.mark.parametrize("source", [from_config, from_cr], ids=["config", "tenant-cr"])
@pytest.mark.parametrize(
    ("obj", "owned"),
    [
        (csi_driver("a.csi.example.com"), True),  # by name
        (csi_driver("team-d-local"), True),  # by regex
        (csi_driver("labelled.example.com", {"csi": "team-d"}), True),  # by selector
        (csi_driver("xteam-d-local"), False),  # the regex matches whole names only
        (csi_driver("b.csi.example.com", {"csi": "team-e"}), False),
    ],
)
def test_csi_drivers_are_ruled_by_name_regex_and_selector_from_each_source(
    source: Callable[[], Tenant], obj: dict[str, Any], owned: bool
) -> None:
    tenant = source()
    assert isinstance(tenant.rules[CSI_DRIVERS], ClassRule)
    view = view_for(DAVE, [tenant], {})
    assert view is not None
    assert owns(view, CSI_DRIVERS, obj) is owned


def test_a_tenant_without_a_csi_driver_rule_leaves_them_unfiltered() -> None:
    tenant = sources.tenant_from_cr(
        {"metadata": {"name": "team-d"}, "spec": {"members": {"users": ["dave"]}}}
    )
    view = view_for(DAVE, [tenant], {})
    assert view is not None
    assert not view.filters(CSI_DRIVERS)


def test_a_broken_csi_driver_rule_refuses_the_tenant_whole() -> None:
    with pytest.raises(sources.TenantSpecError, match=r"spec\.csiDrivers\.regex"):
        sources.tenant_from_cr({"metadata": {"name": "t"}, "spec": {"csiDrivers": {"regex": "("}}})


def test_csi_drivers_are_read_where_the_api_server_serves_them() -> None:
    assert BUILTIN_PATHS[CSI_DRIVERS] == "/apis/storage.k8s.io/v1/csidrivers"


@pytest.mark.parametrize("row", [r for r in RESOURCE_TABLE if r.cr_key], ids=str)
def test_each_rows_tenant_cr_key_gives_its_rule_kind(row: FilteredResource) -> None:
    value: object = {"matchLabels": {"a": "b"}} if row.settings_key == "node_selector" else {}
    if row.settings_key == "crd_api_groups":
        value = ["x.example.com"]
    tenant = sources.tenant_from_spec("t", {row.cr_key: value} if row.cr_key else {})
    assert type(tenant.rules[row.gr]) is row.rule


@pytest.mark.parametrize("row", [r for r in RESOURCE_TABLE if r.settings_key], ids=str)
def test_each_rows_settings_key_is_a_config_tenant_field_written_to_its_cr_key(
    row: FilteredResource,
) -> None:
    assert row.settings_key in TenantSettings.model_fields
    assert row.cr_key is not None


def test_a_generic_rule_still_serves_a_table_resource() -> None:
    # Before csidrivers had a row, tenants ruled them with a generic rule: that keeps working.
    spec = {"resources": [{"group": "storage.k8s.io", "resource": "csidrivers", "names": ["x"]}]}
    tenant = sources.tenant_from_spec("t", spec)
    assert isinstance(tenant.rules[CSI_DRIVERS], GenericRule)
