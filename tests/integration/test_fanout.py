"""The fan-out benchmark's small version on the local stack `make test` starts: a storm of a few hundred SSE
clients through the gateway all connect, get their first event, and then every change, with none missing."""

import argparse

import pytest

from bench.fanout import run

CLIENTS = 300


def bench_args(plain: bool = False, drain: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        clients=CLIENTS,
        processes=2,
        rate=10.0,
        duration=6.0,
        gateway="http://127.0.0.1:8080",
        plain=plain,
        waves=1,
        drain=drain,
    )


@pytest.mark.parametrize("plain", [False, True], ids=["gzip", "plain"])
async def test_a_storm_of_clients_through_the_gateway_all_connect_and_get_every_change(plain: bool) -> None:
    report = await run(bench_args(plain=plain))
    assert report["encoding"] == ("identity" if plain else "gzip")
    assert (report["connected"], report["failed"]) == (CLIENTS, 0), report
    assert report["changes_sent"] >= 55 and report["post_failures"] == 0, report
    assert (report["missing"], report["dropped"]) == (0, 0), report
    assert report["first_event_s"]["max"] < 20, report
    assert report["latency_ms"]["p50"] < 1000, report  # a sanity bound: the benchmark measures the real numbers
