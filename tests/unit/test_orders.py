"""Order rules: validation, deterministic ids, pricing against the catalog, and the status lifecycle."""

from typing import Any

import orjson
import pytest

from models.catalog import ItemState, RestaurantState
from models.errors import InvalidEvent
from models.fields import MAX_PRICE_CENTS
from models.orders import (
    MAX_LINES,
    AdvanceOrder,
    OrderLine,
    OrderStatus,
    PlaceOrder,
    decode_command,
    encode_command,
    may_advance,
    order_id_for,
    parse_order_request,
    parse_status_request,
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


def _order(**fields: Any) -> dict[str, Any]:
    line = {"item_id": "a", "quantity": 1, "price_cents": 1200, **fields.pop("line", {})}
    return {"idempotency_key": "k", "city": "blr", "restaurant_id": "r1", "lines": [line], **fields}


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (_order(line={"price_cents": 2**63}), "lines[0].price_cents", "invalid_event"),
        (_order(line={"price_cents": MAX_PRICE_CENTS + 1}), "lines[0].price_cents", "invalid_event"),
        (_order(line={"price_cents": 1.7e308}), "lines[0].price_cents", "invalid_event"),
        (_order(line={"price_cents": 12.0}), "lines[0].price_cents", "invalid_event"),
        (_order(line={"quantity": True}), "lines[0].quantity", "invalid_event"),
        (_order(line={"item_id": "a\n"}), "lines[0].item_id", "invalid_event"),
        (_order(line={"tip": 1}), "lines[0].tip", "invalid_event"),
        (_order(restaurant_id="r1\n"), "restaurant_id", "invalid_event"),
        (_order(idempotency_key="k\x00"), "idempotency_key", "invalid_event"),
        (_order(idempotency_key="k" * 129), "idempotency_key", "invalid_event"),
        (_order(city="nowhere"), "city", "unknown_city"),
        (_order(city=["blr"]), "city", "invalid_event"),
        (
            _order(lines=[{"item_id": f"i{n}", "quantity": 1, "price_cents": 1} for n in range(MAX_LINES + 1)]),
            "lines",
            "invalid_event",
        ),
        (_order(lines={"item_id": "a"}), "lines", "invalid_event"),
        ([], None, "invalid_event"),
    ],
)
def test_hostile_orders_are_refused_naming_the_field(body: Any, field: str | None, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_order_request(body, ["blr"])
    assert (caught.value.field, caught.value.code) == (field, code)


@pytest.mark.parametrize("body", [{"status": ["preparing"]}, {"status": {"s": 1}}, {"status": "pending"}, {}, [], "x"])
def test_a_status_change_names_one_of_the_advanceable_statuses(body: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_status_request(body)
    assert caught.value.field == "status"


def test_a_status_change_is_parsed() -> None:
    assert parse_status_request({"status": "out_for_delivery"}) is OrderStatus.OUT_FOR_DELIVERY


def test_commands_round_trip_through_kafka() -> None:
    place = PlaceOrder(
        "o1", "asha", "blr", "r1", (OrderLine("a", 2, 1200),), "k1", "2026-11-26T10:00:00.000000Z", "req"
    )
    advance = AdvanceOrder("c1", "o1", "blr", OrderStatus.PREPARING, "restaurant:r1", "2026-11-26T10:05:00.000000Z")
    assert decode_command(encode_command(place)) == place
    assert decode_command(encode_command(advance)) == advance


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "order.place"}',
        b"[]",
        b"nope",
        b'{"type": "order.teleport"}',
        b'{"type": "order.advance", "command_id": "c1", "order_id": "o1", "city": "blr", "status": "teleported",'
        b' "actor": "a", "at": "2026-11-26T10:05:00Z"}',
        b'{"type": "order.advance", "command_id": "c1", "order_id": "o1", "city": "blr", "status": "preparing",'
        b' "actor": "a\\u0000", "at": "2026-11-26T10:05:00Z"}',
    ],
)
def test_commands_breaking_the_contract_raise_so_the_worker_can_dead_letter_them(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_command(raw)


def test_the_command_reader_ignores_unknown_fields() -> None:
    body = orjson.loads(
        encode_command(AdvanceOrder("c1", "o1", "blr", OrderStatus.PREPARING, "a", "2026-11-26T10:05:00.000000Z"))
    )
    assert decode_command(orjson.dumps({**body, "priority": "high", "schema_version": 2})).order_id == "o1"
