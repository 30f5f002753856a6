"""tests/reference is the repository's copy of the recorded kube-apiserver transcripts.

The recordings are made outside the repository (`../shared/k8s-reference` beside a clone, as CI
has it); the copy lets the suite run on a bare clone. Where the recordings are present the copy
must be byte-identical to them: a transcript added, changed or removed there fails here until
it is copied.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COPY = REPO / "tests" / "reference"
RECORDED = REPO.parent / "shared" / "k8s-reference"


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_copy_holds_the_transcripts_and_their_readme() -> None:
    names = set(files(COPY))
    assert "README.md" in names
    assert len([n for n in names if n.endswith(".txt")]) >= 60


@pytest.mark.skipif(not RECORDED.is_dir(), reason="no ../shared/k8s-reference beside this clone")
def test_the_copy_is_byte_identical_to_the_recordings() -> None:
    recorded, copied = files(RECORDED), files(COPY)
    assert sorted(recorded) == sorted(copied), "copy ../shared/k8s-reference to tests/reference"
    changed = [name for name in recorded if recorded[name] != copied[name]]
    assert not changed, f"tests/reference differs from the recordings in {changed}"
