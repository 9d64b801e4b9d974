"""Whether a benchmark measured the system or the machine it ran on.

Every process of the local stack and the benchmark's own clients share one small box. When the client is
short of CPU it sends fewer changes than asked and reads what it is sent late, so its latencies are mostly its
own wait for a core. On 2026-11-30 that passed for a regression of the API pods: the build before, run at the
same time on the same box, was just as slow, while other work (test suites) held the cores. So a run now
records how far the sender kept to its pace, how idle the machine was, and which processes used the CPU, and
says plainly when its latencies are not worth comparing.
"""

import asyncio
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = Path("/proc")
MIN_PACE = 0.95  # a sender that managed less of the asked rate than this was starved of CPU
MIN_IDLE_SHARE = 0.05  # with less of the machine idle, every process queued for a core
BUSIEST_SHOWN = 4


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds: the whole machine's busy and idle time, this process's, and each process's."""

    busy_s: float
    idle_s: float
    own_s: float
    processes: Mapping[int, tuple[float, str]] = field(default_factory=dict)  # pid -> (seconds, command)


def parse_proc_stat(text: str, ticks_per_s: float) -> tuple[float, float]:
    """(busy, idle) seconds over all cores from /proc/stat's first line; iowait counts as idle, steal as busy
    (a core the hypervisor gave away was not ours to use)."""
    fields = text.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("not a /proc/stat aggregate line")
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / ticks_per_s, idle / ticks_per_s


def parse_pid_stat(text: str, ticks_per_s: float) -> float:
    """A process's user + system seconds from /proc/PID/stat (its name, in parentheses, may hold spaces)."""
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def _processes(ticks_per_s: float) -> dict[int, tuple[float, str]]:
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            seconds = parse_pid_stat((entry / "stat").read_text(), ticks_per_s)
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        found[int(entry.name)] = (seconds, command[:80] or f"[{entry.name}]")
    return found


def cpu_times() -> CpuTimes | None:
    """Now's cumulative times, or None where there is no /proc (the verdict then rests on the pace alone)."""
    try:
        text = (PROC / "stat").read_text()
    except OSError:
        return None
    ticks = float(os.sysconf("SC_CLK_TCK"))
    busy, idle = parse_proc_stat(text, ticks)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return CpuTimes(busy, idle, own.ru_utime + own.ru_stime, _processes(ticks))


def load_between(start: CpuTimes | None, end: CpuTimes | None, seconds: float) -> dict[str, Any] | None:
    """How busy the machine was between two samples `seconds` apart, and who kept it busy (in cores)."""
    if start is None or end is None or seconds <= 0:
        return None
    busy, idle = end.busy_s - start.busy_s, end.idle_s - start.idle_s
    used: list[tuple[float, int, str]] = []
    for pid, (total, command) in end.processes.items():
        before = start.processes.get(pid)
        # A pid seen only at the end started meanwhile: all of its time is from this period.
        spent = total - (before[0] if before is not None and before[1] == command else 0.0)
        if spent > 0:
            used.append((spent / seconds, pid, command))
    used.sort(key=lambda process: (-process[0], process[1]))
    return {
        "seconds": round(seconds, 2),
        "idle_share": round(idle / (busy + idle), 4) if busy + idle > 0 else 0.0,
        "client_cores": round((end.own_s - start.own_s) / seconds, 3),
        "load_average": round(os.getloadavg()[0], 2),
        "busiest": [{"pid": pid, "command": command, "cores": round(cores, 3)} for cores, pid, command in used[:12]],
    }


class LoopLag:
    """How late the client's own event loop runs a timer: a change that reached the socket is timed only when
    the loop gets to it, so a lagging loop adds its lag to every latency measured."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            due = time.perf_counter() + self.period_s
            await asyncio.sleep(self.period_s)
            self.lags_s.append(max(0.0, time.perf_counter() - due))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
        return lag_summary(self.lags_s, self.period_s)


def lag_summary(lags_s: list[float], period_s: float) -> dict[str, float]:
    """Percentiles per timer, and `late_share`: the part of the time the loop was behind (a long stall is one
    timer but most of the time, so the percentiles alone understate it)."""
    ordered = sorted(lags_s)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "late_share": float("nan")}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    late = sum(ordered)
    return {
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 1),
        "late_share": round(late / (late + period_s * len(ordered)), 3),
    }


def problems(*, sent: int, asked_rate: float, duration_s: float, load: Mapping[str, Any] | None) -> list[str]:
    """Why this run's latencies do not measure the system under test on a machine with CPU to spare; empty when
    they do. A saturated box queues every process, the pods, the worker and the client alike: such a run
    measures what the box can carry, and compares with nothing measured on a box with cores to spare."""
    found = []
    asked = asked_rate * duration_s
    if asked > 0 and sent < MIN_PACE * asked:
        found.append(
            f"the sender fell behind ({sent} of {asked:.0f} changes, {sent / duration_s:.1f}/s of {asked_rate:g}/s):"
            " the client lacked CPU, its latencies include its own wait for a core"
        )
    if load is not None and load["idle_share"] < MIN_IDLE_SHARE:
        found.append(
            f"the machine had {load['idle_share']:.0%} idle CPU (load {load['load_average']:.1f}): every process"
            " waited for a core; see the busiest processes"
        )
    return found


def verdict_row(found: list[str]) -> tuple[str, str]:
    if not found:
        return ("verdict", "comparable: neither the client nor the machine was short of CPU")
    return ("verdict", "NOT COMPARABLE: " + "; ".join(found))


def short_command(command: str, width: int = 40) -> str:
    """`/x/.venv/bin/python -m feastflow.cli api` -> `feastflow.cli api`; `/usr/bin/java -Xmx.. kafka.Kafka` keeps
    its program's name: enough to tell a pod from a test run in one table cell."""
    words = command.split()
    if len(words) > 1 and Path(words[0]).name.startswith("python"):
        words = words[1:]
        while len(words) > 1 and words[0].startswith("-") and words[0] != "-m":
            words = words[1:]  # interpreter flags (-P, -u, ...)
        if len(words) > 1 and words[0] == "-m":
            words = words[1:]
    if words:
        words[0] = Path(words[0]).name
    return " ".join(words)[:width]


def machine_rows(load: Mapping[str, Any] | None, lag: Mapping[str, float] | None = None) -> list[tuple[str, str]]:
    """Table rows for a report's `machine_load` (load_between's result) and the client's loop lag."""
    lag_rows = (
        []
        if lag is None
        else [
            (
                "client event-loop lag p50 / p99 / max",
                f"{lag['p50_ms']:.1f} / {lag['p99_ms']:.1f} / {lag['max_ms']:.1f} ms, behind {lag['late_share']:.0%}"
                " of the time (inside every latency)",
            )
        ]
    )
    if load is None:
        return [*lag_rows, ("machine while measuring", "unknown (no /proc)")]
    busiest = ", ".join(
        f"{short_command(process['command'])} {process['cores']:.2f}" for process in load["busiest"][:BUSIEST_SHOWN]
    )
    return [
        *lag_rows,
        (
            "machine while measuring",
            f"{load['idle_share']:.0%} idle of {os.cpu_count()} cores, load {load['load_average']:.1f};"
            f" this client {load['client_cores']:.2f} cores",
        ),
        ("busiest processes (cores)", busiest or "none"),
    ]
