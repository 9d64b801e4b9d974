"""Order rules: validation, deterministic ids, pricing against the catalog, and the status lifecycle."""

import pytest

from models.catalog import ItemState, RestaurantState
from models.errors import InvalidEvent
from models.orders import (
    AdvanceOrder,
    OrderLine,
    OrderStatus,
    PlaceOrder,
    decode_command,
    encode_command,
    may_advance,
    order_id_for,
    parse_order_request,
    price_order,
)
from tests.unit.test_catalog import MemoryView


def catalog() -> MemoryView:
    view = MemoryView()
    view.restaurants["r1"] = RestaurantState("r1", "Dosa Hut", True, 1, 0)
    view.restaurants["shut"] = RestaurantState("shut", "Closed", False, 1, 0)
    view.items_by_id["a"] = ItemState("r1", "a", "A", "", "", True, 1000, 1200, 3, 0)
    view.items_by_id["b"] = ItemState("r1", "b", "B", "", "", False, 500, 500, 1, 0)
    view.items_by_id["gone"] = ItemState("r1", "gone", "G", "", "", True, 1, 1, 2, 0, removed=True)
    return view


def test_an_order_at_the_current_prices_is_accepted_with_total_and_versions() -> None:
    decision = price_order(catalog(), "r1", [OrderLine("a", 2, 1200)])
    assert decision.status is OrderStatus.ACCEPTED
    assert decision.total_cents == 2400 and decision.price_versions == {"a": 3}


@pytest.mark.parametrize(
    ("restaurant", "lines", "reason"),
    [
        ("r1", [OrderLine("a", 1, 1000)], "price_changed"),
        ("r1", [OrderLine("b", 1, 500)], "item_unavailable"),
        ("r1", [OrderLine("gone", 1, 1)], "unknown_item"),
        ("r1", [OrderLine("nope", 1, 1)], "unknown_item"),
        ("elsewhere", [OrderLine("a", 1, 1200)], "unknown_restaurant"),
        ("shut", [OrderLine("a", 1, 1200)], "restaurant_closed"),
    ],
)
def test_orders_that_cannot_be_honoured_are_rejected_with_a_reason(
    restaurant: str, lines: list[OrderLine], reason: str
) -> None:
    decision = price_order(catalog(), restaurant, lines)
    assert decision.status is OrderStatus.REJECTED and decision.reason == reason


def test_a_price_change_reports_every_current_price() -> None:
    decision = price_order(catalog(), "r1", [OrderLine("a", 1, 999), OrderLine("nope", 1, 1)])
    assert decision.current_prices == {"a": 1200, "nope": None}


def test_the_order_id_depends_only_on_customer_and_key() -> None:
    assert order_id_for("asha", "k1") == order_id_for("asha", "k1")
    assert len({order_id_for("asha", "k1"), order_id_for("asha", "k2"), order_id_for("ravi", "k1")}) == 3


def test_the_fingerprint_tells_a_changed_body() -> None:
    body = {
        "idempotency_key": "k",
        "city": "blr",
        "restaurant_id": "r1",
        "lines": [{"item_id": "a", "quantity": 1, "price_cents": 1200}],
    }
    same = parse_order_request(body, ["blr"])
    again = parse_order_request(dict(body), ["blr"])
    changed = parse_order_request({**body, "lines": [{"item_id": "a", "quantity": 2, "price_cents": 1200}]}, ["blr"])
    assert same.fingerprint() == again.fingerprint() != changed.fingerprint()


def test_lines_are_validated_with_their_paths() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_order_request(
            {
                "idempotency_key": "k",
                "city": "blr",
                "restaurant_id": "r1",
                "lines": [{"item_id": "a", "quantity": 100, "price_cents": 1}],
            },
            ["blr"],
        )
    assert caught.value.field == "lines[0].quantity"


@pytest.mark.parametrize(
    ("current", "requested", "allowed"),
    [
        ("accepted", "preparing", True),
        ("accepted", "cancelled", True),
        ("preparing", "out_for_delivery", True),
        ("out_for_delivery", "delivered", True),
        ("pending", "preparing", False),
        ("rejected", "preparing", False),
        ("accepted", "delivered", False),
        ("delivered", "cancelled", False),
        ("out_for_delivery", "cancelled", False),
        ("preparing", "teleported", False),
    ],
)
def test_the_status_lifecycle(current: str, requested: str, allowed: bool) -> None:
    assert may_advance(current, requested) is allowed


def test_commands_round_trip_through_kafka() -> None:
    place = PlaceOrder("o1", "asha", "blr", "r1", (OrderLine("a", 2, 1200),), "k1", "2026-11-26T10:00:00Z", "req")
    advance = AdvanceOrder("c1", "o1", "blr", OrderStatus.PREPARING, "restaurant:r1", "2026-11-26T10:05:00Z")
    assert decode_command(encode_command(place)) == place
    assert decode_command(encode_command(advance)) == advance
    with pytest.raises(InvalidEvent):
        decode_command(b'{"type": "order.place"}')
