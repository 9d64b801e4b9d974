"""core.gc_policy: after start-up a process freezes what it built and collects young objects less often."""

import gc
from collections.abc import Iterator

import pytest

from core import gc_policy


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_wait_for_more_objects() -> None:
    built_at_start = [object() for _ in range(10)], {"settings": [1, 2, 3]}

    gc_policy.settle_after_startup()

    assert gc.get_freeze_count() > 0
    collectable = {id(o) for o in gc.get_objects()}
    assert all(gc.is_tracked(o) and id(o) not in collectable for o in built_at_start)  # out of every generation
    assert gc.get_threshold() == (gc_policy.YOUNG_THRESHOLD, gc_policy.MIDDLE_THRESHOLD, gc_policy.OLD_THRESHOLD)
    assert gc_policy.YOUNG_THRESHOLD > 700  # CPython's default, which a connection storm kept promoting through


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_after_start_up_are_still_collected() -> None:
    gc_policy.settle_after_startup()
    freed = []

    class Node:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            freed.append(True)

    Node()
    gc.collect()
    assert freed == [True]
