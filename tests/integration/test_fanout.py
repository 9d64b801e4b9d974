"""The fan-out benchmark's small version on the local stack `make test` starts: a storm of a few hundred SSE
clients through the gateway all connect, get their first event, and then every change, with none missing; and
when a pod is drained under them, its clients all resume from history."""

import argparse

import aiohttp
import pytest

from bench.fanout import run
from core.settings import Settings
from ops.stack import LocalStack, RolloutFailed
from tests.support.polling import poll_until

CLIENTS = 300
NOT_BACK = (RolloutFailed, aiohttp.ClientError, AssertionError)  # a pod not (yet) started again


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


async def test_a_drained_pods_clients_all_come_back_from_history_and_miss_nothing() -> None:
    report = await run(bench_args(drain=True))
    assert report["drained"] and (report["connected"], report["failed"]) == (CLIENTS, 0), report
    # The gateway spreads the clients over both pods: about half of them were on the drained one.
    assert report["resumed"] >= CLIENTS // 4 and report["resume_snapshots"] == 0, report
    assert (report["missing"], report["dropped"]) == (0, 0), report
    await poll_until(every_pod_ready, 60, 0.5, "the drained pod was not started again", retry_on=NOT_BACK)


async def every_pod_ready() -> bool:
    """The supervisor starts the drained pod again; the rest of the suite needs both."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for unit in LocalStack(Settings.from_env()).api_units():
            async with http.get(f"http://127.0.0.1:{unit.port}/readyz") as response:
                assert response.status == 200, unit
    return True
