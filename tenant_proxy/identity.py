"""The authenticated caller: who the proxy impersonates upstream.

Pure: no I/O. Every authentication method produces one `Identity`; the proxy turns it into
`Impersonate-*` headers. An empty user would mean *no* impersonation upstream (the request
would run with the proxy's own rights), so the constructor refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

METHODS = frozenset({"x509", "oidc", "tokenreview", "static", "front-proxy", "anonymous"})
"""The values `Identity.method` may take ("" when the producer did not say)."""


def _frozen_extra(extra: Mapping[str, Iterable[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({str(k): tuple(str(v) for v in vs) for k, vs in extra.items()})


@dataclass(frozen=True)
class Identity:
    """An authenticated caller, as kube-apiserver's user.Info.

    Hashable (extra is left out of the hash, not out of equality) so it can key caches.
    """

    user: str
    """The user name; never empty or whitespace."""
    groups: tuple[str, ...] = ()
    """Group names, in the order the credential gave them, without duplicates."""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    """Extra attributes (key -> values), e.g. OIDC scopes or a front proxy's X-Remote-Extra-*."""
    uid: str = ""
    """A stable unique id when the method provides one (TokenReview, static tokens)."""
    method: str = ""
    """How the caller authenticated: one of METHODS, for logs and metrics."""

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user.strip():
            raise ValueError("an identity's user may not be empty")
        if self.method and self.method not in METHODS:
            raise ValueError(f"unknown authentication method {self.method!r}")
        # Normalise here so every producer yields the same shape and nothing shares a mutable.
        object.__setattr__(self, "groups", tuple(dict.fromkeys(str(g) for g in self.groups)))
        object.__setattr__(self, "extra", _frozen_extra(self.extra))


ANONYMOUS = Identity(
    user="system:anonymous", groups=("system:unauthenticated",), method="anonymous"
)
"""The caller without credentials, when anonymous access is configured."""
