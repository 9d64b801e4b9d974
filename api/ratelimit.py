"""Per-subject write rate limits shared by every API pod (a fixed one-second window in Redis).

While Redis is unreachable the limit fails open to the same window counted in this process: an admin write
needs Kafka, not Redis, so a Redis outage must not refuse it, but nobody gets an unlimited rate either.
"""

import asyncio
import logging
import time

import redis.exceptions
from redis.asyncio import Redis

from api.errors import RateLimited
from api.metrics import RATE_LIMITER_LOCAL
from core.redis_keys import rate_key

logger = logging.getLogger(__name__)

REDIS_CHECK_TIMEOUT_S = 0.5
_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError)


class RateLimiter:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._local: dict[tuple[str, str], tuple[int, int]] = {}  # (scope, subject) -> (window, count)

    async def check(self, scope: str, subject: str, per_second: int) -> None:
        if per_second <= 0:
            return
        now = time.time()
        window = int(now)
        try:
            count = await asyncio.wait_for(self._count_in_redis(scope, subject, window), REDIS_CHECK_TIMEOUT_S)
        except _OUTAGE as exc:
            RATE_LIMITER_LOCAL.inc()
            logger.warning("rate limiter without Redis (%r): counting in this process", exc)
            count = self._count_here(scope, subject, window)
        if count > per_second:
            retry_after = max(1, round(window + 1 - now + 0.5))
            raise RateLimited(
                f"more than {per_second} requests a second; slow down",
                headers={"Retry-After": str(retry_after)},
            )

    async def _count_in_redis(self, scope: str, subject: str, window: int) -> int:
        key = rate_key(self._namespace, scope, subject, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        return int(count)

    def _count_here(self, scope: str, subject: str, window: int) -> int:
        if len(self._local) > 10_000:  # windows of the past are worthless: drop them all
            self._local = {k: v for k, v in self._local.items() if v[0] == window}
        seen_window, count = self._local.get((scope, subject), (window, 0))
        count = count + 1 if seen_window == window else 1
        self._local[(scope, subject)] = (window, count)
        return count
