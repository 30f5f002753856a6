"""Who may open a connection, and when its TLS handshake may start. Pure: the caller passes
the clock, and nothing here touches a socket."""

from __future__ import annotations

from collections import Counter, OrderedDict


class ConnectionCounts:
    """Open connections of one listener, in total and per client address."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self._max_total, self._max_per_address = max_total, max_per_address
        self._by_address: Counter[str] = Counter()
        self.total = 0

    def admit(self, address: str) -> str | None:
        """Count a new connection in; or the reason it is refused (and it is not counted)."""
        if self.total >= self._max_total:
            return "listener_cap"
        if self._max_per_address and self._by_address[address] >= self._max_per_address:
            return "address_cap"
        self.total += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]


class HandshakeRate:
    """A token bucket of TLS handshakes per client address: `burst` at once, then `rate` per
    second; a connection beyond that waits for its turn rather than being refused.

    A handshake costs the event loop about half a millisecond of CPU (ECDHE, the server's
    signature, the client certificate's), while a client pays about as much: without a bound,
    one address reconnecting in a loop (a refused body closes its connection) takes a large
    share of the loop from every other tenant. Waiting, unlike a refusal, does not make such a
    client reconnect at once and spin; it is nginx's `limit_req` with a burst, applied to
    connections. Only addresses whose bucket is not full are kept, in the order last seen, so
    an address is forgotten at most `burst / rate + max_wait` seconds after its last turn.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        # address -> (tokens left, when counted); a negative count is turns promised ahead.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def reserve(self, address: str, now: float, max_wait: float) -> float | None:
        """Seconds until this address's next handshake may start, its turn taken; None (and
        nothing taken) when that would be longer than `max_wait`. Always 0 with no rate."""
        if self._rate <= 0:
            return 0.0
        self._forget_full(now)
        tokens, then = self._buckets.pop(address, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate) - 1
        wait = max(0.0, -tokens / self._rate)
        refused = wait > max_wait
        if refused:
            tokens += 1  # the turn is not taken
        if tokens < self._burst:
            self._buckets[address] = (tokens, now)
        return None if refused else wait

    def _forget_full(self, now: float) -> None:
        # In the order last seen: the first bucket still filling up ends the pass.
        while self._buckets:
            address, (tokens, then) = next(iter(self._buckets.items()))
            if tokens + (now - then) * self._rate < self._burst:
                return
            del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)
