"""Dependency outages through the real middleware: Kafka, Redis and PostgreSQL errors become 503 with
Retry-After (never 500), and only they do. Kafka is tested here rather than by cutting it in an
integration test: its clients learn the broker's address from metadata, which no proxy in front of the
bootstrap address can intercept."""

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import aiokafka.errors
import psycopg2
import pytest
import redis.exceptions
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from api.errors import RateLimited
from api.keys import MENUS, PUBLISHER, RATE_LIMITER, REDIS
from api.main import create_app
from api.middlewares import errors_middleware, metrics_middleware, request_id_middleware
from api.ratelimit import RateLimiter
from api.readmodel import MenuReader
from core.publisher import EventPublisher
from core.settings import Settings
from core.tokens import Role, issue_token
from tests.support.contract import assert_contract_answer
from tests.support.processes import free_port

OUTAGES: list[BaseException] = [
    aiokafka.errors.KafkaConnectionError("broker down"),
    aiokafka.errors.KafkaTimeoutError(),
    aiokafka.errors.NodeNotReadyError(),
    aiokafka.errors.RequestTimedOutError(),
    aiokafka.errors.NotLeaderForPartitionError(),
    aiokafka.errors.ProducerClosed(),
    redis.exceptions.ConnectionError("refused"),
    redis.exceptions.TimeoutError("slow"),
    redis.exceptions.BusyLoadingError("loading"),
    psycopg2.OperationalError("server closed the connection unexpectedly"),
    psycopg2.InterfaceError("connection already closed"),
    TimeoutError(),
]


def _raising(exc: BaseException) -> Callable[[web.Request], Any]:
    async def view(request: web.Request) -> web.Response:
        raise exc

    return view


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[web.Application], Any]]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(app: web.Application) -> TestClient[web.Request, web.Application]:
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda e: type(e).__name__)
async def test_an_outage_raised_anywhere_answers_503_with_retry_after(
    client_for: Callable[[web.Application], Any], outage: BaseException
) -> None:
    app = web.Application(middlewares=[request_id_middleware, metrics_middleware, errors_middleware])
    app.router.add_get("/x", _raising(outage))
    client = await client_for(app)
    async with client.get("/x") as response:
        error = await assert_contract_answer(response)
        assert response.status == 503 and error is not None and error["code"] == "dependency_unavailable"


@pytest.mark.parametrize(
    "bug",
    [ValueError("a bug"), aiokafka.errors.MessageSizeTooLargeError(), redis.exceptions.ResponseError("WRONGTYPE")],
    ids=lambda e: type(e).__name__,
)
async def test_what_is_no_outage_stays_a_500_in_the_contract_shape(
    client_for: Callable[[web.Application], Any], bug: BaseException
) -> None:
    app = web.Application(middlewares=[errors_middleware])
    app.router.add_get("/x", _raising(bug))
    client = await client_for(app)
    async with client.get("/x") as response:
        assert response.status == 500
        assert (await response.json())["error"]["code"] == "internal"


class KafkaDown:
    """The API's publisher while no broker answers."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.attempts = 0

    async def publish(self, batch: Any) -> int:
        self.attempts += 1
        raise self.error

    async def publish_order(self, command: Any) -> int:
        self.attempts += 1
        raise self.error


@pytest.mark.parametrize(
    "error", [aiokafka.errors.KafkaConnectionError("no broker"), aiokafka.errors.KafkaTimeoutError()]
)
async def test_an_admin_write_while_kafka_is_down_answers_503_with_retry_after(
    client_for: Callable[[web.Application], Any], error: BaseException
) -> None:
    """The real app and view; only the dependencies are stand-ins: Kafka refuses, Redis is unreachable too
    (the rate limiter then counts in-process and lets the write through to Kafka)."""
    settings = Settings(jwt_secret="s" * 64, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(settings)
    app.cleanup_ctx.clear()
    dead_redis = Redis.from_url(settings.redis_url)
    publisher = KafkaDown(error)
    app[REDIS] = dead_redis
    app[RATE_LIMITER] = RateLimiter(dead_redis, settings.namespace)
    app[MENUS] = MenuReader(dead_redis, settings.namespace)
    app[PUBLISHER] = cast(EventPublisher, publisher)  # a stand-in with the methods the views call
    client = await client_for(app)
    body = {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "price_cents": 100}
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, Role.ADMIN, 'ops')}"}
    async with client.post("/v1/admin/events", json=body, headers=headers) as response:
        await assert_contract_answer(response)
        assert response.status == 503
    assert publisher.attempts == 1  # the limiter let it through; Kafka was what refused
    await dead_redis.aclose()


async def test_the_rate_limiter_counts_in_process_while_redis_is_down() -> None:
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    limiter = RateLimiter(dead_redis, "unit")
    try:
        for _ in range(3):
            await limiter.check("admin", "ops", per_second=3)
        with pytest.raises(RateLimited) as refused:
            await limiter.check("admin", "ops", per_second=3)
        assert int(refused.value.headers["Retry-After"]) >= 1
        await limiter.check("admin", "someone-else", per_second=3)
    finally:
        await dead_redis.aclose()
