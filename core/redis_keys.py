"""The Redis layout of the read model: written by the stream workers, read by the API pods.

Per city:
  {ns}:menu:{city}:restaurants  hash  restaurant_id -> restaurant JSON
  {ns}:menu:{city}:items        hash  item_id -> item JSON (effective price included)
  {ns}:menu:{city}:meta         hash  position (last applied Kafka offset), cursor (last feed id), pricing
  {ns}:menu:{city}:feed         stream of changes, ids "<offset + 1>-<n>" (Redis refuses 0-0), fields type, data, prev
Per event:
  {ns}:event:{event_id}         hash  status, published_at, applied_at, version, reason
The worker handover (streams.handover):
  {ns}:handover:epoch           counter: the last fencing epoch handed out
  {ns}:handover:{service}:holder hash group, epoch, since: the consumer group that writes for the service now
  {ns}:handover:released:{epoch} hash  "<topic>:<partition>" -> offset where the predecessor stopped
  (and `epoch` in each city's meta hash: the projection refuses a write of an older epoch)
Orders:
  {ns}:order:{order_id}         hash  doc (the API's order JSON), version, customer, restaurant_id
  {ns}:order:{order_id}:feed    stream of the order's status events, ids "<version>-0"
  {ns}:orders:feed              stream of every order's status events, for each pod's one reader
  {ns}:idem:{customer}:{digest} string "<fingerprint> <order_id>": a customer's idempotency key
"""

import hashlib
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


@dataclass(frozen=True, slots=True)
class HandoverKeys:
    epoch: str
    holder: str
    namespace: str

    def released(self, epoch: int) -> str:
        return f"{self.namespace}:handover:released:{epoch}"


def handover_keys(namespace: str, service: str) -> HandoverKeys:
    """Epochs are counted once per namespace; each worker service (its lanes) has its own holder."""
    return HandoverKeys(f"{namespace}:handover:epoch", f"{namespace}:handover:{service}:holder", namespace)


def rate_key(namespace: str, scope: str, subject: str, window: int) -> str:
    return f"{namespace}:rate:{scope}:{subject}:{window}"


EVENT_STATUS_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class OrderKeys:
    order: str
    feed: str
    all_orders_feed: str

    def as_list(self) -> list[str]:
        return [self.order, self.feed, self.all_orders_feed]


def order_keys(namespace: str, order_id: str) -> OrderKeys:
    return OrderKeys(f"{namespace}:order:{order_id}", f"{namespace}:order:{order_id}:feed", orders_feed_key(namespace))


def orders_feed_key(namespace: str) -> str:
    return f"{namespace}:orders:feed"


def idempotency_key(namespace: str, customer: str, key: str) -> str:
    digest = hashlib.sha256(f"{customer}\x00{key}".encode()).hexdigest()[:32]
    return f"{namespace}:idem:{digest}"


ORDER_TTL_S = 30 * 24 * 3600
IDEMPOTENCY_TTL_S = 24 * 3600
