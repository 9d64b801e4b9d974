"""A private Feast Flow stack for a test: its own namespace (topics, consumer group, Redis keys, SQL schema)
on the shared real Kafka, Redis and PostgreSQL, with real worker and API processes."""

import asyncio
import contextlib
import os
import secrets
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from core.schema import migrate
from core.settings import Settings
from core.tokens import Role, issue_token
from core.topics import catalog_topic_name
from ops.create_topics import ensure_topics
from tests.support.processes import Process, feastflow_command, free_port

TEST_REDIS_DB = 1
TEST_PG_DATABASE = "feastflow_test"
CITIES = "blr:Bengaluru:INR,mum:Mumbai:INR,ams:Amsterdam:EUR"


SHARED_PG_DSN = f"dbname={TEST_PG_DATABASE} user=feastflow password=feastflow host=127.0.0.1 port=5432"
# Every namespace a stack of this test session made, by Kafka: its topics go when the session ends
# (delete_session_topics), so a broker that serves many runs does not pile up thousands of partitions.
SESSION_NAMESPACES: dict[str, set[str]] = {}


def _pg_dsn(schema: str | None, base: str = SHARED_PG_DSN) -> str:
    return base + (f" options='-c search_path={schema}'" if schema else "")


@dataclass
class Stack:
    root: Path
    namespace: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, Process] = field(default_factory=dict)
    apis: list[Process] = field(default_factory=list)
    # Other infrastructure than the shared services (tests/support/infra.py): where each one is.
    kafka_bootstrap: str | None = None  # None: FEASTFLOW_KAFKA or the settings' default, as before
    redis_url: str = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    pg_dsn_base: str = SHARED_PG_DSN

    def __post_init__(self) -> None:
        self.secret = secrets.token_hex(32)  # 64 hex characters: pods refuse secrets under 32 bytes
        self.env = {
            **os.environ,
            "FEASTFLOW_NAMESPACE": self.namespace,
            "FEASTFLOW_DATA": str(self.root / "data"),
            **({"FEASTFLOW_KAFKA": self.kafka_bootstrap} if self.kafka_bootstrap else {}),
            "FEASTFLOW_REDIS_URL": self.redis_url,
            "FEASTFLOW_PG_DSN": _pg_dsn(self.namespace, self.pg_dsn_base),
            "FEASTFLOW_JWT_SECRET": self.secret,
            "FEASTFLOW_CITIES": CITIES,
            "FEASTFLOW_DRAIN_S": "2",
            **self.extra_env,
        }
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        SESSION_NAMESPACES.setdefault(self.settings.kafka_bootstrap, set()).add(self.namespace)

    @property
    def settings(self) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return Settings.from_env()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @property
    def topic(self) -> str:
        return catalog_topic_name(self.namespace)

    def token(self, role: Role = Role.ADMIN, subject: str = "tester", ttl_s: int = 3600) -> str:
        """A token living `ttl_s` seconds; a negative `ttl_s` gives one that expired that long ago."""
        if ttl_s <= 0:
            return issue_token(self.secret, role, subject, 60, issued_at=int(time.time()) + ttl_s - 60)
        return issue_token(self.secret, role, subject, ttl_s)

    def bearer(self, role: Role = Role.ADMIN, subject: str = "tester") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def start(self, api_count: int = 1, worker_names: tuple[str, ...] = ("w1",)) -> "Stack":
        await prepare_schema(self.namespace, self.pg_dsn_base)
        settings = self.settings
        await ensure_topics(settings)
        await migrate(settings.pg_dsn)
        # Side by side: an API pod needs Redis, Kafka and PostgreSQL, never a worker.
        await asyncio.gather(
            *(self.start_worker(name) for name in worker_names), *(self.start_api() for _ in range(api_count))
        )
        return self

    async def start_worker(self, name: str, code: Path | None = None, **extra_env: str) -> Process:
        """A worker process; `code` runs another checkout of the project (another version of the worker)."""
        existing = self.workers.get(name)
        port = int(existing.ready_url.split(":")[2].split("/")[0]) if existing else free_port()
        env = {**self.env, "FEASTFLOW_WORKER_NAME": name, "FEASTFLOW_WORKER_WEB_PORT": str(port), **extra_env}
        command = feastflow_command("worker")
        if code is not None:
            env["PYTHONPATH"] = str(code)
            command = [command[0], "-P", *command[1:]]
        process = Process(
            f"worker-{name}",
            command,
            env,
            self.logs / f"worker-{name}.log",
            f"http://127.0.0.1:{port}/feastflow/ready/",
        )
        process.start()
        self.workers[name] = process
        await process.wait_ready()
        return process

    async def start_api(self, **extra_env: str) -> Process:
        port = free_port()
        env = {**self.env, "FEASTFLOW_API_PORT": str(port), **extra_env}
        index = len(self.apis) + 1
        process = Process(
            f"api-{index}",
            feastflow_command("api"),
            env,
            self.logs / f"api-{index}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        process.start()
        self.apis.append(process)
        await process.wait_ready()
        return process

    def api_url(self, index: int = 0) -> str:
        return self.apis[index].ready_url.removesuffix("/readyz")

    def worker_url(self, name: str = "w1") -> str:
        return self.workers[name].ready_url.removesuffix("/feastflow/ready/")

    def stop(self) -> None:
        """Every process is told at once, then waited for: each drains in its own time, not one after another."""
        running = [process for process in [*self.apis, *self.workers.values()] if process.alive]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send(signal.SIGTERM)
        for process in running:
            try:
                process.wait(30)
            except Exception:
                process.kill()

    def redis(self) -> Redis:
        return Redis.from_url(self.env["FEASTFLOW_REDIS_URL"])

    async def end_offsets(self, topic: str | None = None) -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic or self.topic, p) for p in range(self.settings.partitions)]
            ends = await consumer.end_offsets(partitions)
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            await consumer.stop()

    async def post_events(self, session: aiohttp.ClientSession, body: Any, index: int = 0) -> aiohttp.ClientResponse:
        response = await session.post(f"{self.api_url(index)}/v1/admin/events", json=body, headers=self.admin_headers())
        await response.read()
        return response

    async def menu(self, session: aiohttp.ClientSession, city: str, index: int = 0) -> dict[str, Any]:
        async with session.get(f"{self.api_url(index)}/v1/cities/{city}/menu") as response:
            assert response.status == 200, await response.text()
            menu: dict[str, Any] = await response.json()
            return menu


async def prepare_schema(schema: str, base: str = SHARED_PG_DSN) -> None:
    async with aiopg.connect(_pg_dsn(None, base)) as conn, conn.cursor() as cur:
        await cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def items_by_id(menu: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["item_id"]: item for r in menu["restaurants"] for item in r["items"]}


async def delete_session_topics(timeout_s: float = 30.0) -> list[str]:
    """Delete the topics of every namespace this session's stacks made (theirs only: other runs may share the
    broker). A Kafka that is gone (a chaos test's private one) is skipped. Returns the topics deleted."""
    deleted: list[str] = []
    for bootstrap, namespaces in SESSION_NAMESPACES.items():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="feastflow-tests")
        try:
            async with asyncio.timeout(timeout_s):
                await admin.start()
                names = [t for t in await admin.list_topics() if t.split(".")[0].split("-")[0] in namespaces]
                if names:
                    await admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
                deleted += names
        except Exception as exc:  # cleanup never fails a run
            print(f"tests: topics of {len(namespaces)} namespaces on {bootstrap} not deleted: {exc!r}")
        finally:
            await admin.close()
    return deleted
