"""Per-subject write rate limits shared by every API pod (a fixed one-second window in Redis)."""

import time

from redis.asyncio import Redis

from api.errors import RateLimited
from feastflow.redis_keys import rate_key


class RateLimiter:
    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    async def check(self, scope: str, subject: str, per_second: int) -> None:
        if per_second <= 0:
            return
        now = time.time()
        window = int(now)
        key = rate_key(self._namespace, scope, subject, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        if int(count) > per_second:
            retry_after = max(1, round(window + 1 - now + 0.5))
            raise RateLimited(
                f"more than {per_second} requests a second; slow down",
                headers={"Retry-After": str(retry_after)},
            )
