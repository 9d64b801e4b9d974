"""The fan-out's per-client work stays a write and a few comparisons: nothing per client per batch that grows
with the number of clients or looks anything up (a metric's labels() was a tenth of a pod's fan-out time)."""

import asyncio
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from api.feed import Delivery, Subscriber, events_sent
from api.metrics import SSE_EVENTS_SENT
from api.readmodel import FeedEntry
from tests.support.fakes import RecordingTransport

CLIENTS = 50
BATCHES = 20


def sent(kind: str) -> float:
    return REGISTRY.get_sample_value("feastflow_api_sse_events_sent_total", {"kind": kind}) or 0.0


def test_a_batch_to_many_clients_looks_the_counter_up_once_per_kind_and_counts_every_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[dict[str, Any]] = []
    real_labels = SSE_EVENTS_SENT.labels

    def counting_labels(*args: Any, **kwargs: Any) -> Any:
        lookups.append(kwargs)
        return real_labels(*args, **kwargs)

    monkeypatch.setattr(SSE_EVENTS_SENT, "labels", counting_labels)
    events_sent.cache_clear()
    before = {kind: sent(kind) for kind in ("menu", "order")}
    subscribers = [Subscriber(1_000_000, kind="order" if n % 2 else "menu") for n in range(CLIENTS)]
    for subscriber in subscribers:
        subscriber.go_live(cast(asyncio.WriteTransport, RecordingTransport()), chunked=True)

    for n in range(BATCHES):
        delivery = Delivery([FeedEntry(f"{n + 1}-{i}", "item", "{}") for i in range(3)])
        for subscriber in subscribers:
            subscriber.deliver(delivery)

    assert sorted(lookup["kind"] for lookup in lookups) == ["menu", "order"]
    events_each_kind = CLIENTS // 2 * BATCHES * 3
    assert sent("menu") - before["menu"] == events_each_kind
    assert sent("order") - before["order"] == events_each_kind
