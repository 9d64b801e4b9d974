"""bench.fanout splits a change's latency at the moment it reached Redis: the way there, and the fan-out after."""

import pytest

from bench.fanout import _drain_timing_rows, _split_rows, latency_split
from bench.latency import Results


def test_each_leg_is_measured_from_its_own_start() -> None:
    sent = Results(sent_at={0: 10.0, 1: 20.0, 2: 30.0}, answered_at={0: 10.004, 1: 20.004})  # 2 was refused
    seen = {0: 10.010, 1: 20.010, 2: 30.010}  # 2 reached Redis all the same (answered late, after a timeout)
    probes = [(0, 10.030), (1, 20.030), (0, 10.030), (3, 40.0)]  # 3: never seen in Redis, so not split

    split = latency_split(sent, seen, probes)

    assert split["answered"]["p50"] == pytest.approx(4.0)
    assert split["in_redis"]["p50"] == pytest.approx(10.0)
    assert split["fan_out"]["p99"] == pytest.approx(20.0)
    assert "in Redis (admin API, Kafka, worker) 10.0 / 10.0 ms" in _split_rows({"latency_split_ms": split})[0][1]


def test_a_result_without_the_split_keeps_its_table() -> None:
    assert _split_rows({}) == []


def test_a_drain_says_when_streams_ended_and_when_their_clients_were_connected_again() -> None:
    report = {"stream_end_after_sigterm_s": {"p50": 1.0, "p99": 6.5}, "reconnected_s": {"p50": 0.2, "p99": 3.0}}

    (row,) = _drain_timing_rows(report)

    assert row[1] == "SIGTERM -> stream end 1.00 / 6.50 s; stream end -> connected to the gateway again 0.20 / 3.00 s"
    assert _drain_timing_rows({}) == []
