"""Projection of applied batches into Redis: the current menu per city and its change feed.

One Lua script applies a whole batch atomically, so a reader always sees a menu and a cursor that agree.
The script drops a batch whose position is not past the city's stored position, which makes redelivery
harmless, and refuses one written under an older fencing epoch than the city's (FENCED): a worker
generation that was handed over from writes nothing more. When the city has no stored state (first event,
or Redis lost its data) it answers NO_STATE and the worker writes the whole city instead, with a `snapshot`
marker that tells SSE readers to start over.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from redis.asyncio import Redis

from core.redis_keys import EVENT_STATUS_TTL_S, city_keys, event_key
from models.catalog import (
    AppliedEvent,
    BatchOutcome,
    CityPricing,
    ItemState,
    RestaurantState,
)
from models.events import utc_now

logger = logging.getLogger(__name__)

PROJECT_BATCH = r"""
local restaurants, items, meta, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local doc = cjson.decode(ARGV[1])
-- Fencing: a write of an older epoch than the city's is refused (streams.handover).
local fence = tonumber(redis.call('HGET', meta, 'epoch') or '0')
if doc.epoch < fence then return 'FENCED' end
local stored = redis.call('HGET', meta, 'position')
if doc.mode == 'delta' then
  if not stored then return 'NO_STATE' end
  if tonumber(stored) >= doc.position then return 'DUPLICATE' end
else
  if stored and tonumber(stored) >= doc.position then return 'DUPLICATE' end
  redis.call('DEL', restaurants, items, feed)
end
-- Feed entries first: XADD is the only call that can refuse, and a script's earlier writes would stay.
local prev = redis.call('HGET', meta, 'cursor') or ''
if doc.mode ~= 'delta' then prev = '' end
for i, msg in ipairs(doc.messages) do
  local id = (doc.position + 1) .. '-' .. (i - 1)
  redis.call('XADD', feed, 'MAXLEN', '~', doc.maxlen, id, 'type', msg[1], 'data', msg[2], 'prev', prev)
  prev = id
end
for _, pair in ipairs(doc.restaurants) do redis.call('HSET', restaurants, pair[1], pair[2]) end
for _, pair in ipairs(doc.items) do redis.call('HSET', items, pair[1], pair[2]) end
for _, item_id in ipairs(doc.removed) do redis.call('HDEL', items, item_id) end
redis.call('HSET', meta, 'position', doc.position, 'cursor', prev)
if doc.epoch > fence then redis.call('HSET', meta, 'epoch', doc.epoch) end
if doc.pricing ~= '' then redis.call('HSET', meta, 'pricing', doc.pricing) end
for _, s in ipairs(doc.statuses) do
  redis.call('HSET', s[1], 'status', s[2], 'version', s[3], 'reason', s[4],
             'applied_at', doc.now, 'position', doc.position)
  redis.call('EXPIRE', s[1], doc.ttl)
end
return 'APPLIED'
"""


class ProjectionResult(StrEnum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    NO_STATE = "NO_STATE"
    FENCED = "FENCED"  # a newer worker generation holds the city (streams.handover)


@dataclass(frozen=True, slots=True)
class CitySnapshot:
    """A whole city as the tables hold it, for writing the read model from scratch."""

    restaurants: list[RestaurantState]
    items: list[ItemState]
    pricing: CityPricing


def pricing_json(pricing: CityPricing) -> str:
    return orjson.dumps(
        {
            "rule": pricing.rule.as_json() if pricing.rule else None,
            "active": pricing.rule_active,
            "version": pricing.version,
        }
    ).decode()


class MenuProjection:
    def __init__(self, redis: Redis, namespace: str, feed_maxlen: int, epoch: Callable[[], int] = lambda: 0) -> None:
        self._redis = redis
        self._epoch = epoch
        self._namespace = namespace
        self._feed_maxlen = feed_maxlen
        self._script = redis.register_script(PROJECT_BATCH)

    async def apply(self, city: str, currency: str, position: int, outcome: BatchOutcome) -> ProjectionResult:
        document = self._document("delta", position, outcome.audit)
        document["restaurants"] = [[r.restaurant_id, _dumps(r.as_json())] for r in outcome.restaurants.values()]
        document["items"] = [[i.item_id, _dumps(i.as_json(currency))] for i in outcome.items.values() if not i.removed]
        document["removed"] = [i.item_id for i in outcome.items.values() if i.removed]
        document["messages"] = [[m.type, _dumps(m.data)] for m in outcome.messages]
        document["pricing"] = pricing_json(outcome.pricing) if outcome.pricing else ""
        return await self._run(city, document)

    async def replace(
        self, city: str, currency: str, position: int, snapshot: CitySnapshot, audit: Iterable[AppliedEvent]
    ) -> ProjectionResult:
        document = self._document("replace", position, audit)
        document["restaurants"] = [[r.restaurant_id, _dumps(r.as_json())] for r in snapshot.restaurants]
        document["items"] = [[i.item_id, _dumps(i.as_json(currency))] for i in snapshot.items if not i.removed]
        document["removed"] = []
        document["messages"] = [["snapshot", "{}"]]
        document["pricing"] = pricing_json(snapshot.pricing)
        return await self._run(city, document)

    async def mark_refused(self, event_ids: Iterable[str], reason: str) -> None:
        """Tell admins polling an event that it was refused (dead-lettered): nothing of it was applied."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for event_id in event_ids:
                key = event_key(self._namespace, event_id)
                pipe.hset(key, mapping={"status": "rejected", "reason": reason, "applied_at": utc_now()})
                pipe.expire(key, EVENT_STATUS_TTL_S)
            await pipe.execute()

    def _document(self, mode: str, position: int, audit: Iterable[AppliedEvent]) -> dict[str, Any]:
        return {
            "mode": mode,
            "position": position,
            "epoch": self._epoch(),
            "maxlen": self._feed_maxlen,
            "now": utc_now(),
            "ttl": EVENT_STATUS_TTL_S,
            "statuses": [
                [
                    event_key(self._namespace, entry.event.event_id),
                    entry.status,
                    "" if entry.version is None else entry.version,
                    entry.reason or "",
                ]
                for entry in audit
                if entry.event.event_id
            ],
        }

    async def _run(self, city: str, document: dict[str, Any]) -> ProjectionResult:
        keys = city_keys(self._namespace, city)
        answer = await self._script(keys=keys.as_list(), args=[orjson.dumps(document)])
        return ProjectionResult(answer.decode() if isinstance(answer, bytes) else answer)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
