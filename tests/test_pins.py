"""Catalogue pins: every catalogue file is pinned to a commit and the sha256 of its content, or says why not; a file
whose content differs from its pin is refused with both digests named; files without a published pin are held to
the digest of their first download (trust on first use). Against the local stand-in hub (tests/hubstandin.py)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from server.downloads import Catalogue, CatalogueError, ChecksumError, pull_file
from server.downloads.catalogue import CATALOGUE_PATH, CatalogueFile
from server.downloads.pins import PINS_FILE
from server.models.registry import ModelRegistry
from tests.hubstandin import COMMIT, hub, payload  # noqa: F401 - hub is a fixture

PINNED = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"


def item(
    sha256=None,
    revision=PINNED,
    unpinned="",
    size=None,
    file="weights.safetensors",
    target="checkpoints/model.safetensors",
) -> CatalogueFile:
    return CatalogueFile(
        id="model",
        repo="org/model",
        file=file,
        target=target,
        family="sd15",
        kind="checkpoint",
        what="a test model",
        revision=revision,
        sha256=sha256,
        size=size,
        unpinned=unpinned,
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the shipped catalogue -------------------------------------------------------------------------------------------


def test_every_shipped_file_is_pinned_or_says_why():
    catalogue = Catalogue.load()
    for f in catalogue.files.values():
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.id
        pinned = f.sha256 is not None and re.fullmatch(r"[0-9a-f]{40}", f.revision)
        assert pinned or f.unpinned.strip(), f"{f.id}: not pinned and no reason given"
        if f.sha256:
            assert f.pinned_from.strip(), f"{f.id}: a pin must name where it was found"
    pinned = [f for f in catalogue.files.values() if f.sha256]
    assert len(pinned) >= 20, "most files carry a published sha256"


def test_a_catalogue_that_pins_nothing_and_gives_no_reason_is_refused(tmp_path):
    entry = {
        "repo": "a/b",
        "file": "x.safetensors",
        "target": "checkpoints/x.safetensors",
        "family": "sd15",
        "kind": "checkpoint",
        "revision": "main",
        "sha256": None,
    }
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"files": {"x": entry}, "presets": {}}))
    with pytest.raises(CatalogueError) as err:
        Catalogue.load(path)
    assert "'x'" in str(err.value) and "unpinned" in str(err.value)
    path.write_text(json.dumps({"files": {"x": {**entry, "sha256": "abc"}}, "presets": {}}))
    with pytest.raises(CatalogueError, match="malformed sha256"):
        Catalogue.load(path)
    path.write_text(json.dumps({"files": {"x": {**entry, "unpinned": "none published"}}, "presets": {}}))
    assert Catalogue.load(path).files["x"].unpinned == "none published"
    assert json.loads(CATALOGUE_PATH.read_text())["files"]  # the shipped one loads (the test above)


# --- pinned files ----------------------------------------------------------------------------------------------------


def test_a_pinned_file_is_fetched_at_its_commit_and_checked_against_its_sha256(hub, tmp_path):
    data = payload(5000)
    hub.files[("org/model", "weights.safetensors")] = data
    result = pull_file(item(sha256=sha(data)), tmp_path)
    assert result.checked_with == "sha256 (catalogue)" and result.note == ""
    assert result.path.read_bytes() == data
    assert all(f"/resolve/{PINNED}/" in path for _, path, _ in hub.requests), hub.requests
    assert not (tmp_path / PINS_FILE).exists()  # a pinned file needs no first-use record


def test_a_changed_upstream_file_is_refused_before_download_naming_both_digests(hub, tmp_path):
    pinned, served = payload(5000), payload(5000, seed=1)
    hub.files[("org/model", "weights.safetensors")] = served
    with pytest.raises(ChecksumError) as err:
        pull_file(item(sha256=sha(pinned)), tmp_path)
    assert sha(pinned) in str(err.value) and sha(served) in str(err.value)
    assert "Nothing was downloaded" in str(err.value)
    assert not any(method == "GET" for method, _, _ in hub.requests)
    assert not (tmp_path / "checkpoints" / "model.safetensors").exists()


def test_content_that_differs_from_its_pin_is_refused_after_download_naming_both_digests(hub, tmp_path):
    pinned, served = payload(5000), payload(5000, seed=2)
    hub.files[("org/model", "weights.safetensors")] = served
    hub.etags[("org/model", "weights.safetensors")] = sha(pinned)  # the hub (or a proxy) claims the pinned file
    with pytest.raises(ChecksumError) as err:
        pull_file(item(sha256=sha(pinned)), tmp_path)
    assert f"its sha256 is {sha(served)}, expected {sha(pinned)}" in str(err.value)
    assert not (tmp_path / "checkpoints" / "model.safetensors").exists()


# --- unpinned files: trust on first use ------------------------------------------------------------------------------


def test_an_unpinned_file_is_recorded_at_first_download_and_held_to_it(hub, tmp_path):
    first, changed = payload(5000), payload(5000, seed=3)
    hub.files[("org/model", "weights.safetensors")] = first
    unpinned = item(revision="main", unpinned="no published sha256 found")
    result = pull_file(unpinned, tmp_path)
    assert result.checked_with == "sha256 (hub etag)"
    assert "no published sha256" in result.note and "recorded" in result.note
    record = json.loads((tmp_path / PINS_FILE).read_text())["org/model/weights.safetensors"]
    assert record["sha256"] == sha(first) and record["size"] == 5000

    again = pull_file(unpinned, tmp_path, force=True)  # the same file again: held to the record
    assert again.checked_with.startswith("sha256 (recorded at its first download")

    hub.files[("org/model", "weights.safetensors")] = changed  # upstream replaced: refused before download
    with pytest.raises(ChecksumError) as err:
        pull_file(unpinned, tmp_path, force=True)
    assert sha(first) in str(err.value) and sha(changed) in str(err.value) and "first downloaded" in str(err.value)

    hub.etags[("org/model", "weights.safetensors")] = sha(first)  # ... and after, when the hub claims the old file
    with pytest.raises(ChecksumError) as err:
        pull_file(unpinned, tmp_path, force=True)
    assert f"its sha256 is {sha(changed)}" in str(err.value) and sha(first) in str(err.value)
    assert (tmp_path / "checkpoints" / "model.safetensors").read_bytes() == first  # the good copy stays


def test_a_small_unpinned_file_is_recorded_too(hub, tmp_path):
    hub.files[("org/model", "config.json")] = b'{"a": 1}'
    small = item(revision="main", unpinned="small config", file="config.json", target="vae/x/config.json")
    assert pull_file(small, tmp_path).checked_with == "git sha1 (hub etag)"
    hub.files[("org/model", "config.json")] = b'{"a": 2}'
    with pytest.raises(ChecksumError) as err:
        pull_file(small, tmp_path, force=True)
    assert sha(b'{"a": 1}') in str(err.value) and sha(b'{"a": 2}') in str(err.value)


def test_the_pins_record_is_not_listed_as_a_model(hub, tmp_path):
    hub.files[("org/model", "weights.safetensors")] = payload(5000)
    pull_file(item(revision="main", unpinned="none"), tmp_path)
    assert (tmp_path / PINS_FILE).exists()
    assert all(PINS_FILE not in e["path"] for e in ModelRegistry([tmp_path]).listing())


def test_the_stand_in_hub_reports_its_commit(hub):
    assert re.fullmatch(r"[0-9a-f]{40}", COMMIT)
