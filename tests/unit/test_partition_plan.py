"""The partition plan places every city once, on the partition the producer's partitioner picks for its key."""

from aiokafka.partitioner import DefaultPartitioner

from core.settings import Settings
from ops.partition_plan import partition_of, plan


def test_every_city_is_on_exactly_one_partition_within_the_range() -> None:
    cities = [city.code for city in Settings.from_env().cities]
    for partitions in (1, 6, 12):
        placed = plan(cities, partitions)
        assert sorted(placed) == list(range(partitions))
        assert sorted(code for codes in placed.values() for code in codes) == sorted(cities)


def test_a_city_lands_where_the_producer_sends_its_records() -> None:
    partitioner = DefaultPartitioner()
    for city in ("blr", "ams", "nyc", "lon"):
        every = list(range(6))
        assert partition_of(city, 6) == partitioner(city.encode(), every, every[:1])  # however many are up
