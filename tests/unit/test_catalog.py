"""The pure rules of the catalog: apply, all-or-nothing batches, versions, pricing, and replay safety."""

from collections.abc import Iterable
from dataclasses import replace

from models.catalog import (
    BatchOutcome,
    CityPricing,
    ItemState,
    RestaurantState,
    apply_batch,
    effective_price,
)
from models.events import (
    Event,
    EventBatch,
    EventType,
    ItemAvailabilitySet,
    ItemRemoved,
    ItemUpserted,
    Payload,
    PriceSet,
    PricingReprice,
    PricingRule,
    PricingRuleSet,
    PricingRuleTick,
    RestaurantUpserted,
)


class MemoryView:
    """The tables, in a dict: what the worker persists after each batch."""

    def __init__(self) -> None:
        self.restaurants: dict[str, RestaurantState] = {}
        self.items_by_id: dict[str, ItemState] = {}
        self.city_pricing = CityPricing()

    def restaurant(self, restaurant_id: str) -> RestaurantState | None:
        return self.restaurants.get(restaurant_id)

    def item(self, item_id: str) -> ItemState | None:
        return self.items_by_id.get(item_id)

    def pricing(self) -> CityPricing:
        return self.city_pricing

    def items(self) -> Iterable[ItemState]:
        return list(self.items_by_id.values())

    def persist(self, outcome: BatchOutcome) -> None:
        self.restaurants.update(outcome.restaurants)
        self.items_by_id.update(outcome.items)
        if outcome.pricing is not None:
            self.city_pricing = outcome.pricing


def event(payload: Payload, *, at: str = "2026-11-26T12:00:00.000000Z", expected: int | None = None) -> Event:
    kinds = {
        RestaurantUpserted: EventType.RESTAURANT_UPSERTED,
        ItemUpserted: EventType.ITEM_UPSERTED,
        ItemRemoved: EventType.ITEM_REMOVED,
        ItemAvailabilitySet: EventType.ITEM_AVAILABILITY_SET,
        PriceSet: EventType.PRICE_SET,
        PricingRuleSet: EventType.PRICING_RULE_SET,
        PricingRuleTick: EventType.PRICING_RULE_TICK,
        PricingReprice: EventType.PRICING_REPRICE,
    }
    return Event(f"e-{id(payload)}", kinds[type(payload)], "blr", at, "admin", payload, expected_version=expected)


def run(view: MemoryView, position: int, *events: Event) -> BatchOutcome:
    outcome = apply_batch(view, EventBatch("blr", events), position, "INR")
    view.persist(outcome)
    return outcome


def seeded() -> MemoryView:
    view = MemoryView()
    run(
        view,
        0,
        event(RestaurantUpserted("r1", "Dosa Hut")),
        event(ItemUpserted("r1", "i1", "Masala Dosa", price_cents=1000)),
        event(ItemUpserted("r1", "i2", "Idli", price_cents=333)),
    )
    return view


def test_new_items_start_at_version_one_and_each_change_adds_one() -> None:
    view = seeded()
    assert view.items_by_id["i1"].version == 1
    outcome = run(view, 1, event(PriceSet("r1", "i1", 1200)))
    assert view.items_by_id["i1"].version == 2
    assert [m.type for m in outcome.messages] == ["item"]
    assert outcome.messages[0].data["price_cents"] == 1200
    before, after = outcome.audit[0].old, outcome.audit[0].new
    assert before is not None and after is not None
    assert before["price_cents"] == 1000 and after["price_cents"] == 1200


def test_a_change_that_changes_nothing_publishes_nothing() -> None:
    view = seeded()
    outcome = run(view, 1, event(PriceSet("r1", "i1", 1000)))
    assert outcome.messages == [] and outcome.items == {}
    assert outcome.audit[0].status == "applied" and view.items_by_id["i1"].version == 1


def test_a_refused_event_refuses_its_whole_batch() -> None:
    view = seeded()
    outcome = run(view, 1, event(PriceSet("r1", "i1", 1)), event(PriceSet("r1", "ghost", 2)))
    assert outcome.rejected and not outcome.changes_state and outcome.messages == []
    assert [a.status for a in outcome.audit] == ["rejected", "rejected"]
    assert outcome.audit[1].reason == "unknown_item"
    reason = outcome.audit[0].reason
    assert reason is not None and reason.startswith("batch_rejected: unknown_item")
    assert view.items_by_id["i1"].price_cents == 1000


def test_expected_version_must_match_the_current_one() -> None:
    view = seeded()
    stale = run(view, 1, event(PriceSet("r1", "i1", 5), expected=7))
    assert stale.rejected and stale.audit[0].reason == "version_conflict: expected 7, current 1"
    fresh = run(view, 2, event(PriceSet("r1", "i1", 5), expected=1))
    assert not fresh.rejected and view.items_by_id["i1"].version == 2


def test_items_need_a_known_restaurant_and_a_price_when_new() -> None:
    view = seeded()
    assert run(view, 1, event(ItemUpserted("r9", "i9", "X", price_cents=1))).audit[0].reason == "unknown_restaurant"
    reason = run(view, 2, event(ItemUpserted("r1", "i9", "X"))).audit[0].reason
    assert reason is not None and reason.startswith("price_required")


def test_upsert_keeps_fields_it_does_not_mention() -> None:
    view = seeded()
    run(view, 1, event(ItemUpserted("r1", "i1", "Masala Dosa", description="Crisp", category="Mains")))
    run(view, 2, event(ItemUpserted("r1", "i1", "Ghee Dosa")))
    item = view.items_by_id["i1"]
    assert (item.name, item.description, item.category, item.price_cents) == ("Ghee Dosa", "Crisp", "Mains", 1000)


def test_removal_leaves_a_tombstone_and_versions_keep_counting() -> None:
    view = seeded()
    outcome = run(view, 1, event(ItemRemoved("r1", "i2")))
    assert outcome.messages[0].type == "item_removed" and view.items_by_id["i2"].removed
    assert run(view, 2, event(PriceSet("r1", "i2", 1))).audit[0].reason == "unknown_item"
    run(view, 3, event(ItemUpserted("r1", "i2", "Idli", price_cents=300)))
    assert view.items_by_id["i2"].version == 3 and not view.items_by_id["i2"].removed


def test_a_city_rule_reprices_every_item_and_clearing_it_restores_base_prices() -> None:
    view = seeded()
    surge = run(view, 1, event(PricingRuleSet(PricingRule(12_500))))
    assert {m.data["item_id"]: m.data["price_cents"] for m in surge.messages} == {"i1": 1250, "i2": 416}
    run(view, 2, event(PriceSet("r1", "i1", 2000)))
    assert view.items_by_id["i1"].price_cents == 2500 and view.items_by_id["i1"].base_price_cents == 2000
    cleared = run(view, 3, event(PricingRuleSet(None)))
    assert {m.data["item_id"]: m.data["price_cents"] for m in cleared.messages} == {"i1": 2000, "i2": 333}


def test_a_time_boxed_rule_applies_only_between_its_ticks() -> None:
    view = seeded()
    rule = PricingRule(15_000, effective_at="2026-11-26T19:00:00.000000Z", until="2026-11-26T22:00:00.000000Z")
    assert run(view, 1, event(PricingRuleSet(rule))).messages == []
    assert view.city_pricing.next_transition("2026-11-26T18:00:00.000000Z") == rule.effective_at
    run(view, 2, event(PricingRuleTick(), at="2026-11-26T19:00:00.500000Z"))
    assert view.items_by_id["i1"].price_cents == 1500
    assert view.city_pricing.next_transition("2026-11-26T19:00:01.000000Z") == rule.until
    run(view, 3, event(PricingRuleTick(), at="2026-11-26T22:00:01.000000Z"))
    assert view.items_by_id["i1"].price_cents == 1000
    assert view.city_pricing.next_transition("2026-11-26T22:00:02.000000Z") is None


def test_applying_a_batch_again_changes_nothing() -> None:
    view = seeded()
    batch = (event(PriceSet("r1", "i1", 1500)), event(PricingRuleSet(PricingRule(20_000))))
    run(view, 5, *batch)
    snapshot = (dict(view.items_by_id), view.city_pricing)
    again = run(view, 5, *batch)
    assert again.messages == [] and not again.changes_state
    assert (dict(view.items_by_id), view.city_pricing) == snapshot


def test_a_batch_half_persisted_before_a_crash_completes_without_double_counting() -> None:
    view = seeded()
    batch = (event(PriceSet("r1", "i1", 1500)), event(PriceSet("r1", "i2", 500)))
    outcome = apply_batch(view, EventBatch("blr", batch), 5, "INR")
    view.items_by_id["i1"] = outcome.items["i1"]  # the crash came before i2 was written
    run(view, 5, *batch)
    assert (view.items_by_id["i1"].version, view.items_by_id["i2"].version) == (2, 2)
    assert (view.items_by_id["i1"].price_cents, view.items_by_id["i2"].price_cents) == (1500, 500)


def test_effective_price_rounds_half_up_in_integers() -> None:
    assert effective_price(333, 12_500) == 416  # 416.25
    assert effective_price(1, 15_000) == 2  # 1.5 rounds up
    assert effective_price(999, 10_000) == 999


def test_a_restaurant_upsert_with_the_same_content_is_a_no_op() -> None:
    view = seeded()
    outcome = run(view, 1, event(RestaurantUpserted("r1", "Dosa Hut")))
    assert outcome.messages == [] and view.restaurants["r1"].version == 1
    renamed = run(view, 2, event(RestaurantUpserted("r1", "Dosa Palace", open=False)))
    assert renamed.messages[0].data == {"restaurant_id": "r1", "name": "Dosa Palace", "open": False, "version": 2}
    assert replace(view.restaurants["r1"], position=0) == RestaurantState("r1", "Dosa Palace", False, 2, 0)


def test_a_reprice_computes_every_stale_price_again_and_touches_nothing_else() -> None:
    """After a new pricing algorithm is promoted, prices computed by the old one are recomputed in order."""
    view = seeded()
    run(view, 1, event(PricingRuleSet(PricingRule(12_500))))
    view.items_by_id["i2"] = replace(view.items_by_id["i2"], price_cents=999)  # as another algorithm left it
    outcome = run(view, 2, event(PricingReprice()))
    assert {m.data["item_id"]: m.data["price_cents"] for m in outcome.messages} == {"i2": 416}
    assert view.items_by_id["i2"].version == 3 and view.items_by_id["i1"].version == 2
    assert outcome.audit[0].status == "applied"
