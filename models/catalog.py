"""Catalog state (restaurants, items, a city's pricing) and the pure rules that change it.

Every record carries `position`: the Kafka offset of the last batch that changed it. Processing is
at-least-once, so a batch may be applied again after a crash; a record whose position is at or past the
batch's already reflects it and is left alone. That makes re-applying a batch harmless and, because the
same state and batch always give the same result, the projection ids derived from positions stable.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from models.events import (
    Event,
    EventBatch,
    ItemAvailabilitySet,
    ItemRemoved,
    ItemUpserted,
    PriceSet,
    PricingReprice,
    PricingRule,
    PricingRuleSet,
    PricingRuleTick,
    ProjectionRebuild,
    RestaurantUpserted,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RestaurantState:
    restaurant_id: str
    name: str
    open: bool
    version: int
    position: int

    def as_json(self) -> dict[str, Any]:
        return {"restaurant_id": self.restaurant_id, "name": self.name, "open": self.open, "version": self.version}


@dataclass(frozen=True, slots=True)
class ItemState:
    restaurant_id: str
    item_id: str
    name: str
    description: str
    category: str
    available: bool
    base_price_cents: int
    price_cents: int  # effective: base price with the city's active pricing rule applied
    version: int
    position: int
    removed: bool = False

    def as_json(self, currency: str) -> dict[str, Any]:
        return {
            "restaurant_id": self.restaurant_id,
            "item_id": self.item_id,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "available": self.available,
            "price_cents": self.price_cents,
            "base_price_cents": self.base_price_cents,
            "currency": currency,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class CityPricing:
    rule: PricingRule | None = None
    rule_active: bool = False
    version: int = 0
    position: int = -1

    @property
    def multiplier_bp(self) -> int:
        return self.rule.multiplier_bp if self.rule is not None and self.rule_active else 10_000

    def next_transition(self, now: str) -> str | None:
        """When the clock next changes whether the rule applies (for the tick timer); None if it never will."""
        if self.rule is None:
            return None
        if self.rule_active:
            return self.rule.until
        if self.rule.until is not None and self.rule.until <= now:
            return None  # expired: stays off
        return self.rule.effective_at


def effective_price(base_price_cents: int, multiplier_bp: int) -> int:
    """Base price times the multiplier, rounded half up, in integer arithmetic so every replay agrees."""
    return (base_price_cents * multiplier_bp + 5_000) // 10_000


class CatalogView(Protocol):
    """Read access to one city's current state (the worker's tables)."""

    def restaurant(self, restaurant_id: str) -> RestaurantState | None: ...

    def item(self, item_id: str) -> ItemState | None: ...

    def pricing(self) -> CityPricing: ...

    def items(self) -> Iterable[ItemState]: ...


@dataclass(frozen=True, slots=True)
class FeedMessage:
    """One change as customers see it: an SSE event type and its data."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    """The audit trail of one event: what it changed, or why it was refused."""

    event: Event
    status: str  # "applied" | "rejected"
    subject: str  # item_id, restaurant_id or "" for city-wide events
    version: int | None = None
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None
    reason: str | None = None


@dataclass(slots=True)
class BatchOutcome:
    restaurants: dict[str, RestaurantState] = field(default_factory=dict)
    items: dict[str, ItemState] = field(default_factory=dict)
    pricing: CityPricing | None = None
    messages: list[FeedMessage] = field(default_factory=list)
    audit: list[AppliedEvent] = field(default_factory=list)
    rejected: bool = False
    rebuild: bool = False

    @property
    def changes_state(self) -> bool:
        return bool(self.restaurants or self.items or self.pricing is not None)


class Rejected(Exception):
    def __init__(self, reason: str, subject: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subject = subject


class _Overlay:
    """The view as it stands part-way through a batch: earlier events' writes on top of the tables."""

    def __init__(self, view: CatalogView, outcome: BatchOutcome) -> None:
        self._view = view
        self._outcome = outcome

    def restaurant(self, restaurant_id: str) -> RestaurantState | None:
        return self._outcome.restaurants.get(restaurant_id) or self._view.restaurant(restaurant_id)

    def item(self, item_id: str) -> ItemState | None:
        return self._outcome.items.get(item_id) or self._view.item(item_id)

    def pricing(self) -> CityPricing:
        return self._outcome.pricing or self._view.pricing()

    def items(self) -> Iterable[ItemState]:
        for stored in self._view.items():
            yield self._outcome.items.get(stored.item_id, stored)
        for item_id, pending in self._outcome.items.items():
            if self._view.item(item_id) is None:
                yield pending


def overlay(view: CatalogView, outcome: BatchOutcome) -> CatalogView:
    """`view` as it will stand once `outcome` is written: to apply records on top of ones not yet written."""
    return _Overlay(view, outcome)


def apply_batch(view: CatalogView, batch: EventBatch, position: int, currency: str) -> BatchOutcome:
    """Apply every event of a batch, all or nothing. Pure: the caller persists what comes back."""
    outcome = BatchOutcome()
    overlay = _Overlay(view, outcome)
    for event in batch.events:
        try:
            outcome.audit.append(_apply_event(overlay, outcome, event, position, currency))
        except Rejected as refusal:
            return _rejected(batch, event, refusal)
    return outcome


def _rejected(batch: EventBatch, culprit: Event, refusal: Rejected) -> BatchOutcome:
    outcome = BatchOutcome(rejected=True)
    for event in batch.events:
        reason = refusal.reason if event is culprit else f"batch_rejected: {refusal.reason} ({culprit.event_id})"
        outcome.audit.append(
            AppliedEvent(event, "rejected", refusal.subject if event is culprit else "", reason=reason)
        )
    return outcome


def _apply_event(view: _Overlay, outcome: BatchOutcome, event: Event, position: int, currency: str) -> AppliedEvent:
    payload = event.payload
    if isinstance(payload, RestaurantUpserted):
        return _upsert_restaurant(view, outcome, event, payload, position)
    if isinstance(payload, ItemUpserted | ItemRemoved | ItemAvailabilitySet | PriceSet):
        return _change_item(view, outcome, event, payload, position, currency)
    if isinstance(payload, PricingRuleSet | PricingRuleTick):
        return _change_pricing(view, outcome, event, payload, position, currency)
    if isinstance(payload, PricingReprice):
        _reprice_city(view, outcome, view.pricing().multiplier_bp, position, currency)
        return AppliedEvent(event, "applied", "")
    if isinstance(payload, ProjectionRebuild):
        outcome.rebuild = True
        return AppliedEvent(event, "applied", "")
    raise Rejected("unsupported_event", "")


def _check_expected(event: Event, current_version: int, subject: str) -> None:
    if event.expected_version is not None and event.expected_version != current_version:
        raise Rejected(f"version_conflict: expected {event.expected_version}, current {current_version}", subject)


def _upsert_restaurant(
    view: _Overlay, outcome: BatchOutcome, event: Event, payload: RestaurantUpserted, position: int
) -> AppliedEvent:
    current = view.restaurant(payload.restaurant_id)
    if current is not None and current.position >= position:
        return AppliedEvent(event, "applied", payload.restaurant_id, current.version)
    _check_expected(event, current.version if current else 0, payload.restaurant_id)
    updated = RestaurantState(
        payload.restaurant_id, payload.name, payload.open, (current.version if current else 0) + 1, position
    )
    if current is not None and replace(current, version=updated.version, position=position) == updated:
        return AppliedEvent(
            event, "applied", payload.restaurant_id, current.version, current.as_json(), current.as_json()
        )
    outcome.restaurants[payload.restaurant_id] = updated
    outcome.messages.append(FeedMessage("restaurant", updated.as_json()))
    return AppliedEvent(
        event,
        "applied",
        payload.restaurant_id,
        updated.version,
        current.as_json() if current else None,
        updated.as_json(),
    )


def _change_item(
    view: _Overlay,
    outcome: BatchOutcome,
    event: Event,
    payload: ItemUpserted | ItemRemoved | ItemAvailabilitySet | PriceSet,
    position: int,
    currency: str,
) -> AppliedEvent:
    current = view.item(payload.item_id)
    if current is not None and current.position >= position:
        return AppliedEvent(event, "applied", payload.item_id, current.version)
    live = current if current is not None and not current.removed else None
    _check_expected(event, current.version if current else 0, payload.item_id)
    if view.restaurant(payload.restaurant_id) is None:
        raise Rejected("unknown_restaurant", payload.item_id)
    if live is not None and live.restaurant_id != payload.restaurant_id:
        raise Rejected(f"item_belongs_to_restaurant: {live.restaurant_id}", payload.item_id)
    if not isinstance(payload, ItemUpserted) and live is None:
        raise Rejected("unknown_item", payload.item_id)
    next_version = (current.version if current else 0) + 1
    multiplier = view.pricing().multiplier_bp
    if isinstance(payload, ItemRemoved):
        assert live is not None
        updated = replace(live, removed=True, version=next_version, position=position)
        outcome.items[payload.item_id] = updated
        outcome.messages.append(
            FeedMessage(
                "item_removed", {"restaurant_id": live.restaurant_id, "item_id": live.item_id, "version": next_version}
            )
        )
        return AppliedEvent(event, "applied", payload.item_id, next_version, live.as_json(currency), None)
    updated = _item_after(live, payload, multiplier, next_version, position)
    if live is not None and replace(live, version=next_version, position=position) == updated:
        return AppliedEvent(
            event, "applied", payload.item_id, live.version, live.as_json(currency), live.as_json(currency)
        )
    outcome.items[payload.item_id] = updated
    outcome.messages.append(FeedMessage("item", updated.as_json(currency)))
    return AppliedEvent(
        event,
        "applied",
        payload.item_id,
        next_version,
        live.as_json(currency) if live else None,
        updated.as_json(currency),
    )


def _item_after(
    live: ItemState | None,
    payload: ItemUpserted | ItemAvailabilitySet | PriceSet,
    multiplier_bp: int,
    version: int,
    position: int,
) -> ItemState:
    if isinstance(payload, ItemUpserted):
        if live is None and payload.price_cents is None:
            raise Rejected("price_required: a new item needs price_cents", payload.item_id)
        base = payload.price_cents if payload.price_cents is not None else live.base_price_cents  # type: ignore[union-attr]
        return ItemState(
            restaurant_id=payload.restaurant_id,
            item_id=payload.item_id,
            name=payload.name,
            description=_keep(payload.description, live.description if live else ""),
            category=_keep(payload.category, live.category if live else ""),
            available=_keep(payload.available, live.available if live else True),
            base_price_cents=base,
            price_cents=effective_price(base, multiplier_bp),
            version=version,
            position=position,
        )
    assert live is not None
    if isinstance(payload, ItemAvailabilitySet):
        return replace(live, available=payload.available, version=version, position=position)
    return replace(
        live,
        base_price_cents=payload.price_cents,
        price_cents=effective_price(payload.price_cents, multiplier_bp),
        version=version,
        position=position,
    )


def _keep(given: T | None, current: T) -> T:
    return current if given is None else given


def _change_pricing(
    view: _Overlay,
    outcome: BatchOutcome,
    event: Event,
    payload: PricingRuleSet | PricingRuleTick,
    position: int,
    currency: str,
) -> AppliedEvent:
    current = view.pricing()
    if current.position >= position:
        return AppliedEvent(event, "applied", "", current.version)
    if isinstance(payload, PricingRuleSet):
        _check_expected(event, current.version, "")
        rule = payload.rule
        updated = CityPricing(
            rule, rule is not None and rule.is_active(event.occurred_at), current.version + 1, position
        )
    else:
        active = current.rule is not None and current.rule.is_active(event.occurred_at)
        if active == current.rule_active:
            return AppliedEvent(event, "applied", "", current.version)
        updated = replace(current, rule_active=active, version=current.version + 1, position=position)
    outcome.pricing = updated
    if updated.multiplier_bp != current.multiplier_bp:
        _reprice_city(view, outcome, updated.multiplier_bp, position, currency)
    return AppliedEvent(event, "applied", "", updated.version, _pricing_json(current), _pricing_json(updated))


def _pricing_json(pricing: CityPricing) -> dict[str, Any]:
    return {
        "rule": pricing.rule.as_json() if pricing.rule else None,
        "active": pricing.rule_active,
        "version": pricing.version,
    }


def _reprice_city(view: _Overlay, outcome: BatchOutcome, multiplier_bp: int, position: int, currency: str) -> None:
    for item in sorted(view.items(), key=lambda i: i.item_id):
        if item.removed or item.position >= position:
            continue
        price = effective_price(item.base_price_cents, multiplier_bp)
        if price == item.price_cents:
            continue
        repriced = replace(item, price_cents=price, version=item.version + 1, position=position)
        outcome.items[item.item_id] = repriced
        outcome.messages.append(FeedMessage("item", repriced.as_json(currency)))
