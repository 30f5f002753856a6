"""Turning a tenant's rule into an upstream label selector, when it can be one.

A list or get whose rule is a label selector is answered by the API server itself: the rule is
ANDed into the client's `labelSelector` and the answer streams through untouched (pagination,
resourceVersion and every format keep working). Rules that are not selectors are rewritten.

Namespaces by name become `kubernetes.io/metadata.name in (...)` (the label the API server sets on
every namespace and keeps equal to its name, capsule-proxy's trick). Above `MAX_SELECTOR_BYTES`
the selector would risk the API server's and intermediaries' URL limits (8 KiB request line is a
common proxy default), so it falls back to rewriting.

Watches are never pushed down (that would freeze the tenant's set at watch start): they are
served from the watch cache, which follows tenancy changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenant_proxy.kube.labels import (
    Op,
    Requirement,
    Selector,
    SelectorError,
    and_selectors,
    validate_value,
)
from tenant_proxy.kube.resources import NAMESPACES, GroupResource
from tenant_proxy.kube.selector_syntax import parse_selector
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.tenancy.rules import Criteria

NAME_LABEL = "kubernetes.io/metadata.name"
MAX_SELECTOR_BYTES = 6 * 1024


@dataclass(frozen=True)
class PushDown:
    """Ask upstream with this labelSelector (the client's ANDed with the rule's)."""

    label_selector: str


@dataclass(frozen=True)
class Nothing:
    """The rule matches no object at all: answer an empty list without asking upstream."""


@dataclass(frozen=True)
class Rewrite:
    """The rule is not a selector: read upstream and filter the answer with owns()."""


Decision = PushDown | Nothing | Rewrite
RuleSelector = Selector | Nothing | None


def pushdown(rule_selector: str | None, client_selector: str | None) -> str | None:
    """The selector matching what both match; None when the rule is no selector (rewrite).

    Raises SelectorError for a selector the API server would refuse: the caller answers 400
    itself, so the tenant's own requirement never shows in an upstream error message.
    """
    if rule_selector is None:
        return None
    both = and_selectors(parse_selector(rule_selector), parse_selector(client_selector or ""))
    return str(both)


def rule_selector(view: TenantView, gr: GroupResource) -> RuleSelector:
    """The rule for `gr` as one selector, Nothing when it matches nothing, None otherwise."""
    live = [c for c in view.rules.get(gr, ()) if not c.matches_nothing()]
    if not live:
        return Nothing()
    selectors = {c.selector for c in live if c.selector_only()}
    if len(selectors) == 1 and all(c.selector_only() for c in live):
        return selectors.pop()
    if gr == NAMESPACES and all(c.names_only() for c in live):
        return _name_selector(live)
    return None


def _name_selector(live: list[Criteria]) -> Selector | Nothing | None:
    # A string that is no valid label value cannot name a namespace either (namespace names are
    # DNS labels); leaving it out keeps one bad config entry from turning every list into a 400.
    names = tuple(sorted(n for n in frozenset().union(*(c.names for c in live)) if _is_value(n)))
    if not names:
        return Nothing()
    selector = Selector((Requirement(NAME_LABEL, Op.IN, names),))
    return selector if len(str(selector).encode()) <= MAX_SELECTOR_BYTES else None


def _is_value(name: str) -> bool:
    try:
        validate_value(name)
    except SelectorError:
        return False
    return bool(name)


def plan_read(view: TenantView, gr: GroupResource, client_selector: str | None) -> Decision:
    """How to serve a list/get of a filtered resource. Raises SelectorError (→ 400)."""
    rule = rule_selector(view, gr)
    client = parse_selector(client_selector or "")
    if isinstance(rule, Nothing):
        return rule
    if rule is None:
        return Rewrite()
    return PushDown(str(and_selectors(rule, client)))
