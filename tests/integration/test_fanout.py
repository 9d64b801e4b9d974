"""The fan-out benchmark's small version on the local stack `make test` starts: a storm of a few hundred SSE
clients through the gateway all connect, get their first event, and then every change, with none missing; and
when a pod drains under load, its clients all resume from history (no snapshot) and miss nothing."""

import argparse

import aiohttp
import pytest

from bench.fanout import run
from core.settings import Settings
from ops.stack import LocalStack, RolloutFailed
from tests.support.polling import poll_until

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


async def test_a_drained_pods_clients_all_resume_from_history_and_miss_nothing() -> None:
    report = await run(bench_args(drain=True))
    assert (report["connected"], report["failed"]) == (CLIENTS, 0), report
    assert report["drained"] == "api-1", report
    assert report["resumed"] >= CLIENTS // 6, report  # the drained pod held about half of them
    assert report["resume_snapshots"] == 0 and report["resume_failures"] == {}, report
    assert report["resumed_s"]["max"] < 10, report
    assert report["post_failures"] == 0, report
    assert (report["missing"], report["dropped"]) == (0, 0), report
    # The supervisor starts the drained pod again: the stack is whole for whatever runs next.
    stack = LocalStack(Settings.from_env())
    async with aiohttp.ClientSession() as http:

        async def every_pod_ready() -> bool:
            try:
                units = stack.api_units()
            except RolloutFailed:  # between the pod's exit and the supervisor's restart
                return False
            for unit in units:
                try:
                    async with http.get(f"http://127.0.0.1:{unit.port}/readyz") as response:
                        if response.status != 200:
                            return False
                except aiohttp.ClientError:
                    return False
            return True

        await poll_until(every_pod_ready, 60, 0.5, message="the drained pod did not come back")
