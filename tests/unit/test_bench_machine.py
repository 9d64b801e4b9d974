"""A benchmark says when it measured the machine rather than the system (bench.machine)."""

import pytest

from bench.machine import (
    CpuTimes,
    lag_summary,
    load_between,
    machine_rows,
    parse_pid_stat,
    parse_proc_stat,
    problems,
    short_command,
    verdict_row,
)


def test_the_run_that_passed_for_a_regression_is_flagged() -> None:
    # docs/benchmarks/latency.json at 61300f6: 940 changes in 20 s of the 2,000 asked, p50 4.4 s.
    found = problems(sent=940, asked_rate=100.0, duration_s=20.0, load=None)
    assert len(found) == 1
    assert "940 of 2000 changes, 47.0/s of 100/s" in found[0]
    assert verdict_row(found)[1].startswith("NOT COMPARABLE: the sender fell behind")


@pytest.mark.parametrize(("sent", "flagged"), [(6000, False), (5700, False), (5699, True), (0, True)])
def test_a_sender_within_five_percent_of_its_pace_is_comparable(sent: int, flagged: bool) -> None:
    assert bool(problems(sent=sent, asked_rate=100.0, duration_s=60.0, load=None)) is flagged


@pytest.mark.parametrize(("idle_share", "flagged"), [(0.3, False), (0.05, False), (0.049, True), (0.0, True)])
def test_a_run_on_a_saturated_machine_is_not_comparable_even_at_full_pace(idle_share: float, flagged: bool) -> None:
    # Today's box with a light client: 2,000 of 2,000 sent, 1% idle, the worker starved, p50 10 s for both builds.
    load = {"idle_share": idle_share, "load_average": 5.3}
    found = problems(sent=2000, asked_rate=100.0, duration_s=20.0, load=load)
    assert bool(found) is flagged
    if flagged:
        assert found[0].startswith(f"the machine had {idle_share:.0%} idle CPU (load 5.3)")


def test_comparable_runs_say_so() -> None:
    assert verdict_row([]) == ("verdict", "comparable: neither the client nor the machine was short of CPU")


def test_a_closed_loop_benchmark_is_judged_by_the_machine_alone() -> None:
    assert problems(sent=0, asked_rate=0.0, duration_s=30.0, load={"idle_share": 0.2, "load_average": 1.0}) == []
    assert problems(sent=0, asked_rate=0.0, duration_s=30.0, load={"idle_share": 0.01, "load_average": 4.0})


def test_proc_stat_counts_iowait_as_idle_and_steal_as_busy() -> None:
    #       user nice system idle iowait irq softirq steal guest guest_nice
    text = "cpu  100 0 50 800 20 0 10 20 0 0\ncpu0 50 0 25 400 10 0 5 10 0 0\n"
    assert parse_proc_stat(text, 100.0) == (1.8, 8.2)
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2 3\n", 100.0)


def test_pid_stat_reads_past_a_name_with_spaces_and_parentheses() -> None:
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30  # utime and stime are fields 14 and 15
    assert parse_pid_stat("42 (a (b) c) " + " ".join(fields), 100.0) == 3.0


def test_load_between_two_samples_names_the_busiest_processes() -> None:
    start = CpuTimes(
        busy_s=100.0, idle_s=50.0, own_s=1.0, processes={1: (5.0, "pytest"), 2: (9.0, "java"), 3: (1.0, "old")}
    )
    end = CpuTimes(
        busy_s=118.0,
        idle_s=52.0,
        own_s=5.0,
        # pid 3 now runs another program (a recycled pid): all of its time counts; pid 4 is new.
        processes={1: (15.0, "pytest"), 2: (11.0, "java"), 3: (2.0, "new"), 4: (0.5, "api")},
    )
    load = load_between(start, end, 10.0)
    assert load is not None
    assert load["idle_share"] == 0.1
    assert load["client_cores"] == 0.4
    assert [(p["command"], p["cores"]) for p in load["busiest"]] == [
        ("pytest", 1.0),
        ("java", 0.2),
        ("new", 0.2),
        ("api", 0.05),
    ]
    assert machine_rows(load)[1] == ("busiest processes (cores)", "pytest 1.00, java 0.20, new 0.20, api 0.05")


def test_the_client_loop_lag_is_summarised_and_shown_with_the_machine() -> None:
    # 99 timers on time and one 1 s stall: the median looks fine, yet the loop was behind half of the time.
    lag = lag_summary([0.0] * 99 + [1.0], period_s=0.01)
    assert lag == {"p50_ms": 0.0, "p99_ms": 1000.0, "max_ms": 1000.0, "late_share": 0.5}
    rows = machine_rows(None, lag)
    assert rows[0] == (
        "client event-loop lag p50 / p99 / max",
        "0.0 / 1000.0 / 1000.0 ms, behind 50% of the time (inside every latency)",
    )


def test_without_proc_the_load_is_unknown() -> None:
    assert load_between(None, None, 10.0) is None
    assert machine_rows(None) == [("machine while measuring", "unknown (no /proc)")]


@pytest.mark.parametrize(
    ("command", "short"),
    [
        ("/work/x/.venv/bin/python -m feastflow.cli api", "feastflow.cli api"),
        ("/work/x/.venv/bin/python -P -m bench.latency --duration 20", "bench.latency --duration 20"),
        ("/work/x/.venv/bin/python3 .venv/bin/pytest tests/unit -q", "pytest tests/unit -q"),
        ("/usr/lib/jvm/bin/java -Xmx512m kafka.Kafka", "java -Xmx512m kafka.Kafka"),
        ("[7]", "[7]"),
    ],
)
def test_commands_are_shortened_to_their_program(command: str, short: str) -> None:
    assert short_command(command) == short
