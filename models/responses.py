"""Every response body of the public API, declared once: /v1/openapi.json publishes these, and the views
that build a body check it against its declaration before anything is published."""

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12


class ErrorDetail(TypedDict):
    code: str
    message: str
    field: NotRequired[str]


class ErrorBody(TypedDict):
    error: ErrorDetail


class CityInfo(TypedDict):
    city: str
    name: str
    currency: str
    launching: bool  # listed before it has a menu


class MenuItem(TypedDict):
    restaurant_id: str
    item_id: str
    name: str
    description: str
    category: str
    available: bool
    price_cents: int
    base_price_cents: int
    currency: str
    version: int


class MenuRestaurant(TypedDict):
    restaurant_id: str
    name: str
    open: bool
    version: int
    items: list[MenuItem]


class Menu(TypedDict):
    city: str
    cursor: str  # the id of the last change reflected, usable as Last-Event-ID
    restaurants: list[MenuRestaurant]


class PricingRuleBody(TypedDict):
    multiplier: float
    effective_at: str | None
    until: str | None
    name: str


class CityPricingBody(TypedDict):
    city: str
    rule: PricingRuleBody | None
    active: bool
    version: int


class EventsAccepted(TypedDict):
    event_ids: list[str]
    batch_id: str


class EventStatus(TypedDict):
    event_id: str
    status: Literal["published", "applied", "rejected"]
    city: NotRequired[str]
    type: NotRequired[str]
    published_at: NotRequired[str]
    applied_at: NotRequired[str]
    version: NotRequired[int]
    reason: NotRequired[str]


class HistoryEntry(TypedDict):
    event_id: str
    type: str
    actor: str
    occurred_at: str
    applied_at: str
    version: int | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    request_id: str | None


class ItemHistory(TypedDict):
    city: str
    item_id: str
    history: list[HistoryEntry]


OrderStatusName = Literal["pending", "accepted", "rejected", "preparing", "out_for_delivery", "delivered", "cancelled"]


class OrderLineBody(TypedDict):
    item_id: str
    quantity: int
    price_cents: int


# Totals are PostgreSQL bigints and JSON numbers clients read as doubles: a body is checked before sending.
MAX_TOTAL_CENTS = 2**53 - 1


class OrderBody(TypedDict):
    order_id: str
    status: OrderStatusName
    city: str
    restaurant_id: str
    lines: list[OrderLineBody]
    total_cents: Annotated[int, Field(ge=0, le=MAX_TOTAL_CENTS)]
    currency: str
    created_at: str
    updated_at: str
    version: int
    reason: NotRequired[str]  # why a rejected order was refused: price_changed, item_unavailable, ...
    current_prices: NotRequired[dict[str, int | None]]
    price_versions: NotRequired[dict[str, int]]


class OrderAccepted(TypedDict):
    order_id: str
    status: OrderStatusName


class StatusAccepted(TypedDict):
    order_id: str
    status: OrderStatusName
    command_id: str


EVENTS_ACCEPTED = TypeAdapter(EventsAccepted)
ORDER_ACCEPTED = TypeAdapter(OrderAccepted)
ORDER_BODY = TypeAdapter(OrderBody)
STATUS_ACCEPTED = TypeAdapter(StatusAccepted)
