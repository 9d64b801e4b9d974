"""Every topic the project owns: its name, partition count and retention."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def catalog_topic_name(namespace: str) -> str:
    return f"{namespace}.catalog-events"


def order_topic_name(namespace: str) -> str:
    """Order commands, keyed by city like the catalog: a city's orders are priced where its tables live."""
    return f"{namespace}.order-commands"


def dead_letter_topic_name(namespace: str) -> str:
    return f"{namespace}.dead-letters"


def project_topics(namespace: str, partitions: int) -> list[TopicSpec]:
    """Event topics keep their whole history (they are the source of truth); Faust compacts changelogs."""
    keep_forever = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
    return [
        TopicSpec(catalog_topic_name(namespace), partitions, keep_forever),
        TopicSpec(order_topic_name(namespace), partitions, keep_forever),
        TopicSpec(dead_letter_topic_name(namespace), partitions, keep_forever),
    ]


def consumer_group(namespace: str, service: str, shadow_label: str = "") -> str:
    """A worker service's consumer group, which also prefixes its Faust table changelogs and names its tables'
    folder. The local stack's `all` worker is in the catalog service's group."""
    if service == "orders":
        return f"{namespace}-orders"
    if service == "shadow":
        return f"{namespace}-shadow-{shadow_label}"
    return f"{namespace}-catalog"
