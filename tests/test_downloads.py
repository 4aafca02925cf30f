"""Model downloads (server/downloads, ``paintbridge models pull``) against a local stand-in for the Hugging Face hub.

The stand-in serves what huggingface_hub's ``get_hf_file_metadata`` and ``hf_hub_download`` ask for: ``HEAD`` and
``GET /{repo}/resolve/{revision}/{file}`` with ``X-Repo-Commit``, ``ETag`` (sha256 for large files, git blob sha1
for small ones, as the hub does), ``Content-Length`` and HTTP ``Range`` answers (206 + ``Content-Range``). It can cut
a connection half-way through a file, and it records every request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.downloads import Catalogue, CatalogueError, ChecksumError, OfflineError, PullError, pull, pull_file
from server.downloads.catalogue import CATALOGUE_PATH, CatalogueFile
from server.downloads.pull import DOWNLOADS_DIR, file_digest
from server.downloads.status import catalogue_entry_for, preset_status
from tests.hubstandin import Hub, git_sha1, hub, payload  # noqa: F401 - hub is a fixture

REPO = Path(__file__).resolve().parent.parent


def item(repo="org/model", file="weights.safetensors", target="checkpoints/model.safetensors", **kw) -> CatalogueFile:
    return CatalogueFile(
        id=kw.pop("id", "model"),
        repo=repo,
        file=file,
        target=target,
        family="sd15",
        kind="checkpoint",
        what="a test model",
        **kw,
    )


# --- the shipped catalogue -------------------------------------------------------------------------------------------


def test_the_shipped_catalogue_is_complete_and_consistent():
    catalogue = Catalogue.load()
    assert {"sd15", "sdxl", "annotators", "upscaler"} <= set(catalogue.presets)
    data = json.loads(CATALOGUE_PATH.read_text())
    for key, entry in data["files"].items():
        assert set(entry) >= {"repo", "file", "target", "family", "kind", "size", "sha256", "licence"}, key
        unconfirmed = {name for name in ("size", "sha256") if entry[name] is None}
        assert unconfirmed <= set(entry.get("to_confirm", [])), f"{key}: unverified values must be marked to_confirm"
        assert entry["size_estimate"] > 0, key
    kinds = {(f.family, f.kind) for f in catalogue.presets["sd15"].files}
    assert {
        ("sd15", "checkpoint"),
        ("sd15", "controlnet"),
        ("sd15", "lora"),
        ("sd15", "vae"),
        ("any", "upscaler"),
        ("any", "annotator"),
    } <= kinds
    controls = " ".join(f.target for f in catalogue.presets["sd15"].files if f.kind == "controlnet")
    for control in ("inpaint", "canny", "depth", "lineart", "tile", "openpose"):
        assert control in controls
    assert any("inpainting" in f.target for f in catalogue.presets["sd15"].files if f.kind == "checkpoint")
    # Targets follow the folders the registry and the annotators read.
    from server.preprocess.annotators import DEPTH_FILES, DEPTH_FOLDER, WEIGHT_FILES

    targets = {f.target for f in catalogue.files.values()}
    assert {f"annotators/{DEPTH_FOLDER}/{name}" for name in DEPTH_FILES} <= targets
    assert f"annotators/{WEIGHT_FILES['softedge']}" in targets
    from server.preprocess.pose import POSE_FILES

    assert {f"annotators/{name}" for name in POSE_FILES.values()} <= targets
    for preset in ("sd15", "sdxl", "annotators"):
        pose = [f for f in catalogue.presets[preset].files if "pose" in (f.controls or [])]
        assert {f.target for f in pose if f.kind == "annotator"} == {f"annotators/{n}" for n in POSE_FILES.values()}
        assert preset == "annotators" or any(f.kind == "controlnet" for f in pose), preset


def test_unknown_names_are_refused_naming_what_exists():
    with pytest.raises(CatalogueError, match="presets: sd15, sdxl"):
        Catalogue.load().resolve("sd3")


def test_preset_status_lists_what_is_missing(tmp_path):
    catalogue = Catalogue.load()
    upscaler = catalogue.files["upscaler-4x-ultrasharp"]
    upscaler.path_in(tmp_path).parent.mkdir(parents=True)
    upscaler.path_in(tmp_path).write_bytes(b"x")
    status = {s.preset.name: s for s in preset_status(catalogue, [tmp_path])}
    assert status["upscaler"].complete
    assert (
        upscaler not in status["sd15"].missing and len(status["sd15"].missing) == len(status["sd15"].preset.files) - 1
    )
    assert catalogue_entry_for(upscaler.path_in(tmp_path), catalogue, [tmp_path]) == upscaler
    assert catalogue_entry_for(tmp_path / "vae" / "taesd", catalogue, [tmp_path]).id == "taesd"


# --- pull against the stand-in ---------------------------------------------------------------------------------------


def test_pull_completes_verifies_reports_progress_and_keeps_folders_clean(hub, tmp_path):
    data = payload(300_000)
    hub.files[("org/model", "weights.safetensors")] = data
    seen = []
    result = pull_file(item(), tmp_path, progress=lambda f, done, total: seen.append((done, total)))
    assert result.path == tmp_path / "checkpoints" / "model.safetensors" and result.path.read_bytes() == data
    assert result.downloaded and result.checked_with == "sha256 (hub etag)"
    assert seen and seen[-1] == (len(data), len(data)) and all(d <= t for d, t in seen)
    assert not (tmp_path / DOWNLOADS_DIR).exists(), "the staging folder is removed"
    # A second pull keeps the file and downloads nothing.
    before = len(hub.requests)
    again = pull_file(item(), tmp_path)
    assert not again.downloaded and len(hub.requests) == before


def test_small_files_are_checked_with_the_git_sha1_the_hub_reports(hub, tmp_path):
    hub.files[("org/model", "config.json")] = b'{"a": 1}'
    result = pull_file(item(file="config.json", target="vae/x/config.json"), tmp_path)
    assert result.checked_with == "git sha1 (hub etag)" and result.path.read_bytes() == b'{"a": 1}'


def test_a_cut_connection_is_resumed_with_a_range_request(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    # huggingface_hub resumes from the last whole chunk it wrote (10 MB for real downloads); smaller chunks here.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    data = payload(500_000, seed=3)
    key = ("org/model", "weights.safetensors")
    hub.files[key] = data
    hub.cut[key] = 200_000
    result = pull_file(item(), tmp_path)
    assert result.path.read_bytes() == data and result.checked_with == "sha256 (hub etag)"
    gets = [rng for method, _, rng in hub.requests if method == "GET"]
    assert len(gets) == 2 and gets[0] is None
    resumed_at = int(gets[1].split("=")[1].rstrip("-"))
    assert 3 * 64 * 1024 <= resumed_at <= 200_000, gets


def test_a_file_whose_checksum_does_not_match_is_refused_and_deleted(hub, tmp_path):
    data = payload(300_000)
    hub.files[("org/model", "weights.safetensors")] = data
    wrong = hashlib.sha256(b"something else").hexdigest()
    hub.etags[("org/model", "weights.safetensors")] = wrong  # the hub claims the pinned file: only its bytes tell
    with pytest.raises(ChecksumError, match=f"expected {wrong}") as err:
        pull_file(item(sha256=wrong), tmp_path)
    assert hashlib.sha256(data).hexdigest() in str(err.value) and "deleted" in str(err.value)
    assert not (tmp_path / "checkpoints" / "model.safetensors").exists()
    assert not (tmp_path / DOWNLOADS_DIR).exists()
    # The hub's own checksum is used when the catalogue has none: a corrupt copy on the hub is refused too.
    with pytest.raises(ChecksumError, match="sha256"):
        pull_file(item(), tmp_path)
    # And the catalogue's size, when known.
    hub.etags.clear()
    with pytest.raises(ChecksumError, match="expected 12 bytes|size"):
        pull_file(item(size=12), tmp_path)
    # The right sha256 passes.
    assert pull_file(item(sha256=hashlib.sha256(data).hexdigest()), tmp_path).checked_with == "sha256 (catalogue)"


def test_missing_files_and_offline_hubs_get_clear_messages(hub, tmp_path, monkeypatch):
    with pytest.raises(PullError, match="has no file weights.safetensors"):
        pull_file(item(), tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    files = [item(), item(id="lora", repo="org/lora", file="l.safetensors", target="loras/l.safetensors")]
    with pytest.raises(OfflineError) as err:
        pull(files, tmp_path)
    text = str(err.value)
    assert "offline" in text and "http://127.0.0.1:9/org/lora/resolve/main/l.safetensors" in text
    assert str(tmp_path / "loras" / "l.safetensors") in text
    assert err.value.manual == [
        (
            "http://127.0.0.1:9/org/model/resolve/main/weights.safetensors",
            tmp_path / "checkpoints" / "model.safetensors",
        ),
        ("http://127.0.0.1:9/org/lora/resolve/main/l.safetensors", tmp_path / "loras" / "l.safetensors"),
    ]


def test_digest_of_a_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    assert file_digest(path, "sha256") == hashlib.sha256(b"hello").hexdigest()
    assert file_digest(path, "git-sha1") == git_sha1(b"hello")


# --- the command line ------------------------------------------------------------------------------------------------


def _cli(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


@pytest.mark.engine  # loads a model or starts a server process
def test_models_pull_command_downloads_a_preset_and_models_lists_it(tmp_path):
    catalogue = Catalogue.load()
    with Hub() as hub:
        for f in [*catalogue.presets["annotators"].files, *catalogue.presets["lama"].files]:
            hub.files[(f.repo, f.file)] = payload(2000 if f.file.endswith(".json") else 150_000, seed=len(f.id))
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
        # LaMa's file has no published pin: checked with the hub's sha256, recorded, and the command says so.
        out = _cli(["models", "pull", "lama", "--models", str(tmp_path)], env)
        assert out.returncode == 0, out.stderr
        assert "1 to download" in out.stdout and "checked with sha256 (hub etag)" in out.stdout
        assert "note: inpaint/big-lama.safetensors has no published sha256" in out.stdout
        assert "100%" in out.stderr, "progress is shown"
        lama = catalogue.presets["lama"].files[0]
        assert lama.path_in(tmp_path).read_bytes() == hub.files[(lama.repo, lama.file)]
        again = _cli(["models", "pull", "lama", "--models", str(tmp_path)], env)
        assert again.returncode == 0 and "1 already there, 0 to download" in again.stdout
        # The annotators are pinned: the stand-in's bytes are not theirs, so they are refused, both digests named.
        pinned = _cli(["models", "pull", "annotators", "--models", str(tmp_path)], env)
        assert pinned.returncode != 0 and "the catalogue pins" in pinned.stderr
        first = catalogue.presets["annotators"].files[0]
        assert (
            first.sha256 in pinned.stderr
            and hashlib.sha256(hub.files[(first.repo, first.file)]).hexdigest() in pinned.stderr
        )
        assert not first.path_in(tmp_path).exists()
    listing = _cli(["models", "--models", str(tmp_path)], {})
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"lama\s+complete", listing.stdout), listing.stdout
    assert "sd15        lacks 19 of 19 files" in listing.stdout
    assert "controlnet/control_v11p_sd15_canny_fp16.safetensors  (sd15 controlnet" in listing.stdout


@pytest.mark.engine  # loads a model or starts a server process
def test_models_pull_offline_says_so_and_where_to_put_each_file(tmp_path):
    out = _cli(["models", "pull", "upscaler", "--models", str(tmp_path)], {"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 3
    assert (
        "offline mode is on (unset HF_HUB_OFFLINE" in out.stderr
        and "https://huggingface.co/lokCX/4x-Ultrasharp/resolve/1856559b50de25116a7c07261177dd128f1f5664/4x-UltraSharp.pth"
        in out.stderr
        and str(tmp_path / "upscale_models" / "4x-UltraSharp.pth") in out.stderr
    )
    bad = _cli(["models", "pull", "nonsense", "--models", str(tmp_path)], {})
    assert bad.returncode == 2 and "not in the catalogue" in bad.stderr


@pytest.mark.engine  # loads a model or starts a server process
def test_models_lists_kind_family_and_size_of_installed_models(tmp_path):
    from tests.factory import make_models_dir

    models = make_models_dir(tmp_path / "models", which=("sd15", "cn-sd15-canny"))
    out = _cli(["models", "--models", str(models)], {})
    assert out.returncode == 0, out.stderr
    rows = [
        line.split()
        for line in out.stdout.splitlines()
        if line.startswith("  checkpoint") or line.startswith("  controlnet")
    ]
    assert rows and all(row[1] == "sd15" for row in rows), out.stdout
    assert all(any(unit in row for unit in ("KB", "MB", "GB")) for row in rows), out.stdout
