#!/usr/bin/env bash
# Renders every docs/diagrams/*.dot to PNG and SVG with Graphviz, and records beside each render the SHA-256
# of the source it came from (NAME.sha256): tests/unit/test_diagrams.py fails when a source changed and its
# renders were not made again. File times mean nothing in a fresh clone; a digest does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v dot >/dev/null; then
    echo "diagrams: installing graphviz from apt"
    apt-get install -y -q --no-install-recommends graphviz >/dev/null </dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends graphviz >/dev/null </dev/null; }
fi
for source in *.dot; do
    name="${source%.dot}"
    dot -Tsvg "$source" -o "$name.svg"
    dot -Tpng -Gdpi=96 "$source" -o "$name.png"
    sha256sum "$source" >"$name.sha256"
    echo "diagrams: $name.svg $name.png"
done
