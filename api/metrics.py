"""Prometheus metrics of an API pod. Labels stay bounded: route templates, never ids."""

import os

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("feastflow_api_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "feastflow_api_request_seconds",
    "HTTP request latency (streams: time to first byte)",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# multiprocess_mode: how a pod with several processes sums its gauges (ignored with one process).
SSE_CLIENTS = Gauge("feastflow_api_sse_clients", "Connected SSE clients", ["kind"], multiprocess_mode="livesum")
SSE_EVENTS_SENT = Counter("feastflow_api_sse_events_sent_total", "SSE events written", ["kind"])
SSE_SLOW_CLIENTS = Counter("feastflow_api_sse_slow_clients_total", "Clients cut loose for falling behind", ["kind"])
SSE_RESUMES = Counter("feastflow_api_sse_resumes_total", "SSE starts by how they began", ["kind", "outcome"])
READY = Gauge("feastflow_api_ready", "1 while the pod reports ready", multiprocess_mode="livemin")
AFTER_PUBLISH_FAILURES = Counter(
    "feastflow_api_after_publish_failures_total",
    "Best-effort writes after Kafka acknowledged that failed; the answer stayed 2xx",
    ["write"],
)  # write: event_status | order_pending
DEPENDENCY_ERRORS = Counter(
    "feastflow_api_dependency_unavailable_total",
    "Requests answered 503 because a dependency was unreachable",
    ["dependency"],
)  # dependency: redis | postgres | kafka | timeout
LIMITED = Counter("feastflow_api_limited_total", "Requests refused by a pod limit", ["limit"])
RATE_LIMITER_LOCAL = Counter(
    "feastflow_api_rate_limiter_local_total", "Write rate checks made in-process because Redis was unreachable"
)


def multiprocess_metrics_dir() -> str | None:
    """Set when the pod runs several processes (api.processes): their samples are aggregated from there."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
