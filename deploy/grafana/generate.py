"""Writes the Grafana dashboards (dashboards/*.json) from the short descriptions below.

    python deploy/grafana/generate.py           # rewrite the JSON files
    python deploy/grafana/generate.py --check   # fail if the committed files differ (tests run this)

Every query names metrics the code exports or the recording rules in deploy/prometheus/rules define
(tests/unit/test_observability_config.py checks that), so a renamed metric cannot leave a dashboard blank.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "feastflow-prometheus"}


def p99(histogram: str, by: str = "", selector: str = "") -> str:
    """The 99th percentile over 5 minutes of a histogram, summed over pods (and split by `by`)."""
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.99, sum by ({labels}) (rate({histogram}_bucket{selector}[5m])))"


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    thresholds: tuple[float, ...] = ()  # red above the first


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("feastflow",))


DASHBOARDS = (
    Dashboard(
        "feastflow-freshness",
        "Feast Flow / Real-time freshness",
        "How fast an admin's change reaches customers: the product's promise.",
        (
            Panel(
                "Freshness p99 (objective < 500 ms)",
                (("feastflow:freshness_seconds:p99_5m", "p99 5m"), ("feastflow:freshness_seconds:p99_1m", "p99 1m")),
                unit="s",
                thresholds=(0.5,),
            ),
            Panel("Freshness p50", (("feastflow:freshness_seconds:p50_5m", "p50 5m"),), unit="s"),
            Panel(
                "Freshness p99 now", (("feastflow:freshness_seconds:p99_5m", "p99"),), "s", "stat", thresholds=(0.5,)
            ),
            Panel(
                "Changes projected per second",
                (("sum(rate(feastflow_worker_freshness_seconds_count[1m]))", "batches/s"),),
                unit="ops",
            ),
            Panel("Connected SSE clients", (("feastflow:sse_clients:sum", "{{kind}}"),)),
            Panel(
                "SSE events sent per second",
                (("sum by (kind) (rate(feastflow_api_sse_events_sent_total[1m]))", "{{kind}}"),),
                unit="ops",
            ),
            Panel(
                "SSE starts: resumed from history vs fresh snapshot",
                (("sum by (outcome) (rate(feastflow_api_sse_resumes_total[5m]))", "{{outcome}}"),),
                unit="ops",
            ),
            Panel(
                "Slow clients cut loose",
                (("sum by (kind) (increase(feastflow_api_sse_slow_clients_total[5m]))", "{{kind}}"),),
            ),
        ),
    ),
    Dashboard(
        "feastflow-api",
        "Feast Flow / API",
        "Requests, errors, latency and Kafka produce times of the API pods.",
        (
            Panel(
                "Requests per second by route",
                (("sum by (route) (feastflow:api_requests:rate1m)", "{{route}}"),),
                "reqps",
            ),
            Panel(
                "Error ratio (5xx, objective < 1%)",
                (("feastflow:api_errors:ratio_rate5m", "5m"), ("feastflow:api_errors:ratio_rate1m", "1m")),
                unit="percentunit",
                thresholds=(0.01,),
            ),
            Panel(
                "Read latency p99 (objective < 250 ms)",
                (("feastflow:api_read_latency_seconds:p99_5m", "p99"),),
                unit="s",
                thresholds=(0.25,),
            ),
            Panel(
                "Latency p99 by route",
                (
                    (
                        p99("feastflow_api_request_seconds", "route"),
                        "{{route}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Responses by status",
                (("sum by (status) (feastflow:api_requests:rate1m)", "{{status}}"),),
                unit="reqps",
            ),
            Panel(
                "Kafka produce p99 by topic",
                (
                    (
                        p99("feastflow_api_kafka_produce_seconds", "topic"),
                        "{{topic}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Kafka produce failures",
                (("sum by (topic) (increase(feastflow_api_kafka_produce_failures_total[5m]))", "{{topic}}"),),
            ),
            Panel(
                "Ready API pods",
                (("sum(feastflow_api_ready)", "ready"), ("count(feastflow_api_ready)", "pods")),
                kind="stat",
            ),
        ),
    ),
    Dashboard(
        "feastflow-streams",
        "Feast Flow / Streams",
        "The Faust workers: what they process, how far behind they are, what they park.",
        (
            Panel("Consumer lag by topic", (("feastflow:consumer_lag:sum", "{{topic}}"),)),
            Panel(
                "Consumer lag by partition",
                (("sum by (topic, partition) (feastflow_worker_consumer_lag)", "{{topic}}/{{partition}}"),),
            ),
            Panel(
                "Catalog events by type and outcome",
                (("sum by (type, outcome) (rate(feastflow_worker_events_total[1m]))", "{{type}} {{outcome}}"),),
                unit="ops",
            ),
            Panel(
                "Processing time p99 by agent",
                (
                    (
                        p99("feastflow_worker_processing_seconds", "agent"),
                        "{{agent}}",
                    ),
                ),
                unit="s",
            ),
            Panel("Dead letters (10 min)", (("feastflow:dead_letters:increase10m", "{{source}}"),), thresholds=(1,)),
            Panel(
                "Delivery-guard rewinds",
                (("sum by (reason) (increase(feastflow_worker_rewinds_total[5m]))", "{{reason}}"),),
            ),
            Panel(
                "Table keys per worker",
                (("sum by (instance, table) (feastflow_worker_table_keys)", "{{instance}} {{table}}"),),
            ),
            Panel(
                "Assigned partitions per worker",
                (("sum by (instance, topic) (feastflow_worker_assigned_partitions)", "{{instance}} {{topic}}"),),
            ),
            Panel(
                "PostgreSQL write p99",
                (
                    (
                        p99("feastflow_worker_postgres_write_seconds", "operation"),
                        "{{operation}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Retried writes",
                (("sum by (operation) (increase(feastflow_worker_retries_total[5m]))", "{{operation}}"),),
            ),
            Panel(
                "Workers ready",
                (("sum(feastflow_worker_ready)", "ready"), ("count(feastflow_worker_ready)", "workers")),
                kind="stat",
            ),
        ),
    ),
    Dashboard(
        "feastflow-orders",
        "Feast Flow / Orders",
        "Orders from POST to decision: how many, what was decided, how long PostgreSQL took.",
        (
            Panel("Order decisions per second", (("feastflow:order_decisions:rate5m", "{{outcome}}"),), unit="ops"),
            Panel(
                "Order requests by status",
                (('sum by (status) (feastflow:api_requests:rate1m{route="/v1/orders", method="POST"})', "{{status}}"),),
                unit="reqps",
            ),
            Panel(
                "Order POST latency p99",
                (
                    (
                        p99("feastflow_api_request_seconds", selector='{route="/v1/orders", method="POST"}'),
                        "p99",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Order command produce p99",
                (
                    (
                        p99("feastflow_api_kafka_produce_seconds", selector='{topic="orders"}'),
                        "p99",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Order writes p99",
                (
                    (
                        p99("feastflow_worker_postgres_write_seconds", "operation", selector='{operation=~"order_.*"}'),
                        "{{operation}}",
                    ),
                ),
                unit="s",
            ),
            Panel("Order status streams open", (('feastflow:sse_clients:sum{kind="order"}', "clients"),)),
        ),
    ),
    Dashboard(
        "feastflow-deploys",
        "Feast Flow / Deploys and canary",
        "Which builds run, and whether the objectives held while they rolled out.",
        (
            Panel("Running builds", (("count by (version, role) (feastflow_build_info)", "{{role}} {{version}}"),)),
            Panel(
                "Error ratio during deploys",
                (("feastflow:api_errors:ratio_rate1m", "5xx ratio"),),
                unit="percentunit",
                thresholds=(0.01,),
            ),
            Panel(
                "Requests per second by build",
                (
                    (
                        "sum by (version) (rate(feastflow_api_requests_total[1m])"
                        " * on (instance) group_left (version) feastflow_build_info)",
                        "{{version}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Freshness p99 during deploys",
                (("feastflow:freshness_seconds:p99_1m", "p99"),),
                unit="s",
                thresholds=(0.5,),
            ),
            Panel("Ready pods", (("sum(feastflow_api_ready)", "api"), ("sum(feastflow_worker_ready)", "workers"))),
            Panel("Consumer lag during deploys", (("feastflow:consumer_lag:sum", "{{topic}}"),)),
        ),
    ),
)


def panel_json(panel: Panel, index: int) -> dict[str, object]:
    steps: list[dict[str, object]] = [{"color": "green", "value": None}]
    steps += [{"color": "red", "value": limit} for limit in panel.thresholds[:1]]
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if panel.kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for n, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, object]:
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [
            {
                "title": "Feast Flow",
                "type": "dashboards",
                "tags": ["feastflow"],
                "asDropdown": True,
                "includeVars": False,
            }
        ],
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [panel_json(panel, index) for index, panel in enumerate(dashboard.panels)],
    }


def rendered() -> dict[Path, str]:
    return {OUT / f"{d.uid}.json": json.dumps(dashboard_json(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [path.name for path, text in files.items() if not path.exists() or path.read_text() != text]
        extra = sorted({p.name for p in OUT.glob("*.json")} - {p.name for p in files})
        if stale or extra:
            print(f"dashboards out of date: {stale + extra}; run python deploy/grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
