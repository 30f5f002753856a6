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


class ReconnectPacing:
    """Turns for the TLS handshakes of client addresses whose connections the proxy had to
    close unread: a token bucket per address (`burst` tokens, `rate` more per second).

    A connection closed for a body the proxy refused unread (see refused_bodies) takes a token:
    its client must make a new connection, which costs the event loop a TLS handshake (ECDHE,
    the server's signature, the client certificate: about half a millisecond) and a request.
    Back to back, that is how one client took a large share of the loop from every other
    tenant (benchmarks/abuse.py, phase (a)). While an address has less than one token, each of
    its new connections takes one too and waits for it before its handshake (the ClientHello
    stays unread in the socket): such a client is paced, and waits rather than being refused
    at once, so it does not reconnect in a tight loop. Addresses whose connections are never
    closed unread are never paced, however many they open (10,000 watches behind one NAT
    address). Only addresses whose bucket is not full are kept, in the order last seen.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        # address -> (tokens, when counted); a negative count is turns promised ahead.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def closed_unread(self, address: str, now: float) -> None:
        """One of `address`'s connections was closed for a body refused unread."""
        if self._rate > 0:
            self._store(address, self._tokens(address, now) - 1, now)

    def turn(self, address: str, now: float, max_wait: float) -> float | None:
        """Seconds a new connection from `address` waits before its handshake (its turn
        taken if it waits at all); None, and nothing taken, if that would be over `max_wait`."""
        if self._rate <= 0:
            return 0.0
        tokens = self._tokens(address, now)
        if tokens >= 1:
            self._store(address, tokens, now)
            return 0.0
        wait = (1 - tokens) / self._rate
        if wait > max_wait:
            self._store(address, tokens, now)
            return None
        self._store(address, tokens - 1, now)
        return wait

    def _tokens(self, address: str, now: float) -> float:
        self._forget_full(now)
        tokens, then = self._buckets.pop(address, (self._burst, now))
        return min(self._burst, tokens + (now - then) * self._rate)

    def _store(self, address: str, tokens: float, now: float) -> None:
        if tokens < self._burst:
            self._buckets[address] = (tokens, now)

    def _forget_full(self, now: float) -> None:
        # In the order last seen: the first bucket still filling up ends the pass.
        while self._buckets:
            address, (tokens, then) = next(iter(self._buckets.items()))
            if tokens + (now - then) * self._rate < self._burst:
                return
            del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)
