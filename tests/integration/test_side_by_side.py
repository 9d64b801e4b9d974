"""Two versions of the worker side by side on the same topics, as during a rollout: the current one and one
that knows an extra optional field (`spicy` on items). Each applies the other's events correctly."""

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from core.settings import REPO_ROOT
from models.events import SCHEMA_VERSION, utc_now
from tests.support.catalog import statuses, wait_applied
from tests.support.stack import Stack, items_by_id

CITIES = "blr:Bengaluru:INR,mum:Mumbai:INR,del:Delhi:INR,ams:Amsterdam:EUR,ber:Berlin:EUR,nyc:New York:USD"


def next_version(root: Path) -> Path:
    """This checkout, taught one more optional item field: the next version of the worker."""
    code = root / "next-version"
    for package in ("models", "core", "streams", "api", "ops"):
        shutil.copytree(REPO_ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    edits = {
        "models/events.py": [
            (
                "    price_cents: PriceCents | None = None\n\n\n"
                "@dataclass(frozen=True, slots=True)\nclass ItemRemoved:",
                "    price_cents: PriceCents | None = None\n    spicy: Flag | None = None\n\n\n"
                "@dataclass(frozen=True, slots=True)\nclass ItemRemoved:",
            ),
        ],
        "models/catalog.py": [
            ("    removed: bool = False\n", "    removed: bool = False\n    spicy: bool = False\n"),
            (
                '            "version": self.version,\n        }\n\n\n'
                "@dataclass(frozen=True, slots=True)\nclass CityPricing",
                '            "version": self.version,\n            "spicy": self.spicy,\n        }\n\n\n'
                "@dataclass(frozen=True, slots=True)\nclass CityPricing",
            ),
            (
                "            position=position,\n        )\n    assert live is not None",
                "            position=position,\n"
                "            spicy=_keep(payload.spicy, live.spicy if live else False),\n"
                "        )\n    assert live is not None",
            ),
        ],
    }
    for name, replacements in edits.items():
        path = code / name
        text = path.read_text()
        for old, new in replacements:
            assert old in text, f"{name} no longer has the spot to patch: {old[:40]!r}"
            text = text.replace(old, new)
        path.write_text(text)
    return code


def batch(city: str, n: int, *, with_spicy: bool) -> tuple[bytes, str]:
    event_id = f"sbs-{city}-{n}-{'v2' if with_spicy else 'v1'}"
    restaurant = {"restaurant_id": "sbs", "name": "Side by Side"}
    item: dict[str, object] = {"restaurant_id": "sbs", "item_id": f"sbs-{n}", "name": f"Dish {n}", "price_cents": 700}
    if with_spicy:
        item["spicy"] = True
    events = [
        {
            "event_id": f"{event_id}-r",
            "type": "restaurant.upserted",
            "schema_version": SCHEMA_VERSION + 1,
            "occurred_at": utc_now(),
            "actor": "test",
            "data": restaurant,
        },
        {
            "event_id": event_id,
            "type": "item.upserted",
            "schema_version": SCHEMA_VERSION + int(with_spicy),
            "occurred_at": utc_now(),
            "actor": "test",
            "data": item,
        },
    ]
    return orjson.dumps({"batch_id": event_id, "city": city, "events": events}), event_id


@pytest.fixture
async def two_versions(tmp_path: Path) -> AsyncIterator[Stack]:
    code = next_version(tmp_path)  # before any process starts: a failed patch leaves nothing running
    stack = Stack(tmp_path, extra_env={"FEASTFLOW_CITIES": CITIES})
    stack.env["FEASTFLOW_CITIES"] = CITIES
    try:
        await stack.start(api_count=1, worker_names=("current",))
        await stack.start_worker("next", code=code)
        yield stack
    finally:
        stack.stop()


async def owned_cities(stack: Stack, http: aiohttp.ClientSession, worker: str) -> list[str]:
    async with http.get(f"{stack.worker_url(worker)}/feastflow/assignment/") as response:
        partitions = {p["partition"] for p in (await response.json())["partitions"] if p["topic"] == stack.topic}
    partitioner = DefaultPartitioner()
    every = list(range(stack.settings.partitions))
    return [c.code for c in stack.settings.cities if partitioner(c.code.encode(), every, every) in partitions]


async def test_current_and_next_worker_apply_each_others_events(
    two_versions: Stack, http: aiohttp.ClientSession
) -> None:
    stack = two_versions
    current, following = await owned_cities(stack, http, "current"), await owned_cities(stack, http, "next")
    assert current and following, f"each version should own a city: {current} / {following}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    event_ids = []
    try:
        for city in (current[0], following[0]):
            for n, with_spicy in ((1, True), (2, False)):  # a next-version event and a current one
                value, event_id = batch(city, n, with_spicy=with_spicy)
                await producer.send_and_wait(stack.topic, value, key=city.encode())
                event_ids.append(event_id)
    finally:
        await producer.stop()
    await wait_applied(stack, event_ids)
    assert set((await statuses(stack, event_ids)).values()) == {"applied"}
    old_city = items_by_id(await stack.menu(http, current[0]))
    assert {"sbs-1", "sbs-2"} <= set(old_city) and "spicy" not in old_city["sbs-1"]  # ignored, not refused
    new_city = items_by_id(await stack.menu(http, following[0]))
    assert new_city["sbs-1"]["spicy"] is True and new_city["sbs-2"]["spicy"] is False  # default filled in
