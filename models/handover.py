"""The worker handover's two records: the in-band marker a successor puts on every partition it takes over, and
the synthetic probe it sends to prove its build applies a price change before it may take over.

A marker is a control record, not an event batch: `{"control": "worker.handover", ...}`. Every worker reads it
in log order with the records around it, so each partition has one exact position where projecting passes from
the predecessor's consumer group to the successor's (streams.handover).

The probe lives in a city of its own (PROBE_CITY), which no city list shows and admins cannot write to: a probe
price change reaches only the operators' SSE client that follows it.
"""

import uuid
from dataclasses import dataclass

import orjson

from models.cities import City
from models.errors import InvalidEvent
from models.events import Event, EventBatch, EventType, ItemUpserted, Payload, PriceSet, RestaurantUpserted

MARKER = "worker.handover"
_MARKER_PREFIX = b'{"control":"worker.handover"'

PROBE_CITY = City("probe", "Handover probe", "USD")
PROBE_RESTAURANT = "handover-probe"
PROBE_ITEM = "probe-item"
PLACEHOLDER_CENTS = 1
PROBE_PRICES = range(100, 10_000)  # a probe price comes from here: never the placeholder


@dataclass(frozen=True, slots=True)
class HandoverMarker:
    epoch: int  # fencing epoch the successor projects under; Redis refuses writes of an older one
    group: str  # the consumer group taking over
    at: str

    def encode(self) -> bytes:
        return orjson.dumps({"control": MARKER, "epoch": self.epoch, "group": self.group, "at": self.at})


def decode_marker(raw: bytes | None) -> HandoverMarker | None:
    """The marker a record carries, None for any other record (cheap: a prefix test first)."""
    if raw is None or not raw.startswith(_MARKER_PREFIX):
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"handover marker is not JSON: {exc}") from None
    epoch, group, at = document.get("epoch"), document.get("group"), document.get("at", "")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1 or not isinstance(group, str) or not group:
        raise InvalidEvent("handover marker needs an epoch >= 1 and a group")
    return HandoverMarker(epoch, group, str(at))


def next_probe_price(previous: int | None, seed: int) -> int:
    """A probe price in PROBE_PRICES that differs from the previous one, so a build ignoring it is caught."""
    price = PROBE_PRICES[seed % len(PROBE_PRICES)]
    return price if price != previous else PROBE_PRICES[(seed + 1) % len(PROBE_PRICES)]


def probe_batches(price_cents: int, actor: str, now: str) -> tuple[EventBatch, EventBatch]:
    """Two records: the probe restaurant and item (upserts, the item at a placeholder price of 1, which a build
    ignoring the change would keep), then the price change of the item to `price_cents`. Two records, because
    one batch changes an item once (changes are idempotent by log position)."""
    setup = _batch(
        now,
        actor,
        (EventType.RESTAURANT_UPSERTED, RestaurantUpserted(PROBE_RESTAURANT, "Handover probe")),
        (
            EventType.ITEM_UPSERTED,
            ItemUpserted(PROBE_RESTAURANT, PROBE_ITEM, "Probe item", available=True, price_cents=PLACEHOLDER_CENTS),
        ),
    )
    change = _batch(now, actor, (EventType.PRICE_SET, PriceSet(PROBE_RESTAURANT, PROBE_ITEM, price_cents)))
    return setup, change


def _batch(now: str, actor: str, *changes: tuple[EventType, Payload]) -> EventBatch:
    events = tuple(
        Event(event_id=uuid.uuid4().hex, type=kind, city=PROBE_CITY.code, occurred_at=now, actor=actor, payload=payload)
        for kind, payload in changes
    )
    return EventBatch(city=PROBE_CITY.code, events=events, batch_id=events[-1].event_id)
