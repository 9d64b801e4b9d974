"""Orders: what a customer may ask for, how an order is priced against the catalog, and its lifecycle.

Pure: the order agent persists what these functions decide.
"""

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from models.catalog import CatalogView
from models.errors import InvalidEvent
from models.events import read_id

MAX_LINES = 50
MAX_QUANTITY = 99
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
ADVANCEABLE = frozenset(
    {OrderStatus.PREPARING, OrderStatus.OUT_FOR_DELIVERY, OrderStatus.DELIVERED, OrderStatus.CANCELLED}
)


def may_advance(current: str, requested: str) -> bool:
    try:
        return OrderStatus(requested) in NEXT_STATUSES.get(OrderStatus(current), frozenset())
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class OrderLine:
    item_id: str
    quantity: int
    price_cents: int

    def as_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "quantity": self.quantity, "price_cents": self.price_cents}


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A customer's order as validated by the API, before it has an id."""

    idempotency_key: str
    city: str
    restaurant_id: str
    lines: tuple[OrderLine, ...]

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


_ORDER_FIELDS = frozenset({"idempotency_key", "city", "restaurant_id", "lines"})
_LINE_FIELDS = frozenset({"item_id", "quantity", "price_cents"})


def parse_order_request(body: Any, known_cities: Sequence[str]) -> OrderRequest:
    if not isinstance(body, Mapping):
        raise InvalidEvent("the order must be a JSON object")
    unknown = sorted(set(body) - _ORDER_FIELDS)
    if unknown:
        raise InvalidEvent("unknown field", field=unknown[0])
    key = body.get("idempotency_key")
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or not key.isprintable():
        raise InvalidEvent("must be 1-128 printable characters", field="idempotency_key")
    city = body.get("city")
    if not isinstance(city, str) or city not in known_cities:
        raise InvalidEvent("unknown city", field="city", code="unknown_city")
    restaurant_id = read_id(body.get("restaurant_id"), "restaurant_id")
    raw_lines = body.get("lines")
    if not isinstance(raw_lines, list) or not 1 <= len(raw_lines) <= MAX_LINES:
        raise InvalidEvent(f"must be a list of 1 to {MAX_LINES} lines", field="lines")
    lines = tuple(_parse_line(line, f"lines[{i}]") for i, line in enumerate(raw_lines))
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.item_id in seen:
            raise InvalidEvent("the same item appears twice; use quantity", field=f"lines[{i}].item_id")
        seen.add(line.item_id)
    return OrderRequest(key, city, restaurant_id, lines)


def _parse_line(source: Any, path: str) -> OrderLine:
    if not isinstance(source, Mapping):
        raise InvalidEvent("each line must be an object", field=path)
    unknown = sorted(set(source) - _LINE_FIELDS)
    if unknown:
        raise InvalidEvent("unknown field", field=f"{path}.{unknown[0]}")
    item_id = read_id(source.get("item_id"), f"{path}.item_id")
    quantity = source.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidEvent(f"must be a whole number from 1 to {MAX_QUANTITY}", field=f"{path}.quantity")
    price = source.get("price_cents")
    if isinstance(price, bool) or not isinstance(price, int) or price < 0:
        raise InvalidEvent("must be the non-negative price you were shown, in minor units", field=f"{path}.price_cents")
    return OrderLine(item_id, quantity, price)


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
    order_id: str
    customer: str
    city: str
    restaurant_id: str
    lines: tuple[OrderLine, ...]
    idempotency_key: str
    placed_at: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdvanceOrder:
    command_id: str
    order_id: str
    city: str
    status: OrderStatus
    actor: str
    at: str


OrderCommand = PlaceOrder | AdvanceOrder


def encode_command(command: OrderCommand) -> bytes:
    if isinstance(command, PlaceOrder):
        body: dict[str, Any] = {
            "type": "order.place",
            "schema_version": 1,
            "order_id": command.order_id,
            "customer": command.customer,
            "city": command.city,
            "restaurant_id": command.restaurant_id,
            "lines": [line.as_json() for line in command.lines],
            "idempotency_key": command.idempotency_key,
            "placed_at": command.placed_at,
            "request_id": command.request_id,
        }
    else:
        body = {
            "type": "order.advance",
            "schema_version": 1,
            "command_id": command.command_id,
            "order_id": command.order_id,
            "city": command.city,
            "status": command.status.value,
            "actor": command.actor,
            "at": command.at,
        }
    return orjson.dumps(body)


def decode_command(raw: bytes) -> OrderCommand:
    """Tolerant: unknown fields are ignored; anything unusable raises InvalidEvent (then dead-lettered)."""
    try:
        body = orjson.loads(raw)
        if body["type"] == "order.place":
            return PlaceOrder(
                order_id=str(body["order_id"]),
                customer=str(body["customer"]),
                city=str(body["city"]),
                restaurant_id=str(body["restaurant_id"]),
                lines=tuple(
                    OrderLine(str(x["item_id"]), int(x["quantity"]), int(x["price_cents"])) for x in body["lines"]
                ),
                idempotency_key=str(body["idempotency_key"]),
                placed_at=str(body["placed_at"]),
                request_id=body.get("request_id"),
            )
        if body["type"] == "order.advance":
            return AdvanceOrder(
                command_id=str(body["command_id"]),
                order_id=str(body["order_id"]),
                city=str(body["city"]),
                status=OrderStatus(body["status"]),
                actor=str(body["actor"]),
                at=str(body["at"]),
            )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"not an order command: {exc!r}") from None
    raise InvalidEvent(f"unknown order command type {body.get('type')!r}")
