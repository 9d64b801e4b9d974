"""Comparing a candidate pricing version with the stable read model: declared changes pass, the rest diverges."""

import pytest

from models.errors import InvalidEvent
from models.shadow import ExpectedChange, compare_city, parse_expected_changes

STABLE = [
    {"item_id": "i1", "restaurant_id": "r1", "category": "Mains", "price_cents": 1000},
    {"item_id": "i2", "restaurant_id": "r1", "category": "Desserts", "price_cents": 333},
    {"item_id": "i3", "restaurant_id": "r2", "category": "Desserts", "price_cents": 450},
]


def test_identical_prices_do_not_diverge() -> None:
    result = compare_city("blr", {"i1": 1000, "i2": 333, "i3": 450}, STABLE)
    assert (result.compared, result.diverged, result.max_divergence_ratio) == (3, 0, 0.0)


def test_a_category_ten_percent_too_high_diverges_item_by_item() -> None:
    result = compare_city("blr", {"i1": 1000, "i2": 366, "i3": 495}, STABLE)
    assert (result.compared, result.diverged) == (3, 2)
    assert result.max_divergence_ratio == pytest.approx(0.1, abs=0.002)
    assert result.examples == ["blr/i2: candidate 366, expected 333", "blr/i3: candidate 495, expected 450"]


def test_a_declared_change_passes_and_only_where_it_was_declared() -> None:
    desserts_up = parse_expected_changes('[{"ratio": 1.1, "category": "Desserts", "city": "blr"}]')
    assert compare_city("blr", {"i1": 1000, "i2": 366, "i3": 495}, STABLE, desserts_up).diverged == 0
    assert compare_city("mum", {"i1": 1000, "i2": 366, "i3": 495}, STABLE, desserts_up).diverged == 2
    # the declared change did not happen: that is a divergence too
    assert compare_city("blr", {"i1": 1000, "i2": 333, "i3": 450}, STABLE, desserts_up).diverged == 2


def test_rounding_by_a_cent_is_not_a_divergence() -> None:
    uplift = (ExpectedChange(1.05),)
    assert compare_city("blr", {"i1": 1050, "i2": 349, "i3": 473}, STABLE, uplift).diverged == 0


def test_items_only_one_side_has_are_divergences() -> None:
    result = compare_city("blr", {"i1": 1000, "i2": 333, "i9": 100}, STABLE)
    assert (result.compared, result.diverged, result.max_divergence_ratio) == (4, 2, 1.0)


@pytest.mark.parametrize(
    "spec",
    ['{"ratio": 1.1}', "[{}]", '[{"ratio": 0}]', '[{"ratio": true}]', '[{"ratio": 1.1, "colour": "red"}]', "not json"],
)
def test_a_malformed_expectation_is_refused(spec: str) -> None:
    with pytest.raises(InvalidEvent):
        parse_expected_changes(spec)
