"""Once Kafka acknowledged a write, the answer is 2xx: a failing best-effort write after it is logged and
counted, never raised (with fakes: the window between the acknowledgement and that write is too narrow to hit
with a real Redis outage)."""

from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web

from api import admin_views, order_views
from api.keys import REDIS, SETTINGS
from api.metrics import AFTER_PUBLISH_FAILURES
from core.settings import Settings
from models.events import Event, EventType, PriceSet, utc_now
from models.orders import OrderLine, OrderRequest


class RedisGone:
    """Every command fails the way redis-py fails when the server went away."""

    def pipeline(self, **_: Any) -> "RedisGone":
        return self

    async def __aenter__(self) -> "RedisGone":
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        def queued(*_: Any, **__: Any) -> None:
            return None

        return queued

    async def execute(self) -> None:
        raise ConnectionError("Connection refused")

    async def eval(self, *_: Any) -> None:
        raise ConnectionError("Connection refused")


def _request() -> web.Request:
    return cast(web.Request, SimpleNamespace(app={REDIS: RedisGone(), SETTINGS: Settings()}))


def _failures(write: str) -> float:
    value = AFTER_PUBLISH_FAILURES.labels(write)._value.get()
    return float(value)


async def test_marking_published_events_failing_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    event = Event("e1", EventType.PRICE_SET, "blr", utc_now(), "admin", PriceSet("r1", "i1", 100))
    before = _failures("event_status")
    await admin_views._mark_published(_request(), (event,), utc_now())
    assert _failures("event_status") == before + 1
    assert "marking 1 published events failed" in caplog.text


async def test_showing_an_order_as_pending_failing_is_counted_not_raised() -> None:
    order = OrderRequest("k1", "blr", "r1", (OrderLine("a", 1, 100),))
    before = _failures("order_pending")
    await order_views._show_pending(_request(), "o1", order, b"{}", "asha")
    assert _failures("order_pending") == before + 1
