"""Gauges sampled on a timer: consumer lag per partition, assigned partitions, table sizes, readiness.

Lag is measured against what the agents processed (the delivery guard's next offset), not what Faust fetched:
records fetched but not yet projected are still lag to a customer.
"""

import logging
from collections import Counter
from typing import Any

from streams.app import Worker
from streams.delivery import guard_of
from streams.metrics import ASSIGNED_PARTITIONS, CONSUMER_LAG, READY, TABLE_KEYS
from streams.operator_views import worker_ready
from streams.timers import worker_timer

logger = logging.getLogger(__name__)

SAMPLE_EVERY_S = 5.0
TABLES_EVERY_S = 30.0  # counting keys walks the store


def short_topic(topic: str) -> str:
    """`<namespace>.catalog-events` -> `catalog-events`: bounded labels whatever the namespace."""
    return topic.rsplit(".", 1)[-1]


async def partition_lag(worker: Worker) -> dict[tuple[str, int], int]:
    positions = await guard_of(worker.app).positions(worker.app)
    return {(tp.topic, tp.partition): max(0, end - next_offset) for tp, (next_offset, end) in positions.items()}


def register_gauge_sampler(worker: Worker) -> None:
    app = worker.app

    @worker_timer(worker, SAMPLE_EVERY_S)
    async def sample_consumer() -> None:
        READY.set(1 if worker_ready(worker)[0] else 0)
        try:
            lag = await partition_lag(worker)
        except Exception as exc:  # mid-rebalance the consumer may not answer; the next sample will
            logger.debug("lag sample skipped: %r", exc)
            return
        CONSUMER_LAG.clear()  # partitions that moved away must not keep reporting their last lag
        for (topic, partition), records in lag.items():
            CONSUMER_LAG.labels(short_topic(topic), str(partition)).set(records)
        consumer: Any = app.consumer
        guarded = guard_of(app).guarded_topics
        assigned = Counter(short_topic(tp.topic) for tp in consumer.assignment() if tp.topic in guarded)
        ASSIGNED_PARTITIONS.clear()
        for topic, count in assigned.items():
            ASSIGNED_PARTITIONS.labels(topic).set(count)

    @worker_timer(worker, TABLES_EVERY_S)
    async def sample_tables() -> None:
        tables = worker.tables
        for name, table in (("restaurants", tables.restaurants), ("items", tables.items), ("pricing", tables.pricing)):
            TABLE_KEYS.labels(name).set(len(table))
