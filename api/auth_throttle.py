"""Failed authentication, throttled per client: after too many refused tokens in a window a client is answered 429
until the oldest failure leaves the window, so guessing tokens or keys costs time.

Per process, like every pod-local limit: a client spread over N pods gets N times the budget, which still
bounds guessing. Behind the gateway every peer is the gateway itself, so the client is the address the
gateway (a configured trusted proxy) appended to X-Forwarded-For.
"""

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import lru_cache

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_CLIENTS_TRACKED = 10_000


class FailedAuthThrottle:
    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        # Oldest-touched clients first, so memory stays bounded however many addresses an attacker uses.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it is within its budget."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self._clock()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.max_failures:
            return None
        return max(1, math.ceil(failures[0] + self.window_s - now))

    def record_failure(self, client: str) -> None:
        failures = self._failures.pop(client, None) or deque(maxlen=self.max_failures)
        failures.append(self._clock())
        self._failures[client] = failures
        while len(self._failures) > MAX_CLIENTS_TRACKED:
            self._failures.popitem(last=False)


@lru_cache(maxsize=4)
def throttle_for(max_failures: int, window_s: float) -> FailedAuthThrottle:
    """One throttle per process (and configuration), shared by every request the process serves."""
    return FailedAuthThrottle(max_failures, window_s)


@lru_cache(maxsize=4)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


@lru_cache(maxsize=4096)  # asked on every request, about the few addresses that send them (a gateway's, mostly)
def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The peer, or, when the peer is a trusted proxy, the address it appended to X-Forwarded-For (its last
    entry; anything left of it came from the client and is not believed)."""
    peer = request.remote or "unknown"
    forwarded = request.headers.get("X-Forwarded-For", "").rpartition(",")[2].strip()
    if forwarded and _trusted(peer, trusted):
        return forwarded[:64]
    return peer
