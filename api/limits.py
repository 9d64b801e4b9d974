"""Per-client limits of an API pod: concurrent SSE streams, a read rate, and a ceiling on the pod's streams.

Who the client is: the same as for the failed sign-in throttle (api.auth_throttle.client_address): the peer,
or, when the peer is a trusted proxy (FEASTFLOW_TRUSTED_PROXIES: the gateway), the address that proxy
appended to X-Forwarded-For. What a client writes into that header itself is never believed, else one
client could pose as many.

Clients in FEASTFLOW_LIMITS_EXEMPT (loopback by default) skip the per-client limits: on the local stack
every bench and rehearsal client is 127.0.0.1 behind a gateway on 127.0.0.1, while in a cluster no
customer's address is loopback. The pod ceiling applies to everyone; it protects the pod, not fairness.
"""

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web
from aiohttp.typedefs import Middleware

from api.auth_throttle import Network, client_address
from api.errors import RateLimited, Unavailable
from api.metrics import LIMITED

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STREAM_RETRY_AFTER_S = 5
POD_FULL_RETRY_AFTER_S = 2
MAX_TRACKED_CLIENTS = 100_000  # bounds the read-rate table; the least recently seen are forgotten
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes, not client traffic


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


# Asked on every request: parsing the address each time took 8% of a pod process in a storm (py-spy).
@lru_cache(maxsize=4096)
def _in_networks(client: str, networks: tuple[Network, ...]) -> bool:
    address = _address(client)
    return address is not None and any(address in network for network in networks)


@dataclass
class Bucket:
    tokens: float
    updated: float


class ClientLimits:
    def __init__(
        self,
        *,
        streams_per_client: int,
        max_streams: int,
        reads_per_s: float,
        read_burst: int,
        trusted_proxies: tuple[Network, ...],
        exempt: tuple[Network, ...],
    ) -> None:
        self.streams_per_client = streams_per_client
        self.max_streams = max_streams
        self.reads_per_s = reads_per_s
        self.read_burst = max(read_burst, 1)
        self.trusted_proxies = trusted_proxies
        self.exempt = exempt
        self.open_streams = 0
        self._streams: dict[str, int] = {}
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def client_of(self, request: web.Request) -> str:
        return client_address(request, self.trusted_proxies)

    def is_exempt(self, client: str) -> bool:
        return _in_networks(client, self.exempt)

    def take_read(self, client: str, now: float | None = None) -> None:
        """A token bucket per client: `read_burst` at once, refilled at `reads_per_s`."""
        if self.reads_per_s <= 0:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(client, None) or Bucket(float(self.read_burst), now)
        bucket.tokens = min(float(self.read_burst), bucket.tokens + (now - bucket.updated) * self.reads_per_s)
        bucket.updated = now
        self._buckets[client] = bucket
        while len(self._buckets) > MAX_TRACKED_CLIENTS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            LIMITED.labels("read_rate").inc()
            retry_after = max(1, math.ceil((1 - bucket.tokens) / self.reads_per_s))
            raise RateLimited(
                f"more than {self.reads_per_s:g} reads a second; slow down", headers={"Retry-After": str(retry_after)}
            )
        bucket.tokens -= 1

    def open_stream(self, client: str, exempt: bool) -> None:
        if self.max_streams > 0 and self.open_streams >= self.max_streams:
            LIMITED.labels("pod_full").inc()
            raise Unavailable(
                "this pod serves as many streams as it can; retry shortly",
                code="pod_full",
                retry_after_s=POD_FULL_RETRY_AFTER_S,
            )
        held = self._streams.get(client, 0)
        if not exempt and self.streams_per_client > 0 and held >= self.streams_per_client:
            LIMITED.labels("streams_per_client").inc()
            raise RateLimited(
                f"at most {self.streams_per_client} open streams per client",
                code="too_many_streams",
                headers={"Retry-After": str(STREAM_RETRY_AFTER_S)},
            )
        self._streams[client] = held + 1
        self.open_streams += 1

    def close_stream(self, client: str) -> None:
        self.open_streams -= 1
        held = self._streams.get(client, 0) - 1
        if held > 0:
            self._streams[client] = held
        else:
            self._streams.pop(client, None)


def limits_middleware(limits: ClientLimits) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS:
            return await handler(request)
        client = limits.client_of(request)
        exempt = limits.is_exempt(client)
        if not exempt and request.method in ("GET", "HEAD"):
            limits.take_read(client)
        resource = request.match_info.route.resource
        if resource is None or not resource.canonical.endswith("/stream"):
            return await handler(request)
        limits.open_stream(client, exempt)
        try:
            return await handler(request)
        finally:
            limits.close_stream(client)

    return middleware
