"""Single-file checkpoints load part by part from tensors read already cast (server/models/tensors.py): the same
weights as diffusers' own whole-file ``from_single_file``, without the file mapped whole beside its cast copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import factory
from server.models import loading, tensors
from server.models.registry import ModelRegistry


def _fp16_copy(name: str, models: Path) -> Path:
    """``factory.checkpoint_file(name)`` stored in fp16 (as most checkpoints ship), with its config folder beside."""
    source = factory.checkpoint_file(name)
    folder = models / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(source)).items()}
    save_file(state, str(target), {"format": "pt"})
    shutil.copytree(source.with_suffix(".config"), target.with_suffix(".config"))
    return target


@pytest.mark.parametrize("name", ["sd15", "sd15-inpaint", "sdxl"])
def test_a_single_file_loads_the_same_weights_as_diffusers_whole_file_load(tmp_path, name):
    path = _fp16_copy(name, tmp_path / "models")
    entry = next(e for e in ModelRegistry([tmp_path / "models"]).entries("checkpoint") if e.path == path)
    ours = loading.load_checkpoint(entry, torch.float32)
    config = loading.config_dir_for(entry)
    plain = loading.pipeline_class(entry).from_single_file(
        str(path),
        config=str(config),
        **loading._tokenizers(config, entry.arch == "sdxl"),
        dtype=torch.float32,
        local_files_only=True,
        **({"safety_checker": None, "requires_safety_checker": False} if entry.arch == "sd15" else {}),
    )
    parts = [p for p in loading.WEIGHT_PARTS if getattr(plain, p, None) is not None]
    assert "unet" in parts and "vae" in parts and "text_encoder" in parts
    for part in parts:
        mine, theirs = getattr(ours, part).state_dict(), getattr(plain, part).state_dict()
        assert mine.keys() == theirs.keys(), part
        for key, value in theirs.items():
            assert mine[key].dtype == torch.float32 and torch.equal(mine[key], value), (part, key)


def test_tensors_are_read_window_by_window_cast_and_named_without_the_prefix(tmp_path, monkeypatch):
    import safetensors

    path = tmp_path / "parts.safetensors"
    save_file(
        {
            "model.a": torch.arange(6, dtype=torch.float16).reshape(2, 3),
            "model.b": torch.ones(4, dtype=torch.bfloat16),
            "model.steps": torch.tensor([3, 4], dtype=torch.int64),
            "other.c": torch.zeros(2),
        },
        str(path),
    )
    opened = []
    real_open = safetensors.safe_open

    def counting_open(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", counting_open)
    out = tensors.read_tensors(path, torch.float32, prefix="model.", window=1)
    assert sorted(out) == ["a", "b", "steps"]
    assert out["a"].dtype == torch.float32 and out["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["b"].dtype == torch.float32 and out["steps"].dtype == torch.int64  # integers are not cast
    assert len(opened) == 1 + 3  # the key list, then one opening per window (here: per tensor)
    opened.clear()
    assert len(tensors.read_tensors(path, torch.float32)) == 4 and len(opened) == 2  # all in one window


def _small_file(path: Path) -> Path:
    save_file(
        {
            "model.conv": torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)).half(),
            "model.steps": torch.tensor([3, 4], dtype=torch.int64),
        },
        str(path),
    )
    return path


def test_a_read_ahead_is_taken_by_the_first_read_of_the_same_file_and_dtype(tmp_path):
    path = _small_file(tmp_path / "a.safetensors")
    ahead = tensors.read_ahead(path, "bfloat16")
    out = tensors.read_tensors(path, torch.bfloat16)
    assert out is ahead.result and not ahead.stopped
    again = tensors.read_tensors(path, torch.bfloat16)  # taken once: the next read reads the file
    assert again is not out and again.keys() == out.keys()
    assert all(torch.equal(again[k], out[k]) and again[k].dtype == out[k].dtype for k in out)
    assert out["model.conv"].dtype == torch.bfloat16 and out["model.steps"].dtype == torch.int64


@pytest.mark.parametrize("other", ["dtype", "prefix", "file rewritten", "other file"])
def test_a_read_ahead_that_does_not_fit_the_read_is_dropped(tmp_path, other):
    path = _small_file(tmp_path / "a.safetensors")
    ahead = tensors.read_ahead(path, "bfloat16")
    ahead.done.wait(60)
    dtype, prefix, read = torch.bfloat16, "", path
    if other == "dtype":
        dtype = torch.float32
    elif other == "prefix":
        prefix = "model."
    elif other == "file rewritten":
        save_file({"model.conv": torch.zeros(4, 3, 3, 3), "x": torch.ones(1)}, str(path))
    else:
        read = _small_file(tmp_path / "b.safetensors")
    out = tensors.read_tensors(read, dtype, prefix)
    assert out is not ahead.result and ahead.stopped
    with safetensors_open(read) as fh:
        names = [k for k in fh.keys() if k.startswith(prefix)]
        assert sorted(out) == sorted(k[len(prefix) :] for k in names)
        for k in names:
            want = fh.get_tensor(k)
            want = want.to(dtype) if want.is_floating_point() else want
            assert torch.equal(out[k[len(prefix) :]], want)
    assert tensors.read_tensors(path, torch.bfloat16) is not ahead.result  # dropped, not kept for later


def test_a_read_ahead_nothing_took_is_stopped_and_dropped(tmp_path):
    path = _small_file(tmp_path / "a.safetensors")
    ahead = tensors.read_ahead(path, "bfloat16")
    tensors.drop_read_ahead()
    assert ahead.stopped
    assert tensors.read_tensors(path, torch.bfloat16) is not ahead.result


def safetensors_open(path: Path):
    from safetensors import safe_open

    return safe_open(str(path), framework="pt", device="cpu")


def test_the_server_reads_its_default_checkpoint_ahead_and_its_first_job_matches_a_warm_one(
    tmp_path, start_server, caplog
):
    """At start the server reads the default single file's tensors while the engine imports (``--dtype`` decides
    the dtype); the load takes them, and the first job gives the same pixels as the same job run warm."""
    import logging
    import time

    import numpy as np

    from protocol.client import Client
    from server.router import DIFFUSERS

    path = _fp16_copy("sd15", tmp_path / "models")
    caplog.set_level(logging.INFO, logger="server.models.tensors")
    server = start_server(model_dirs=[tmp_path / "models"], preload=True, dtype="float32")
    router = server.server.router
    deadline = time.monotonic() + 120
    while (DIFFUSERS not in router._engines or router.diffusion.loads == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert router.diffusion.loads == 1
    assert f"took the tensors of {path.name} read ahead" in caplog.text
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    image[..., 3] = 255
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    job = {
        "mode": "inpaint",
        "prompt": "a red fox",
        "image": {"width": 64, "height": 64, "format": "rgba8", "data": image.tobytes()},
        "mask": {"width": 64, "height": 64, "format": "gray8", "data": mask.tobytes()},
        "params": {"steps": 2, "strength": 1.0, "seed": 7, "sampler": "Euler"},
    }
    with Client(server.url, "test") as client:
        first, warm = client.run(job, timeout=300), client.run(job, timeout=300)
    assert router.diffusion.loads == 1
    assert first.layers[0].data == warm.layers[0].data
