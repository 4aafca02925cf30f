"""v-prediction / zero-terminal-SNR SDXL checkpoints (Illustrious / NoobAI v-pred style): recognised from their marker
tensors or metadata and run with v_prediction, betas rescaled to zero terminal SNR and trailing timesteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import factory
from protocol.client import Client
from server.models import vpred
from server.models.registry import ModelRegistry
from test_families import job, pixels


@pytest.fixture(scope="module")
def vpred_models(tmp_path_factory):
    """A models folder with the tiny SDXL single file as it is, with ComfyUI's marker tensors, and with metadata."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("vpred-models")
    plain = factory.checkpoint_file("sdxl")
    config = plain.with_name(plain.stem + ".config")
    state = load_file(str(plain))
    folder = root / "checkpoints"
    folder.mkdir()
    for name, extra, metadata in (
        ("tiny-sdxl", {}, {"format": "pt"}),
        ("tiny-sdxl-markers", {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}, {"format": "pt"}),
        ("tiny-sdxl-meta", {}, {"format": "pt", "modelspec.prediction_type": "v"}),
    ):
        save_file({**state, **extra}, str(folder / f"{name}.safetensors"), metadata=metadata)
        (folder / f"{name}.config").symlink_to(config, target_is_directory=True)
    return root


def test_v_prediction_checkpoints_are_recognised_from_markers_and_metadata(vpred_models):
    listing = {e["name"]: e for e in ModelRegistry([vpred_models]).listing() if e["kind"] == "checkpoint"}
    assert {n: (e["arch"], e.get("prediction")) for n, e in listing.items()} == {
        "tiny-sdxl": ("sdxl", None),
        "tiny-sdxl-markers": ("sdxl", "v_prediction"),
        "tiny-sdxl-meta": ("sdxl", "v_prediction"),
    }


def test_the_scheduler_of_a_v_prediction_model_reaches_zero_terminal_snr():
    from diffusers import EulerDiscreteScheduler

    base = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    assert vpred.scheduler_config(base, None) == base
    s = EulerDiscreteScheduler.from_config(vpred.scheduler_config(base, {"type": "v_prediction", "zero_snr": True}))
    assert s.config.prediction_type == "v_prediction" and s.config.timestep_spacing == "trailing"
    assert float(s.alphas_cumprod[-1]) < 1e-6  # the last step is pure noise
    s.set_timesteps(4)
    assert int(s.timesteps[0]) == 999


def test_a_v_prediction_checkpoint_runs_with_its_scheduler(vpred_models, start_server):
    thread = start_server(model_dirs=[vpred_models])
    with Client(thread.url, client_name="test-vpred") as c:
        runs = {
            name: pixels(c.run(job("generate", name, image=False, width=64, height=64, steps=4), timeout=300))[0]
            for name in ("tiny-sdxl", "tiny-sdxl-markers", "tiny-sdxl-meta")
        }
    (plain_layer, plain), (layer, marked), (_, meta) = runs.values()
    assert "prediction" not in plain_layer.info
    assert layer.info["prediction"] == {
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
        "rescale_betas_zero_snr": True,
        "from": "v_pred tensor",
    }
    assert not np.array_equal(plain, marked) and np.array_equal(marked, meta)
