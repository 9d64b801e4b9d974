"""Prometheus metrics of a stream worker (served on its web port at /metrics). Labels stay bounded."""

from prometheus_client import Counter, Histogram

BATCHES = Counter(
    "feastflow_worker_batches_total", "Catalog batches by outcome", ["outcome"]
)  # applied|rejected|duplicate
DEAD_LETTERS = Counter("feastflow_worker_dead_letters_total", "Records parked on the dead-letter topic", ["source"])
EVENTS = Counter("feastflow_worker_events_total", "Catalog events by type and status", ["type", "status"])
REWINDS = Counter("feastflow_worker_rewinds_total", "Partitions read again by the delivery guard", ["reason"])
PROCESSING = Histogram(
    "feastflow_worker_batch_seconds",
    "Time to apply and project one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
ORDER_DECISIONS = Counter("feastflow_worker_order_decisions_total", "Order commands by outcome", ["outcome"])
FRESHNESS = Histogram(
    "feastflow_worker_freshness_seconds",
    "From an event's creation to its projection in Redis",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
