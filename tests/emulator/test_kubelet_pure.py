"""The emulator's kubelets and the quantities they report, without a server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import kubelet, quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("250m", Decimal("0.25")),
        ("136343669n", Decimal("0.136343669")),
        ("1.5Gi", Decimal(1610612736)),
        ("8Gi", Decimal(8 * 1024**3)),
        ("16G", Decimal(16 * 10**9)),
        ("1e3", Decimal(1000)),
        ("2E-3", Decimal("0.002")),
        (".5", Decimal("0.5")),
        ("12Ki", Decimal(12288)),
    ],
)
def test_quantities_parse_as_apimachinery_reads_them(text: str, value: Decimal) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "abc", "5Zi", "1..2", "Gi", "1 Gi", "1e", "--1"])
def test_what_apimachinery_refuses_parses_to_none(text: str) -> None:
    assert quantity.parse(text) is None


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0"),
        (1_000_000_000, "1"),
        (250_000_000, "250m"),
        (1_250_000_000, "1250m"),
        (136_343_669, "136343669n"),
        (2_000_000_000_000, "2k"),
        (1_500, "1500n"),
        (1_000, "1u"),
    ],
)
def test_cpu_is_written_in_canonical_decimal_si(nanos: int, text: str) -> None:
    assert quantity.decimal_si(nanos) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0"),
        (512, "512"),
        (1000, "1k"),  # below 1024 apimachinery writes decimal
        (1024, "1Ki"),
        (1536, "1536"),
        (2 * 1024**3, "2Gi"),
        (1_636_851_712, "1598488Ki"),
        (1_610_612_736, "1536Mi"),
    ],
)
def test_memory_is_written_in_canonical_binary_si(size: int, text: str) -> None:
    assert quantity.binary_si(size) == text


@given(st.integers(min_value=0, max_value=10**21))
def test_canonical_cpu_reads_back_exactly_and_cannot_be_shortened(nanos: int) -> None:
    text = quantity.decimal_si(nanos)
    assert quantity.parse(text) == Decimal(nanos).scaleb(-9)
    digits = text.rstrip("numkMGTPE")
    # Canonical: no larger suffix would keep the number whole.
    assert nanos == 0 or not digits.endswith("000") or text[-1] == "E"


@given(st.integers(min_value=0, max_value=2**62))
def test_canonical_memory_reads_back_exactly(size: int) -> None:
    text = quantity.binary_si(size)
    assert quantity.parse(text) == size
    if text.endswith("i"):
        mantissa = int(text[:-2])
        assert mantissa % 1024 != 0 or text.endswith("Ei")


def test_a_node_uses_a_quarter_of_its_capacity() -> None:
    node = {"status": {"capacity": {"cpu": "3", "memory": "6Gi", "pods": "110"}}}
    assert kubelet.node_usage(node) == {"cpu": 750_000_000, "memory": 1536 * 1024**2}


@pytest.mark.parametrize(
    "status",
    [{}, {"capacity": {}}, {"capacity": {"cpu": "bad", "memory": -5}}, {"capacity": None}],
)
def test_a_node_with_no_readable_capacity_uses_nothing(status: dict[str, object]) -> None:
    assert kubelet.node_usage({"status": status}) == {"cpu": 0, "memory": 0}


def test_a_capacity_written_as_a_number_counts() -> None:
    assert kubelet.node_usage({"status": {"capacity": {"cpu": 8}}})["cpu"] == 2_000_000_000


def test_a_container_uses_what_it_requests() -> None:
    container = {"resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": 2}}}
    assert kubelet.container_usage(container) == {"cpu": 100_000_000, "memory": 1024**3}
    assert kubelet.container_usage({"name": "c"}) == {"cpu": 0, "memory": 0}


def test_a_nodes_lease_is_held_by_and_owned_by_the_node() -> None:
    node = {"metadata": {"name": "n1", "uid": "u-1"}}
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=dt.UTC)
    lease = kubelet.node_lease(node, now)
    assert lease == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "n1",
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-1"}],
        },
        "spec": {
            "holderIdentity": "n1",
            "leaseDurationSeconds": 40,
            "renewTime": "2026-01-02T03:04:05.600000Z",
        },
    }
    assert kubelet.owned_by(lease, node)
    assert not kubelet.owned_by(lease, {"metadata": {"name": "n1", "uid": "u-2"}})
    assert not kubelet.owned_by(lease, {"metadata": {"name": "n1"}})
