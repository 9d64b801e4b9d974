"""The architecture diagrams' renders match their sources (`make diagrams` makes them again), and the code-layers
diagram matches the code's import graph."""

import hashlib
import runpy
from pathlib import Path
from xml.etree import ElementTree

import pytest

DIAGRAMS = Path(__file__).resolve().parents[2] / "docs" / "diagrams"
SOURCES = sorted(DIAGRAMS.glob("*.dot"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_four_diagrams_the_design_asks_for_are_there() -> None:
    assert {s.stem for s in SOURCES} >= {"cicd-flow", "k8s-resources", "pod-architecture", "realtime-flow"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_renders_were_made_from_the_current_source(source: Path) -> None:
    recorded = (DIAGRAMS / f"{source.stem}.sha256").read_text().split()
    assert recorded == [hashlib.sha256(source.read_bytes()).hexdigest(), source.name], (
        f"{source.name} changed since it was rendered: run `make diagrams` and commit the renders"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_each_source_has_a_png_and_an_svg_of_its_graph(source: Path) -> None:
    assert (DIAGRAMS / f"{source.stem}.png").read_bytes().startswith(PNG_SIGNATURE)
    svg = ElementTree.parse(DIAGRAMS / f"{source.stem}.svg").getroot()
    graph_id = source.read_text().split("digraph", 1)[1].split("{", 1)[0].strip()
    titles = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")}
    assert graph_id in titles


def test_the_code_layers_diagram_is_the_import_graph_of_the_code() -> None:
    generated = runpy.run_path(str(DIAGRAMS / "code_layers.py"))["dot"]()
    assert (DIAGRAMS / "code-layers.dot").read_text() == generated, (
        "the packages import each other differently now: run `make diagrams` and commit the result"
    )
