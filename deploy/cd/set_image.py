"""Point an environment's values file at one image build: `python3 deploy/cd/set_image.py ENV REPOSITORY DIGEST SHA`.

Rewrites the `image:` block of deploy/helm/feastflow/values-ENV.yaml in place (comments and everything else
kept), prints the image reference it replaced, and leaves committing to the caller. The commit SHA is kept
beside the digest, so the values file's history maps every deployed digest to the commit it was built from.
Standard library only: the CD workflow runs it before any virtualenv exists.
"""

import re
import sys
from pathlib import Path

VALUES_DIR = Path(__file__).resolve().parents[1] / "helm" / "feastflow"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
IMAGE_BLOCK = re.compile(r"^image:\n(?:(?:  .*|\s*)\n)*", re.MULTILINE)


def _field(block: str, name: str) -> str:
    found = re.search(rf"^  {name}: *\"?([^\"\n]*)\"?$", block, re.MULTILINE)
    return found.group(1).strip() if found else ""


def _set_field(block: str, name: str, value: str) -> str:
    line = f'  {name}: "{value}"' if name == "digest" else f"  {name}: {value}"
    replaced, count = re.subn(rf"^  {name}:.*$", line, block, count=1, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"the image block has no {name}: line")
    return replaced


def set_image(values_file: Path, repository: str, digest: str, commit: str) -> str:
    if not DIGEST.match(digest):
        raise SystemExit(f"not a digest: {digest!r} (want sha256:<64 hex>)")
    if not COMMIT.match(commit):
        raise SystemExit(f"not a commit SHA: {commit!r}")
    text = values_file.read_text()
    block_match = IMAGE_BLOCK.search(text)
    if block_match is None:
        raise SystemExit(f"{values_file} has no top-level image: block")
    block = block_match.group(0)
    old_digest = _field(block, "digest")
    previous = f"{_field(block, 'repository')}{'@' + old_digest if old_digest else ':' + _field(block, 'tag')}"
    for name, value in (("repository", repository), ("digest", digest), ("tag", commit)):
        block = _set_field(block, name, value)
    values_file.write_text(text[: block_match.start()] + block + text[block_match.end() :])
    return previous


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    environment, repository, digest, commit = argv
    print(set_image(VALUES_DIR / f"values-{environment}.yaml", repository, digest, commit))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
