"""Liveness, readiness and metrics of an API pod."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable

import aiopg
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from api.keys import DRAINING, PUBLISHER, READY, REDIS, SETTINGS, Readiness
from api.metrics import READY as READY_GAUGE
from api.metrics import multiprocess_metrics_dir

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"alive"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    readiness = app[READY]
    draining = app[DRAINING].is_set()
    ready = not draining and readiness.ok
    body = {"ready": ready, "draining": draining, "checks": readiness.as_json()}
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """The pod's metrics: with several processes (multiprocess mode), the sum over all of them."""
    registry = REGISTRY
    if multiprocess_metrics_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    answer = web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
    # A scraper comes back every few seconds: a connection of its own each time, rather than one it keeps idle and a
    # stopping pod waits for (api.server.HardenedServer.shutdown; Prometheus held one to every pod).
    answer.force_close()
    return answer


async def readiness_probe(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: keeps the dependency checks behind /readyz fresh in the background."""
    readiness = app[READY] = Readiness()
    postgres = PostgresProbe(app[SETTINGS].pg_dsn)

    async def probe_forever() -> None:
        while True:
            readiness.redis = await _succeeds(app[REDIS].ping())
            readiness.kafka = await _succeeds(app[PUBLISHER].reachable())
            readiness.postgres = await _succeeds(postgres.answers())
            READY_GAUGE.set(1 if readiness.ok and not app[DRAINING].is_set() else 0)
            await asyncio.sleep(PROBE_INTERVAL_S)

    task = asyncio.create_task(probe_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    postgres.close()


class PostgresProbe:
    """Its own connection, not one from the request pool: a pool busy with requests is no outage, and the
    probe must not wait behind them."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: aiopg.Connection | None = None

    async def answers(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await aiopg.connect(self._dsn, timeout=PROBE_TIMEOUT_S)
            async with self._conn.cursor() as cur:
                await cur.execute("SELECT 1")
            return True
        except BaseException:
            self.close()  # whatever state it is in, the next probe starts from a fresh connection
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


async def _succeeds(check: Awaitable[object]) -> bool:
    try:
        result = await asyncio.wait_for(check, timeout=PROBE_TIMEOUT_S)
    except Exception:
        return False
    return result is not False
