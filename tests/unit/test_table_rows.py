"""A city's rows are read by seeking to them in RocksDB, not by scanning every city the worker holds."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rocksdict import Rdict

from models.catalog import ItemState, RestaurantState
from streams.state import CatalogTables, encode, record_key, rows_under


def rocksdb_table(path: Path, rows: dict[bytes, bytes]) -> tuple[Any, list[Rdict]]:
    """A table shaped as Faust's on RocksDB: its store says so and hands out the assigned partitions' databases
    (two here, as a worker holding two partitions)."""
    dbs = [Rdict(str(path / "p0")), Rdict(str(path / "p1"))]
    for index, (key, value) in enumerate(sorted(rows.items())):
        dbs[index % 2][key] = value
    dbs[0][b"__faust\x00offset__"] = b"42"  # Faust's own bookkeeping row sits beside the records
    store = SimpleNamespace(use_rocksdict=True, _dbs_for_actives=lambda: iter(dbs))
    return SimpleNamespace(data=store), dbs


def test_only_the_citys_rows_are_read_from_every_assigned_partition(tmp_path: Path) -> None:
    rows = {
        record_key(city, f"item-{n}"): f"{city}-{n}".encode() for city in ("ams", "blr", "blrx", "bl") for n in range(3)
    }
    table, dbs = rocksdb_table(tmp_path, rows)
    try:
        assert sorted(rows_under(table, b"blr/")) == [b"blr-0", b"blr-1", b"blr-2"]
        assert list(rows_under(table, b"nyc/")) == []
    finally:
        for db in dbs:
            db.close()


def test_a_mapping_that_is_not_rocksdb_is_scanned() -> None:
    items = {record_key("blr", "a"): b'"x"', record_key("ams", "b"): b'"y"', "blr/c": b'"z"'}
    assert sorted(rows_under(items, b"blr/")) == [b'"x"', b'"z"']


def test_a_city_view_reads_its_items_and_restaurants_alone(tmp_path: Path) -> None:
    item = encode(ItemState("r", "i", "Dosa", "", "mains", True, 100, 100, 1, 1))
    restaurant = encode(RestaurantState("r", "Dosa Hut", True, 1, 1))
    items, item_dbs = rocksdb_table(tmp_path / "items", {record_key("blr", "i"): item, record_key("ams", "i"): item})
    restaurants, restaurant_dbs = rocksdb_table(
        tmp_path / "restaurants", {record_key("blr", "r"): restaurant, record_key("blrx", "r"): restaurant}
    )
    try:
        view = CatalogTables(restaurants, items, {}).view("blr")
        assert [i.item_id for i in view.items()] == ["i"]
        assert [r.restaurant_id for r in view.restaurants()] == ["r"]
    finally:
        for db in [*item_dbs, *restaurant_dbs]:
            db.close()
