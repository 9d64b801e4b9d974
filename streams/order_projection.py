"""Orders in Redis, for the API pods: the order as the contract shows it, and its status events for SSE.

Projected from what PostgreSQL holds (the authority), with the order's version as the guard: a
redelivered command projects the same version again and changes nothing.
"""

import orjson
from redis.asyncio import Redis

from core.orders import StoredOrder
from core.redis_keys import ORDER_TTL_S, order_keys

PROJECT_ORDER = r"""
local order, feed, all_orders = KEYS[1], KEYS[2], KEYS[3]
local doc = cjson.decode(ARGV[1])
local stored = tonumber(redis.call('HGET', order, 'version') or '0')
if stored >= doc.version then return 'DUPLICATE' end
for _, change in ipairs(doc.history) do
  if change[1] > stored then
    local id = change[1] .. '-0'
    redis.call('XADD', feed, id, 'type', 'status', 'data', change[2])
    redis.call('XADD', all_orders, 'MAXLEN', '~', doc.maxlen, '*', 'order_id', doc.order_id, 'id', id,
               'data', change[2])
  end
end
redis.call('HSET', order, 'doc', doc.body, 'version', doc.version, 'customer', doc.customer,
           'restaurant_id', doc.restaurant_id, 'city', doc.city, 'status', doc.status)
redis.call('EXPIRE', order, doc.ttl)
redis.call('EXPIRE', feed, doc.ttl)
return 'APPLIED'
"""

ALL_ORDERS_FEED_MAXLEN = 100_000


class OrderProjection:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._namespace = namespace
        self._script = redis.register_script(PROJECT_ORDER)

    async def project(self, stored: StoredOrder) -> str:
        row = stored.row
        document = {
            "order_id": row["order_id"],
            "version": stored.version,
            "body": orjson.dumps(stored.as_json()).decode(),
            "customer": row["customer"],
            "restaurant_id": row["restaurant_id"],
            "city": row["city"],
            "status": row["status"],
            "history": [[c.version, orjson.dumps(stored.status_event(c)).decode()] for c in stored.history],
            "maxlen": ALL_ORDERS_FEED_MAXLEN,
            "ttl": ORDER_TTL_S,
        }
        keys = order_keys(self._namespace, row["order_id"])
        answer = await self._script(keys=keys.as_list(), args=[orjson.dumps(document)])
        return answer.decode() if isinstance(answer, bytes) else str(answer)
