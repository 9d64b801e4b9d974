"""Prometheus metrics of a stream worker (served on its web port at /metrics). Labels stay bounded: services,
agents, event types, outcomes, topics by short name and partition numbers — never item, order or user ids."""

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

BATCHES = Counter(
    "feastflow_worker_batches_total", "Catalog batches by outcome", ["outcome"]
)  # applied|rejected|duplicate
EVENTS = Counter(
    "feastflow_worker_events_total", "Catalog events by type and outcome", ["type", "outcome"]
)  # applied | rejected (stale version, invalid for the state) | duplicate (a replay, ignored)
DEAD_LETTERS = Counter("feastflow_worker_dead_letters_total", "Records parked on the dead-letter topic", ["source"])
REWINDS = Counter("feastflow_worker_rewinds_total", "Partitions read again by the delivery guard", ["reason"])
PROCESSING = Histogram(
    "feastflow_worker_processing_seconds", "Time to process one record, writes included", ["agent"], buckets=_FAST
)
FRESHNESS = Histogram(
    "feastflow_worker_freshness_seconds",
    "From an admin change's creation to its projection in Redis (what customers wait for)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ORDER_DECISIONS = Counter("feastflow_worker_order_decisions_total", "Order commands by outcome", ["outcome"])
POSTGRES_WRITES = Histogram(
    "feastflow_worker_postgres_write_seconds", "One PostgreSQL write transaction", ["operation"], buckets=_FAST
)
RETRIES = Counter(
    "feastflow_worker_retries_total", "Failed attempts at a write that is retried until it succeeds", ["operation"]
)
CONSUMER_LAG = Gauge(
    "feastflow_worker_consumer_lag", "Records not yet processed, per assigned partition", ["topic", "partition"]
)
ASSIGNED_PARTITIONS = Gauge("feastflow_worker_assigned_partitions", "Partitions assigned to this worker", ["topic"])
TABLE_KEYS = Gauge("feastflow_worker_table_keys", "Keys in this worker's share of a table", ["table"])
READY = Gauge("feastflow_worker_ready", "1 while the worker reports ready")
