"""Numbers you can trace: the README quotes docs/benchmarks/ verbatim, and the one table printer."""

from pathlib import Path

import pytest

from ops.results import README, RESULTS_DIR, markdown_table, publish, readme_quotes, sync_readme


def test_every_readme_quote_is_its_results_file_verbatim() -> None:
    quotes = readme_quotes(README.read_text())
    assert quotes, "the README quotes no measured results"
    for kind, body in quotes.items():
        source = RESULTS_DIR / f"{kind}.md"
        assert source.exists(), f"the README quotes {kind} but docs/benchmarks/{kind}.md does not exist"
        assert body == source.read_text(), f"README's {kind} table differs from {source}: run python -m ops.results"
        assert (RESULTS_DIR / f"{kind}.json").exists(), f"{kind} has a table but no raw report"


def test_a_table_pads_its_columns_and_escapes_pipes() -> None:
    assert markdown_table(("metric", "value"), [("p99", "7 ms"), ("a|b", "1")]).splitlines() == [
        "| metric | value |",
        "| ------ | ----- |",
        "| p99    | 7 ms  |",
        "| a\\|b   | 1     |",
    ]


def test_publishing_writes_both_files_and_refreshes_only_its_quote(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "x\n<!-- results:demo -->\nold\n<!-- /results:demo -->\n<!-- results:other -->\nkeep\n<!-- /results:other -->\n"
    )
    markdown = publish("demo", "demo --fast", {"p99_ms": 7}, markdown_table(("m", "v"), [("p99", "7")]), tmp_path)
    assert (tmp_path / "demo.json").read_text().count('"p99_ms": 7') == 1
    assert "`demo --fast`" in markdown.read_text()
    assert sync_readme(readme, tmp_path) == ["demo"]
    assert readme_quotes(readme.read_text()) == {"demo": markdown.read_text(), "other": "keep\n"}
    assert sync_readme(readme, tmp_path) == []


@pytest.mark.parametrize("kind", ["latency", "orders"])
def test_each_measurement_the_readme_reports_is_quoted(kind: str) -> None:
    assert kind in readme_quotes(README.read_text())
