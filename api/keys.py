"""Every value the aiohttp application carries, declared in one place."""

import asyncio

import aiopg
from aiohttp import web
from aiohttp_sse import EventSourceResponse
from redis.asyncio import Redis

from api.feed import FeedHub
from api.publisher import EventPublisher
from api.ratelimit import RateLimiter
from api.readmodel import MenuReader
from feastflow.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
PUBLISHER = web.AppKey("publisher", EventPublisher)
PG_POOL = web.AppKey("pg_pool", aiopg.Pool)
MENUS = web.AppKey("menus", MenuReader)
FEEDS = web.AppKey("feeds", FeedHub)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
STREAMS = web.AppKey("streams", set[EventSourceResponse])
DRAINING = web.AppKey("draining", asyncio.Event)
READY = web.AppKey("ready", dict[str, bool])
