"""The Redis layout of the read model: written by the stream workers, read by the API pods.

Per city:
  {ns}:menu:{city}:restaurants  hash  restaurant_id -> restaurant JSON
  {ns}:menu:{city}:items        hash  item_id -> item JSON (effective price included)
  {ns}:menu:{city}:meta         hash  position (last applied Kafka offset), cursor (last feed id), pricing
  {ns}:menu:{city}:feed         stream of changes, ids "<offset + 1>-<n>" (Redis refuses 0-0), fields type, data, prev
Per event:
  {ns}:event:{event_id}         hash  status, published_at, applied_at, version, reason
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CityKeys:
    restaurants: str
    items: str
    meta: str
    feed: str

    def as_list(self) -> list[str]:
        return [self.restaurants, self.items, self.meta, self.feed]


def city_keys(namespace: str, city: str) -> CityKeys:
    base = f"{namespace}:menu:{city}"
    return CityKeys(f"{base}:restaurants", f"{base}:items", f"{base}:meta", f"{base}:feed")


def event_key(namespace: str, event_id: str) -> str:
    return f"{namespace}:event:{event_id}"


def rate_key(namespace: str, scope: str, subject: str, window: int) -> str:
    return f"{namespace}:rate:{scope}:{subject}:{window}"


EVENT_STATUS_TTL_S = 7 * 24 * 3600
