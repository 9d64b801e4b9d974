"""Observability on real components: the local stack's Prometheus scrapes every unit and answers the key
queries after traffic; a request id follows an admin change from the API through Kafka into the worker's log;
an API pod with several processes reports the sum of all of them."""

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from core.settings import Settings
from core.tokens import Role, issue_token
from ops.prometheus import instant
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.polling import poll_until
from tests.support.sse import SseClient
from tests.support.stack import Stack

GATEWAY = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"
SSE_CLIENTS = 20


async def query(http: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
    async with http.get(f"{PROMETHEUS}/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def value_of(http: aiohttp.ClientSession, promql: str) -> float | None:
    return await instant(http, PROMETHEUS, promql)  # the project's own query, as the canary uses it


async def eventually(check: Callable[[], Awaitable[None]], timeout: float = 90.0) -> None:
    """Prometheus scrapes every 5 s and evaluates rules every 15 s: poll until the check's assertions hold."""

    async def holds() -> bool:
        await check()
        return True

    await poll_until(holds, timeout, 2, f"{check.__name__} never held", retry_on=(AssertionError,))


async def test_prometheus_scrapes_every_unit_and_answers_the_key_queries() -> None:
    settings = Settings.from_env()
    admin = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, Role.ADMIN, 'observer', 600)}"}
    api_ports = (
        (settings.data_dir / "run" / "api-ports").read_text().split()
        if (settings.data_dir / "run" / "api-ports").exists()
        else ["8081", "8082"]
    )
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as clients:
        for _ in range(SSE_CLIENTS):
            await clients.enter_async_context(SseClient(f"{GATEWAY}/v1/cities/blr/menu/stream"))
        async with http.get(f"{GATEWAY}/v1/cities/blr/menu") as response:
            menu = await response.json()
        item = menu["restaurants"][0]["items"][0] if "restaurants" in menu else None
        assert item is not None, "the seeded demo menu is missing"
        restaurant = menu["restaurants"][0]["restaurant_id"]
        for step in range(10):
            body = {
                "type": "price.set",
                "city": "blr",
                "restaurant_id": restaurant,
                "item_id": item["item_id"],
                "price_cents": 3000 + step,
            }
            async with http.post(f"{GATEWAY}/v1/admin/events", json=body, headers=admin) as response:
                assert response.status == 202, await response.text()
        for _ in range(30):
            async with http.get(f"{GATEWAY}/v1/cities/blr/menu") as response:
                assert response.status == 200

        async def all_targets_up() -> None:
            async with http.get(f"{PROMETHEUS}/api/v1/targets") as response:
                targets = (await response.json())["data"]["activeTargets"]
            by_job: dict[str, list[str]] = {}
            for target in targets:
                assert target["health"] == "up", target
                by_job.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
            assert sorted(by_job.get("feastflow-api", [])) == sorted(f"127.0.0.1:{p}" for p in api_ports)
            assert len(by_job.get("feastflow-worker", [])) == 1

        async def key_series_are_sane() -> None:
            clients = await value_of(http, 'sum(feastflow_api_sse_clients{kind="menu"})')
            assert clients is not None and clients >= SSE_CLIENTS
            projected = await value_of(http, "sum(increase(feastflow_worker_freshness_seconds_count[2m]))")
            assert projected is not None and projected >= 1
            p99 = await value_of(http, "feastflow:freshness_seconds:p99_1m")
            assert p99 is not None and 0 < p99 < 5, p99
            lag = await query(http, "feastflow:consumer_lag:sum")
            assert {row["metric"]["topic"] for row in lag} >= {"catalog-events", "order-commands"}
            assert all(0 <= float(row["value"][1]) < 1000 for row in lag)
            reads = await value_of(http, 'sum(rate(feastflow_api_requests_total{route="/v1/cities/{city}/menu"}[1m]))')
            assert reads is not None and reads > 0
            builds = await query(http, "feastflow_build_info")
            assert {row["metric"]["role"] for row in builds} >= {"api", "all"}

        await eventually(all_targets_up)
        await eventually(key_series_are_sane)

    async with aiohttp.ClientSession() as http, http.get(f"{PROMETHEUS}/api/v1/rules") as response:
        groups = (await response.json())["data"]["groups"]
    assert {g["name"] for g in groups} == {"feastflow-recording", "feastflow-objectives"}
    assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("observability"))).start(api_count=0)
    yield running
    running.stop()


async def test_a_request_id_follows_an_admin_change_into_the_worker_log(stack: Stack) -> None:
    await stack.start_api()
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    async with aiohttp.ClientSession() as http:
        await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "idli", 2)))
        headers = {**stack.admin_headers(), "X-Request-Id": request_id}
        async with http.post(
            f"{stack.api_url()}/v1/admin/events", json=price_set("blr", "idli", "idli-1", 4100), headers=headers
        ) as response:
            assert response.status == 202 and response.headers["X-Request-Id"] == request_id
            (event_id,) = (await response.json())["event_ids"]
        await wait_applied(stack, [event_id])
        async with http.get(f"{stack.api_url()}/v1/cities", headers={"X-Request-Id": "bad id with spaces"}) as response:
            minted = response.headers["X-Request-Id"]
        assert minted != "bad id with spaces" and len(minted) == 32

    def lines_with(log: str) -> list[dict[str, Any]]:
        return [
            orjson.loads(line)
            for line in (stack.logs / log).read_text().splitlines()
            if request_id in line and line.startswith("{")
        ]

    await poll_until(  # it logs after the audit write
        lambda: [line for line in lines_with("worker-w1.log") if line.get("event_id") == event_id],
        10,
        0.1,
        "the worker never logged the change",
    )
    api_lines = lines_with("api-1.log")
    assert any(line["message"].startswith("published") and event_id in line["event_ids"] for line in api_lines)
    assert all(line["request_id"] == request_id for line in api_lines)
    worker_lines = lines_with("worker-w1.log")
    applied = [line for line in worker_lines if line.get("event_id") == event_id]
    assert applied and applied[0]["city"] == "blr" and applied[0]["message"] == "event price.set applied"


async def test_an_api_pod_with_several_processes_reports_the_sum_of_all(stack: Stack) -> None:
    pod = await stack.start_api(FEASTFLOW_API_PROCESSES="3")
    url = pod.ready_url.removesuffix("/readyz")
    requests = 60
    async with aiohttp.ClientSession() as http:
        for _ in range(requests):
            # a new connection each time, so the kernel spreads them over the processes
            async with http.get(f"{url}/v1/cities", headers={"Connection": "close"}) as response:
                assert response.status == 200
        counts, readiness = set(), []

        async def scrape() -> bool:
            async with http.get(f"{url}/metrics", headers={"Connection": "close"}) as response:
                text = await response.text()
            counts.add(_sample(text, 'feastflow_api_requests_total{method="GET",route="/v1/cities",status="200"}'))
            readiness.append(_sample(text, "feastflow_api_ready"))
            return len(readiness) >= 6 and readiness[-1] == 1.0

        # The pod is ready when its least ready process is: a process still starting holds it at 0 for a moment.
        await poll_until(scrape, 3, 0.1, f"the pod never reported ready: {readiness}")
    assert counts == {float(requests)}, "every scrape, whichever process answers it, must see all requests"
    pod.terminate(timeout=30)
    assert pod.popen is not None and pod.popen.returncode == 0


def _sample(exposition: str, series: str) -> float | None:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
