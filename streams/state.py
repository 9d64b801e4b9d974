"""The worker's tables: how catalog state is keyed and encoded in Faust tables, and read back as a view.

Keys are `<city>/<id>` (restaurants, items) and `<city>` (pricing). One city's events share a Kafka key,
so all of its records live in the partition that processes them and recover with it.
Values are JSON bytes of the model records: raw bytes store cleanly in RocksDB and changelogs.
"""

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from models.catalog import BatchOutcome, CityPricing, ItemState, RestaurantState
from models.events import PricingRule


def record_key(city: str, record_id: str) -> bytes:
    return f"{city}/{record_id}".encode()


def city_key(city: str) -> bytes:
    return city.encode()


def _known(record_type: type, document: dict[str, Any]) -> dict[str, Any]:
    """Fields this build knows: another version of the worker may have stored more (side-by-side rollout)."""
    names = {f.name for f in dataclasses.fields(record_type)}
    return {name: value for name, value in document.items() if name in names}


def decode_restaurant(raw: bytes) -> RestaurantState:
    return RestaurantState(**_known(RestaurantState, orjson.loads(raw)))


def decode_item(raw: bytes) -> ItemState:
    return ItemState(**_known(ItemState, orjson.loads(raw)))


def decode_pricing(raw: bytes) -> CityPricing:
    document = _known(CityPricing, orjson.loads(raw))
    rule = document.pop("rule", None)
    return CityPricing(rule=PricingRule(**_known(PricingRule, rule)) if rule else None, **document)


def encode(record: RestaurantState | ItemState | CityPricing) -> bytes:
    return orjson.dumps(record)


class CatalogTables:
    """The three tables, wrapped so the rest of the worker never sees keys or bytes."""

    def __init__(self, restaurants: Any, items: Any, pricing: Any) -> None:
        self.restaurants = restaurants
        self.items = items
        self.pricing = pricing

    def view(self, city: str) -> "TableView":
        return TableView(self, city)

    def persist(self, city: str, outcome: BatchOutcome) -> None:
        for restaurant in outcome.restaurants.values():
            self.restaurants[record_key(city, restaurant.restaurant_id)] = encode(restaurant)
        for item in outcome.items.values():
            self.items[record_key(city, item.item_id)] = encode(item)
        if outcome.pricing is not None:
            self.pricing[city_key(city)] = encode(outcome.pricing)

    def cities(self) -> Iterator[tuple[str, CityPricing]]:
        for key, raw in self.pricing.items():
            yield _text(key), decode_pricing(raw)


class TableView:
    """One city's state in the tables, as models.catalog.CatalogView."""

    def __init__(self, tables: CatalogTables, city: str) -> None:
        self._tables = tables
        self._city = city
        self._prefix = record_key(city, "")  # every key of the city's rows starts so

    def restaurant(self, restaurant_id: str) -> RestaurantState | None:
        raw = self._tables.restaurants.get(record_key(self._city, restaurant_id))
        return decode_restaurant(raw) if raw is not None else None

    def item(self, item_id: str) -> ItemState | None:
        raw = self._tables.items.get(record_key(self._city, item_id))
        return decode_item(raw) if raw is not None else None

    def pricing(self) -> CityPricing:
        raw = self._tables.pricing.get(city_key(self._city))
        return decode_pricing(raw) if raw is not None else CityPricing()

    def items(self) -> Iterable[ItemState]:
        return (decode_item(raw) for raw in rows_under(self._tables.items, self._prefix))

    def restaurants(self) -> Iterable[RestaurantState]:
        return (decode_restaurant(raw) for raw in rows_under(self._tables.restaurants, self._prefix))


def rows_under(table: Any, prefix: bytes) -> Iterator[bytes]:
    """The values of the rows whose key starts with `prefix` (one city's).

    A Faust table on RocksDB seeks to them: keys are sorted, so a city's rows are one run in its partition's
    database, and repricing a city reads that city only, not every item of every city the worker holds. Any
    other mapping (the in-memory tables of the unit tests) is scanned."""
    store: Any = getattr(table, "data", None)
    if getattr(store, "use_rocksdict", False):
        for db in store._dbs_for_actives():  # Faust's own: the databases of the partitions assigned here
            for key, value in db.items(from_key=prefix):
                if not key.startswith(prefix):
                    break
                yield value
        return
    for key, value in table.items():
        if _text(key).startswith(prefix.decode()):
            yield value


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key
