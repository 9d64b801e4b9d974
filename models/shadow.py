"""Comparing a candidate pricing version with the stable one (pure; the shadow worker feeds it).

The candidate runs in shadow: it applies the same log to its own tables. Wherever both have applied exactly
the same prefix of a city's log, every item's effective price must agree — or differ exactly as declared
up front (an expected change: "desserts in blr cost 10% more"). Anything else is a divergence.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.errors import InvalidEvent

TOLERANCE_CENTS = 1  # rounding: stable x ratio and the candidate's own arithmetic may differ by a cent


@dataclass(frozen=True, slots=True)
class ExpectedChange:
    """Items matching every given field are expected at `ratio` x the stable price."""

    ratio: float
    city: str | None = None
    restaurant_id: str | None = None
    category: str | None = None

    def matches(self, city: str, item: Mapping[str, Any]) -> bool:
        return (
            (self.city is None or self.city == city)
            and (self.restaurant_id is None or self.restaurant_id == item.get("restaurant_id"))
            and (self.category is None or self.category == item.get("category"))
        )


def parse_expected_changes(spec: str) -> tuple[ExpectedChange, ...]:
    """`[{"ratio": 1.1, "category": "Desserts", "city": "blr"}, ...]`; empty: no change expected."""
    if not spec.strip():
        return ()
    try:
        rules = orjson.loads(spec)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"expected changes are not JSON: {exc}") from None
    if not isinstance(rules, list):
        raise InvalidEvent("expected changes must be a JSON list of rules")
    parsed = []
    for n, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) - {"ratio", "city", "restaurant_id", "category"}:
            raise InvalidEvent("a rule has ratio and optionally city, restaurant_id, category", field=f"[{n}]")
        ratio = rule.get("ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 10:
            raise InvalidEvent("ratio must be a number in (0, 10]", field=f"[{n}].ratio")
        parsed.append(ExpectedChange(float(ratio), rule.get("city"), rule.get("restaurant_id"), rule.get("category")))
    return tuple(parsed)


def expected_price(stable_cents: int, city: str, item: Mapping[str, Any], changes: Sequence[ExpectedChange]) -> int:
    ratio = next((c.ratio for c in changes if c.matches(city, item)), 1.0)
    return int(stable_cents * ratio + 0.5)


@dataclass
class Comparison:
    compared: int = 0
    diverged: int = 0
    max_divergence_ratio: float = 0.0  # |candidate / expected - 1| of the worst item
    examples: list[str] = field(default_factory=list)

    def add(self, other: "Comparison") -> None:
        self.compared += other.compared
        self.diverged += other.diverged
        self.max_divergence_ratio = max(self.max_divergence_ratio, other.max_divergence_ratio)
        self.examples = (self.examples + other.examples)[:5]


def compare_city(
    city: str,
    candidate: Mapping[str, int],
    stable: Iterable[Mapping[str, Any]],
    changes: Sequence[ExpectedChange] = (),
) -> Comparison:
    """Candidate prices (item id -> cents) against the stable read model's items of one city, both at the
    same log position. An item either side lacks is a divergence too."""
    result = Comparison()
    seen = set()
    for item in stable:
        item_id = str(item["item_id"])
        seen.add(item_id)
        result.compared += 1
        wanted = expected_price(int(item["price_cents"]), city, item, changes)
        got = candidate.get(item_id)
        if got is not None and abs(got - wanted) <= TOLERANCE_CENTS:
            continue
        result.diverged += 1
        ratio = abs(got / wanted - 1) if got is not None and wanted else 1.0
        result.max_divergence_ratio = max(result.max_divergence_ratio, ratio)
        if len(result.examples) < 5:
            result.examples.append(f"{city}/{item_id}: candidate {got}, expected {wanted}")
    for item_id in sorted(set(candidate) - seen):
        result.compared += 1
        result.diverged += 1
        result.max_divergence_ratio = 1.0
        if len(result.examples) < 5:
            result.examples.append(f"{city}/{item_id}: only the candidate has it")
    return result
