"""Every value the aiohttp application carries, declared in one place."""

import asyncio
from dataclasses import dataclass

import aiopg
from aiohttp import web
from aiohttp_sse import EventSourceResponse
from redis.asyncio import Redis

from api.feed import FeedHub
from api.limits import ClientLimits
from api.order_feed import OrderFeedHub
from api.ratelimit import RateLimiter
from api.readmodel import MenuReader
from core.publisher import EventPublisher
from core.settings import Settings


@dataclass
class Readiness:
    """What /readyz reports, refreshed in the background by api.ops_views.readiness_probe."""

    redis: bool = False
    kafka: bool = False
    postgres: bool = False

    def as_json(self) -> dict[str, bool]:
        return {"redis": self.redis, "kafka": self.kafka, "postgres": self.postgres}

    @property
    def ok(self) -> bool:
        return self.redis and self.kafka and self.postgres


class OpenStreams(set[EventSourceResponse]):
    """The pod's open SSE responses, so shutdown can tell each client to reconnect elsewhere."""


SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
PUBLISHER = web.AppKey("publisher", EventPublisher)
PG_POOL = web.AppKey("pg_pool", aiopg.Pool)
MENUS = web.AppKey("menus", MenuReader)
FEEDS = web.AppKey("feeds", FeedHub)
ORDER_FEEDS = web.AppKey("order_feeds", OrderFeedHub)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
STREAMS = web.AppKey("streams", OpenStreams)
DRAINING = web.AppKey("draining", asyncio.Event)
READY = web.AppKey("ready", Readiness)
LIMITS = web.AppKey("limits", ClientLimits)
