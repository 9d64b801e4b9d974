"""Prometheus metrics of a stream worker (served on its web port at /metrics). Labels stay bounded: services,
agents, event types, outcomes, topics by short name and partition numbers — never item, order or user ids."""

from prometheus_client import Counter, Enum, Gauge, Histogram

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

BATCHES = Counter(
    "feastflow_worker_batches_total", "Catalog batches by outcome", ["outcome"]
)  # applied|rejected|duplicate
EVENTS = Counter(
    "feastflow_worker_events_total", "Catalog events by type and outcome", ["type", "outcome"]
)  # applied | rejected (stale version, invalid for the state) | duplicate (a replay, ignored)
DEAD_LETTERS = Counter(
    "feastflow_worker_dead_letters_total", "Records parked on the dead-letter topic", ["source", "kind"]
)  # kind: streams.failures.DeadLetterKind
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
LIVE = Gauge("feastflow_worker_live", "1 while no record has been in processing longer than the stuck bound")
OLDEST_RECORD_AGE = Gauge(
    "feastflow_worker_oldest_record_seconds", "How long the record processed longest right now has been in processing"
)
TIMER_FAILURES = Counter(
    "feastflow_worker_timer_failures_total", "Timer runs that failed (and were ridden out)", ["timer", "kind"]
)  # kind: transient | bug

# Shadow pricing (a candidate version compared with the stable one; streams/shadow.py). One shadow runs at a time.
SHADOW_ITEMS_COMPARED = Gauge("feastflow_shadow_items_compared", "Items compared in the last sweep")
SHADOW_ITEMS_DIVERGED = Gauge(
    "feastflow_shadow_items_diverged", "Compared items whose candidate price differs beyond the declared change"
)
SHADOW_MAX_DIVERGENCE = Gauge("feastflow_shadow_max_divergence_ratio", "The worst item's |candidate / expected - 1|")
SHADOW_CITIES_PENDING = Gauge("feastflow_shadow_cities_pending", "Cities where the two sides stood apart")
SHADOW_LAG = Gauge("feastflow_shadow_lag_records", "Catalog records the candidate has not applied yet")
SHADOW_ERRORS = Counter("feastflow_shadow_errors_total", "Records the candidate failed to apply", ["kind"])

# The handover between worker generations (streams.handover).
HANDOVER_PHASE = Enum(
    "feastflow_worker_handover_phase",
    "Where this worker stands in a handover",
    states=["starting", "catching_up", "proving", "taking_over", "projecting", "retired", "refused"],
)
HANDOVER_EPOCH = Gauge("feastflow_worker_handover_epoch", "The fencing epoch this worker writes under (0: none)")
HANDOVER_LANES = Gauge("feastflow_worker_handover_lanes", "Partitions this worker writes the read model for")
HANDOVERS = Counter(
    "feastflow_worker_handovers_total", "Handover steps by outcome", ["outcome"]
)  # taken | released | refused | fenced
