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


# The worker's Faust tables, in the order streams.state.CatalogTables takes them.
CATALOG_TABLES = ("restaurants", "items", "pricing")
SERVICES_WITH_TABLES = ("catalog", "orders", "shadow")  # `all` runs in the catalog service's group


def changelog_topic_name(group: str, table: str) -> str:
    """A table's changelog exactly as Faust names it (faust.tables.base.Collection._changelog_topic_name)."""
    return f"{group}-{table}-changelog"


def changelog_topics(namespace: str, partitions: int, shadow_label: str, generation: str = "") -> list[TopicSpec]:
    """Every service's table changelogs, compacted, one partition per source partition (Faust requires the
    same count). Created before any worker starts: a worker that creates them itself does so while its
    group's first assignment is computed, and can find them missing from the cluster metadata."""
    compacted = {"cleanup.policy": "compact"}
    return [
        TopicSpec(
            changelog_topic_name(consumer_group(namespace, service, shadow_label, generation), table),
            partitions,
            compacted,
        )
        for service in SERVICES_WITH_TABLES
        for table in CATALOG_TABLES
    ]


def consumer_group(namespace: str, service: str, shadow_label: str = "", generation: str = "") -> str:
    """A worker service's consumer group, which also prefixes its Faust table changelogs and names its tables'
    folder. The local stack's `all` worker is in the catalog service's group. A worker generation (a rollout's
    successor) has a group of its own, so it joins no running group: no rebalance (streams.handover)."""
    suffix = f"-{generation}" if generation else ""
    if service == "orders":
        return f"{namespace}-orders{suffix}"
    if service == "shadow":
        return f"{namespace}-shadow-{shadow_label}"
    return f"{namespace}-catalog{suffix}"
