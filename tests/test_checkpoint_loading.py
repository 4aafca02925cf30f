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


def test_the_first_job_after_start_gives_the_same_pixels_as_the_same_job_run_warm(tmp_path, start_server):
    """The server preloads its default single file at start; the first job (which may wait for that load and
    encodes the picture and prompt anew) and the same job run warm (from the caches) give the same pixels."""
    import time

    import numpy as np

    from protocol.client import Client
    from server.router import DIFFUSERS

    _fp16_copy("sd15", tmp_path / "models")
    server = start_server(model_dirs=[tmp_path / "models"], preload=True, dtype="float32")
    router = server.server.router
    deadline = time.monotonic() + 120
    while (DIFFUSERS not in router._engines or router.diffusion.loads == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert router.diffusion.loads == 1
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
