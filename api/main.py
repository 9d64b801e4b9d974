"""The API pod's application: its factory (routes, middlewares, the Redis, Kafka and PostgreSQL clients it
holds) and `serve`, which runs it until SIGTERM and drains. The entry point is api.processes.run_api."""

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiopg
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from api.auth_throttle import trusted_networks
from api.feed import FeedHub
from api.keys import (
    DRAINING,
    FEEDS,
    LIMITS,
    MENUS,
    ORDER_FEEDS,
    PG_POOL,
    PUBLISHER,
    RATE_LIMITER,
    REDIS,
    SETTINGS,
    STREAMS,
    OpenStreams,
)
from api.limits import ClientLimits, limits_middleware
from api.metrics import READY as READY_GAUGE
from api.middlewares import (
    body_timeout_middleware,
    close_while_draining_middleware,
    errors_middleware,
    metrics_middleware,
    request_id_middleware,
    resume_id_middleware,
)
from api.ops_views import readiness_probe
from api.order_feed import OrderFeedHub
from api.ratelimit import RateLimiter
from api.readmodel import MenuReader
from api.routes import setup_routes
from api.server import HardenedRunner
from api.sse import tell_to_reconnect
from api.stream_follow import FEED_SOCKET_TIMEOUT_S
from core.build import announce
from core.gc_policy import settle_after_startup
from core.publisher import EventPublisher
from core.settings import Settings

logger = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT_S = 5.0


async def redis_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # Requests wait for a pooled connection rather than fail when a burst (say, a thousand SSE clients
    # reconnecting at once) outnumbers the pool.
    # Socket timeouts: a Redis that hangs (rather than refuses) must become a 503, not a request that waits
    # forever; no command on these connections blocks on purpose.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=64,
        timeout=10,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        # Once, on a fresh connection: after Redis restarts every pooled connection is dead, and the first
        # command on each would otherwise fail although Redis is back.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1, supported_errors=(RedisConnectionError,)),
    )
    redis = Redis(connection_pool=pool, health_check_interval=10)
    # The feed readers block in XREAD; they get connections of their own so reads never queue behind them.
    # Their socket timeout must outlast the XREAD block: redis-py otherwise gives up on an idle stream at
    # 5 s with a TimeoutError and the connection's next reply can be the one it abandoned.
    feed_redis = Redis.from_url(settings.redis_url, health_check_interval=10, socket_timeout=FEED_SOCKET_TIMEOUT_S)
    app[REDIS] = redis
    app[MENUS] = MenuReader(redis, settings.namespace)
    app[RATE_LIMITER] = RateLimiter(redis, settings.namespace)
    app[FEEDS] = FeedHub(
        feed_redis, app[MENUS], settings.sse_max_pending_bytes, settings.sse_coalesce_ms / 1000, settings.sse_ping_s
    )
    app[ORDER_FEEDS] = OrderFeedHub(feed_redis, settings.namespace, settings.sse_max_pending_bytes)
    yield
    await app[ORDER_FEEDS].close()
    await app[FEEDS].close()
    await feed_redis.aclose()
    await redis.aclose()


async def kafka_publisher(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    publisher = EventPublisher(settings.kafka_bootstrap, settings.namespace)
    await publisher.start()
    app[PUBLISHER] = publisher
    yield
    await publisher.stop()


async def postgres_pool(app: web.Application) -> AsyncIterator[None]:
    pool = await aiopg.create_pool(app[SETTINGS].pg_dsn, minsize=0, maxsize=5, timeout=10)
    app[PG_POOL] = pool
    yield
    pool.close()
    await pool.wait_closed()


async def drain_streams(app: web.Application) -> None:
    """On shutdown: stop being ready, tell every SSE client to come back soon (to another pod), close."""
    app[DRAINING].set()
    open_streams: OpenStreams = app[STREAMS]
    streams = tuple(open_streams)
    # All at once, each within its bound: one after another, thousands of clients slow to read (a saturated
    # box) took up to a second each, and a drained pod served on for minutes instead of closing.
    began = time.monotonic()
    await asyncio.gather(*(tell_to_reconnect(stream) for stream in streams))
    for stream in streams:
        stream.stop_streaming()
    logger.info("draining: %d SSE clients told to reconnect in %.1fs", len(streams), time.monotonic() - began)


def create_app(settings: Settings) -> web.Application:
    limits = ClientLimits(
        streams_per_client=settings.sse_streams_per_client,
        max_streams=settings.sse_max_clients,
        reads_per_s=settings.read_rate_per_second,
        read_burst=settings.read_burst,
        trusted_proxies=trusted_networks(settings.trusted_proxies),
        exempt=trusted_networks(settings.limits_exempt),
    )
    app = web.Application(
        middlewares=[
            request_id_middleware,
            close_while_draining_middleware,
            metrics_middleware,
            errors_middleware,
            limits_middleware(limits),
            resume_id_middleware,
            body_timeout_middleware,
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[LIMITS] = limits
    app[SETTINGS] = settings
    announce("api")
    app[STREAMS] = OpenStreams()
    app[DRAINING] = asyncio.Event()
    app.cleanup_ctx.extend([redis_client, kafka_publisher, postgres_pool, readiness_probe])
    app.on_shutdown.append(drain_streams)
    setup_routes(app)
    return app


LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


async def serve(app: web.Application, settings: Settings, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then shut down without failing anyone.

    The moment the signal arrives /readyz answers 503, so load balancers stop sending new work; the pod
    keeps serving for `pre_stop_s` while they notice (Kubernetes' preStop does the same before the
    signal), then stops accepting, tells SSE clients to reconnect elsewhere, lets in-flight requests
    finish for up to `drain_s`, and exits.
    """
    runner = HardenedRunner(
        app, header_timeout_s=settings.header_timeout_s, access_log=None, shutdown_timeout=settings.drain_s
    )
    await runner.setup()
    # A deep accept queue: after a pod drains, its clients reconnect to the others all at once.
    site = web.TCPSite(
        runner, settings.api_host, settings.api_port, reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG
    )
    await site.start()
    settle_after_startup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    app[DRAINING].set()
    READY_GAUGE.set(0)
    logger.info("draining: not ready, serving on for %.1fs before closing", settings.pre_stop_s)
    await asyncio.sleep(settings.pre_stop_s)
    began = time.monotonic()
    await finish_within(runner.cleanup(), settings.drain_s + CLEANUP_SLACK_S)
    logger.info("draining: done in %.1fs", time.monotonic() - began)


CLEANUP_SLACK_S = 10.0  # past drain_s, for the clients to be told and the connections to its stores to close


async def finish_within(cleanup: Awaitable[None], bound_s: float, exit_now: Callable[[int], object] = os._exit) -> None:
    """A pod exits within its bound: a shutdown step that hangs (seen on a saturated box: one process of a drained
    pod served on for minutes, cause not found yet) is logged with every task still pending, and the process ends
    anyway. Clients were told to reconnect first; an admin request still waiting on Kafka got no 2xx."""
    closing = asyncio.ensure_future(cleanup)
    done, _ = await asyncio.wait({closing}, timeout=bound_s)
    if closing in done:
        closing.result()
        return
    pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task() and task is not closing]
    logger.error(
        "draining: not done %.0fs after it began; exiting with %d tasks pending: %s",
        bound_s,
        len(pending),
        "; ".join(_where(task) for task in [closing, *pending][:20]),
    )
    exit_now(1)


def _where(task: "asyncio.Task[Any] | asyncio.Future[Any]") -> str:
    stack = task.get_stack(limit=1) if isinstance(task, asyncio.Task) else []
    at = f" at {stack[0].f_code.co_filename}:{stack[0].f_lineno}" if stack else ""
    name = getattr(task.get_coro(), "__qualname__", repr(task)) if isinstance(task, asyncio.Task) else repr(task)
    return f"{name}{at}"
