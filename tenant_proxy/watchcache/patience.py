"""How long a consistent read of one resource waits for the watch cache to catch up.

A consistent read may be answered from the cache once the cache has heard the resource's own
stream up to the API server's current resourceVersion. kube-apiserver >= 1.31 gets there by
asking etcd for a progress notification; before that (v1.24 here) nobody can ask: the cache of a
quiet resource hears the current revision only through that resource's own events and the
bookmarks its cacher sends about once a minute (`cacheWatcher.nextBookmarkTime` in
k8s.io/apiserver/pkg/storage/cacher; their resourceVersion is the cacher's, which moves with
etcd's progress notifications, 10 minutes apart by default). On a busy cluster every other write
moves the revision on, so such a read would wait its whole budget in vain before going upstream.

So waiting is kept for the resources where it pays: after `misses` waits in a row that did not
catch up, a read of that resource only checks (no wait: answered from the cache if it is
already there, else upstream at once), and one read in `retry_every` waits again to learn
whether waiting pays once more. Any read that catches up restores the full wait. Pure: no I/O,
no clock.
"""

from __future__ import annotations

from collections.abc import Hashable


class Patience:
    """Per resource: how long its next consistent read waits, learned from the last ones."""

    def __init__(self, budget: float, misses: int = 3, retry_every: int = 16) -> None:
        self.budget, self._misses, self._retry_every = budget, misses, retry_every
        self._streak: dict[Hashable, int] = {}
        self._since_try: dict[Hashable, int] = {}

    def wait_for(self, resource: Hashable) -> float:
        """Seconds the next consistent read of `resource` waits for the cache."""
        if self._streak.get(resource, 0) < self._misses:
            return self.budget
        checks = self._since_try.get(resource, 0) + 1
        if checks >= self._retry_every:
            self._since_try[resource] = 0
            return self.budget
        self._since_try[resource] = checks
        return 0.0

    def caught_up(self, resource: Hashable, caught: bool, waited: float) -> None:
        """What a read that waited `waited` seconds found. Only full waits that failed count
        as misses: a check that found the cache behind says nothing of waiting."""
        if caught:
            self._streak.pop(resource, None)
            self._since_try.pop(resource, None)
        elif waited >= self.budget:
            self._streak[resource] = self._streak.get(resource, 0) + 1
