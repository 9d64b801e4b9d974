"""Orders: what a customer may ask for, how an order is priced against the catalog, and its lifecycle.

Pure: the order agent persists what these functions decide.
"""

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, get_args

import orjson
from pydantic import ConfigDict, Field, TypeAdapter

from models.catalog import CatalogView
from models.errors import InvalidEvent
from models.events import DECLARED
from models.fields import (
    MAX_QUANTITY as MAX_QUANTITY,
)
from models.fields import (
    Actor,
    CityCode,
    Id,
    IdempotencyKey,
    PriceCents,
    Quantity,
    RequestId,
    Timestamp,
)
from models.validation import validated

MAX_LINES = 50
_ORDER_IDS = uuid.UUID("6f1c1f0e-0b7e-4c52-9d1f-6b1f0f5e4c2a")


class OrderStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PREPARING = "preparing"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


# Which status may follow which, once the order agent has accepted an order.
NEXT_STATUSES: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.ACCEPTED: frozenset({OrderStatus.PREPARING, OrderStatus.CANCELLED}),
    OrderStatus.PREPARING: frozenset({OrderStatus.OUT_FOR_DELIVERY, OrderStatus.CANCELLED}),
    OrderStatus.OUT_FOR_DELIVERY: frozenset({OrderStatus.DELIVERED}),
}
# What a restaurant or an admin may move an order to (the lifecycle above decides from which status).
AdvanceableStatus = Literal["preparing", "out_for_delivery", "delivered", "cancelled"]
ADVANCEABLE = frozenset(OrderStatus(status) for status in get_args(AdvanceableStatus))


def may_advance(current: str, requested: str) -> bool:
    try:
        return OrderStatus(requested) in NEXT_STATUSES.get(OrderStatus(current), frozenset())
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class OrderLine:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    item_id: Id
    quantity: Quantity
    # The price the customer was shown: the order is refused if the item's price is not this any more.
    price_cents: PriceCents

    def as_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "quantity": self.quantity, "price_cents": self.price_cents}


Lines = Annotated[tuple[OrderLine, ...], Field(min_length=1, max_length=MAX_LINES)]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A customer's order as the API accepts it, before it has an id."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    # Retrying with the same key returns the same order; the same key with another body is a 409.
    idempotency_key: IdempotencyKey
    city: CityCode
    restaurant_id: Id
    lines: Lines

    def fingerprint(self) -> str:
        """Same key, same body: the same order. The fingerprint is how 'same body' is told."""
        canonical = orjson.dumps(
            {"city": self.city, "restaurant_id": self.restaurant_id, "lines": [line.as_json() for line in self.lines]},
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(canonical).hexdigest()


def order_id_for(customer: str, idempotency_key: str) -> str:
    """Deterministic, so every retry and every racing duplicate of one request names the same order."""
    return uuid.uuid5(_ORDER_IDS, f"{customer}\x00{idempotency_key}").hex


_ORDER_REQUEST = TypeAdapter(OrderRequest)


def parse_order_request(body: Any, known_cities: Sequence[str]) -> OrderRequest:
    if not isinstance(body, Mapping):
        raise InvalidEvent("the order must be a JSON object")
    order = validated(_ORDER_REQUEST, body, cities=known_cities)
    seen: set[str] = set()
    for i, line in enumerate(order.lines):
        if line.item_id in seen:
            raise InvalidEvent("the same item appears twice; use quantity", field=f"lines[{i}].item_id")
        seen.add(line.item_id)
    return order


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """A restaurant or an admin moving an order on."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    status: AdvanceableStatus


_STATUS_REQUEST = TypeAdapter(StatusRequest)


def parse_status_request(body: Any) -> OrderStatus:
    if not isinstance(body, Mapping):
        raise InvalidEvent('send {"status": ...}', field="status")
    return OrderStatus(validated(_STATUS_REQUEST, body).status)


@dataclass(frozen=True, slots=True)
class PricingDecision:
    status: OrderStatus  # accepted or rejected
    total_cents: int
    reason: str | None = None
    current_prices: Mapping[str, int | None] | None = None
    price_versions: Mapping[str, int] | None = None


def price_order(view: CatalogView, restaurant_id: str, lines: Sequence[OrderLine]) -> PricingDecision:
    """Accept only if every line is orderable at exactly the price the customer saw."""
    restaurant = view.restaurant(restaurant_id)
    if restaurant is None:
        return PricingDecision(OrderStatus.REJECTED, 0, "unknown_restaurant")
    if not restaurant.open:
        return PricingDecision(OrderStatus.REJECTED, 0, "restaurant_closed")
    current: dict[str, int | None] = {}
    versions: dict[str, int] = {}
    reason: str | None = None
    for line in lines:
        item = view.item(line.item_id)
        if item is None or item.removed or item.restaurant_id != restaurant_id:
            current[line.item_id] = None
            reason = reason or "unknown_item"
            continue
        current[line.item_id] = item.price_cents
        versions[line.item_id] = item.version
        if not item.available:
            reason = reason or "item_unavailable"
        elif item.price_cents != line.price_cents:
            reason = reason or "price_changed"
    if reason is not None:
        return PricingDecision(OrderStatus.REJECTED, 0, reason, current_prices=current)
    total = sum(line.price_cents * line.quantity for line in lines)
    return PricingDecision(OrderStatus.ACCEPTED, total, price_versions=versions)


# ---- commands on the order topic (keyed by city, like the catalog, so a worker prices against its tables) ----


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    order_id: Id
    customer: Actor
    city: CityCode
    restaurant_id: Id
    lines: Lines
    idempotency_key: IdempotencyKey
    placed_at: Timestamp
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class AdvanceOrder:
    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    command_id: Id
    order_id: Id
    city: CityCode
    status: OrderStatus
    actor: Actor
    at: Timestamp


OrderCommand = PlaceOrder | AdvanceOrder
_COMMANDS: dict[str, tuple[type[OrderCommand], TypeAdapter[Any]]] = {
    "order.place": (PlaceOrder, TypeAdapter(PlaceOrder)),
    "order.advance": (AdvanceOrder, TypeAdapter(AdvanceOrder)),
}
_COMMAND_TYPES = {kind: name for name, (kind, _) in _COMMANDS.items()}


def encode_command(command: OrderCommand) -> bytes:
    body = {"type": _COMMAND_TYPES[type(command)], "schema_version": 1, **dataclasses.asdict(command)}
    return orjson.dumps(body)


def decode_command(raw: bytes) -> OrderCommand:
    """Tolerant: unknown fields are ignored; anything unusable or breaking a field rule raises InvalidEvent
    (then dead-lettered)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not an order command: {exc}") from None
    kind = body.get("type") if isinstance(body, dict) else None
    if not isinstance(kind, str) or kind not in _COMMANDS:
        raise InvalidEvent(f"unknown order command type {kind!r}", field="type")
    command: OrderCommand = validated(_COMMANDS[kind][1], body, tolerant=True)
    return command
