"""Which partition each city's events land on (`python -m ops.partition_plan [--partitions N]`).

Every catalog and order record is keyed by its city (core.publisher), so a city's events are one ordered log in
one partition, and the worker holding that partition projects the city. A service therefore runs at most as many
busy workers as there are partitions (`FEASTFLOW_PARTITIONS`, 6 by default); more workers stand by. Plan the
count when the topics are created: adding partitions to a live topic moves cities to other partitions, and their
order across the move would be lost.
"""

import argparse
from collections import defaultdict

from aiokafka.partitioner import DefaultPartitioner

from core.settings import Settings


def partition_of(city: str, partitions: int) -> int:
    """The partition aiokafka's default partitioner (murmur2 of the key, as Kafka's Java client) gives a city."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(city.encode(), every, every))


def plan(cities: list[str], partitions: int) -> dict[int, list[str]]:
    by_partition: dict[int, list[str]] = defaultdict(list)
    for city in cities:
        by_partition[partition_of(city, partitions)].append(city)
    return {partition: by_partition.get(partition, []) for partition in range(partitions)}


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=settings.partitions)
    args = parser.parse_args()
    cities = [city.code for city in settings.cities]
    print(f"{len(cities)} cities over {args.partitions} partitions: at most {args.partitions} busy workers per service")
    print("| partition | cities | count |\n|---|---|---|")
    for partition, codes in plan(cities, args.partitions).items():
        print(f"| {partition} | {', '.join(codes) or '-'} | {len(codes)} |")


if __name__ == "__main__":
    main()
