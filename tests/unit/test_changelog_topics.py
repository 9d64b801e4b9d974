"""`feastflow topics` creates every service's table changelogs under exactly the names, partition counts and
cleanup policy the workers' Faust tables use, so no worker ever has to create one during its first rebalance."""

from dataclasses import replace
from pathlib import Path

import pytest

from core.settings import Settings
from core.topics import SERVICES_WITH_TABLES, changelog_topics
from streams.app import create_app


@pytest.mark.parametrize("service", SERVICES_WITH_TABLES)
def test_changelog_topics_are_the_ones_the_worker_tables_use(tmp_path: Path, service: str) -> None:
    settings = replace(
        Settings(), namespace="ns1", partitions=4, data_dir=tmp_path, worker_service=service, shadow_label="cand"
    )
    worker = create_app(settings)
    used = {table.changelog_topic.get_topic_name(): table.changelog_topic for table in worker.app.tables.values()}
    declared = {spec.name: spec for spec in changelog_topics("ns1", 4, "cand")}
    assert used, "the worker has tables"
    assert set(used) <= set(declared), f"the worker uses changelogs `feastflow topics` does not create: {used}"
    for name, topic in used.items():
        assert topic.partitions == declared[name].partitions == 4
        assert topic.compacting and declared[name].config == {"cleanup.policy": "compact"}


def test_every_service_gets_its_own_changelogs() -> None:
    names = [spec.name for spec in changelog_topics("ns1", 6, "cand")]
    assert len(names) == len(set(names)) == 9
    assert "ns1-catalog-items-changelog" in names
    assert "ns1-orders-pricing-changelog" in names
    assert "ns1-shadow-cand-restaurants-changelog" in names
