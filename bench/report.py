"""What the benchmarks share: percentiles, and publishing a result (docs/benchmarks/, quoted by the README)."""

import sys
from pathlib import Path
from typing import Any

from ops.results import markdown_table, publish


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50_p99(values: list[float], scale: float = 1.0) -> dict[str, float]:
    """The median and the 99th percentile, each times `scale` (1000: seconds to milliseconds)."""
    return {"p50": percentile(values, 0.5) * scale, "p99": percentile(values, 0.99) * scale}


def report_result(kind: str, report: dict[str, Any], rows: list[tuple[str, str]], module: str | None = None) -> Path:
    """Print the result's table and write it, with the raw report, under docs/benchmarks/ as KIND (a benchmark
    with several sizes names each result apart from its module)."""
    table = markdown_table(("metric", "value"), rows)
    print(table)
    command = " ".join([f".venv/bin/python -m bench.{module or kind}", *sys.argv[1:]])
    return publish(kind, command, report, table)
