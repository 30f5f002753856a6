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
# Every transcript the suite replays: one gone from the copy fails here even on a bare clone
# (the contract test replays whatever it finds, so it would not notice).
TRANSCRIPTS = {
    "authn-401-bad-token",
    "authn-401-foreign-cert",
    "authn-401-no-cert",
    "authz-200-alice-pods",
    "authz-403-alice-namespaces",
    "authz-403-alice-nodes",
    "authz-403-alice-other-ns",
    "create-configmap-missing-ns",
    "create-conflict-409",
    "create-invalid-422",
    "discovery-api",
    "discovery-apis",
    "discovery-core-v1",
    "discovery-storage-v1",
    "discovery-version",
    "get-namespace-404",
    "get-namespace-json",
    "get-namespace-protobuf",
    "get-namespace-table",
    "get-node-404-table",
    "impersonate-200",
    "impersonate-403-not-allowed",
    "impersonate-403-target",
    "impersonate-extra",
    "legacy-watch-path",
    "list-410-gone",
    "list-namespaces-fieldselector",
    "list-namespaces-json",
    "list-namespaces-page1",
    "list-namespaces-page2",
    "list-namespaces-partial",
    "list-namespaces-rv0",
    "list-namespaces-selector-eq",
    "list-namespaces-selector-set",
    "list-namespaces-table-include-none",
    "list-namespaces-table-include-object",
    "list-namespaces-table",
    "list-nodes-table",
    "list-pods-all-namespaces-403",
    "list-pv-json",
    "list-pv-table",
    "list-storageclasses-table",
    "method-not-allowed",
    "nonresource-healthz-verbose",
    "openid-config",
    "openid-jwks",
    "patch-bad-content-type",
    "patch-merge",
    "sa-token-direct",
    "sar-by-proxy",
    "selfsar-alice-list-nodes",
    "selfsar-protobuf-alice-list-namespaces",
    "selfsar-protobuf-body-json-answer",
    "selfsrr-alice",
    "selfsrr-protobuf-alice",
    "tokenreview-invalid",
    "tokenreview-valid",
    "unknown-resource-404",
    "update-stale-409",
    "watch-namespaces-selector-transitions",
    "watch-namespaces-table",
    "watch-partial-metadata",
    "watch-pv-json",
    "watch-timeout",
}


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_the_copy_holds_every_transcript_and_their_readme() -> None:
    names = set(files(COPY))
    assert "README.md" in names
    missing = sorted(name for name in TRANSCRIPTS if f"{name}.txt" not in names)
    assert not missing, f"transcripts missing from tests/reference: {missing}"


@pytest.mark.skipif(not RECORDED.is_dir(), reason="no ../shared/k8s-reference beside this clone")
def test_the_copy_is_byte_identical_to_the_recordings() -> None:
    recorded, copied = files(RECORDED), files(COPY)
    assert sorted(recorded) == sorted(copied), "copy ../shared/k8s-reference to tests/reference"
    changed = [name for name in recorded if recorded[name] != copied[name]]
    assert not changed, f"tests/reference differs from the recordings in {changed}"
