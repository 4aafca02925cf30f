"""Flux Redux models in the models folder (reference images on Flux, issue 15): recognised from their tensors in the
layouts users download (ComfyUI's style_models/ + clip_vision/ single files, a diffusers FluxPriorReduxPipeline folder),
listed with their kind, and the shipped weightless SigLIP config matches the real tower."""

from __future__ import annotations

import json

import pytest

from server.models import redux
from server.models.registry import ModelRegistry
from tests import factory, redux_factory


@pytest.fixture(scope="module")
def redux_models(tmp_path_factory):
    models = factory.make_models_dir(tmp_path_factory.mktemp("redux") / "models", ("flux", "ipa-sd15-plus"))
    for layout in ("redux-comfy", "redux-diffusers"):
        redux_factory.add_to(models, layout)
    return models


def test_redux_models_are_recognised_in_both_download_layouts(redux_models):
    registry = ModelRegistry([redux_models])
    listing = {(m["kind"], m["name"]): m for m in registry.listing()}
    comfy = listing[("redux", "tiny-flux1-redux")]
    assert comfy["arch"] == "flux" and comfy["reference_types"] == ["content", "style"] and "problem" not in comfy
    folder = listing[("redux", "tiny-flux-redux")]  # the FluxPriorReduxPipeline folder
    assert folder["format"] == "diffusers" and folder["reference_types"] == ["content", "style"]
    assert "problem" not in folder
    assert registry.get("tiny-flux1-redux", "redux").info == {"redux_dim": 24, "txt_dim": 32}
    siglip = listing[("clip_vision", "tiny-sigclip-vision")]
    assert siglip["arch"] == redux.SIGLIP and "problem" not in siglip and "24-wide" in siglip["encoder"]
    clip = listing[("clip_vision", "CLIP-tiny-vit-a")]  # the IP-Adapter's CLIP tower is still a CLIP one
    assert clip["arch"] != redux.SIGLIP
    # a Redux pipeline folder is no checkpoint, and the Redux files are no IP-Adapters
    assert ("checkpoint", "tiny-flux-redux") not in listing and not any(
        k == "ipadapter" and "redux" in n for k, n in listing)


def test_a_redux_pipeline_folder_among_the_checkpoints_is_listed_as_redux(tmp_path):
    models = tmp_path / "models"
    factory._link(redux_factory.redux_models("redux-diffusers") / "style_models" / "tiny-flux-redux",
                  models / "checkpoints" / "tiny-flux-redux")
    registry = ModelRegistry([models])
    assert [e.name for e in registry.entries("redux")] == ["tiny-flux-redux"]
    assert registry.entries("checkpoint") == []


def test_a_siglip_file_without_a_config_of_its_size_is_named(tmp_path):
    vision = tmp_path / "models" / "clip_vision"
    vision.mkdir(parents=True)
    source = redux_factory.redux_models("redux-comfy") / "clip_vision" / "tiny-sigclip-vision.safetensors"
    (vision / "odd-siglip.safetensors").write_bytes(source.read_bytes())
    entry = ModelRegistry([tmp_path / "models"]).find("odd-siglip", "clip_vision")
    assert entry.arch == redux.SIGLIP and "config.json" in entry.problem and "SigLIP 24-wide" in entry.problem


def test_files_that_are_not_redux_models_are_named(tmp_path):
    from server.models.detect import DetectError

    with pytest.raises(DetectError, match="redux_up"):
        redux.redux_info({"foo.weight": (3, 4)})
    with pytest.raises(DetectError, match="do not fit"):
        redux.redux_info({"redux_up.weight": (96, 24), "redux_down.weight": (32, 64)})


def test_shipped_siglip_config_matches_the_real_towers_key_layout():
    """The weightless so400m/14-384 config builds a tower whose tensor names and shapes the registry reads back as the
    standard tower (on the meta device: no weights), and its image processor reads 384 px images."""
    from accelerate import init_empty_weights
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    folder = redux.CONFIGS_DIR / "siglip-so400m-patch14-384"
    with init_empty_weights():
        tower = SiglipVisionModel(SiglipVisionConfig.from_pretrained(str(folder)))
    shapes = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert redux.looks_like_siglip(shapes)
    found = redux.siglip_info(shapes).info
    assert (found["hidden_size"], found["layers"], found["patch_size"], found["image_size"]) == (1152, 27, 14, 384)
    assert redux.standard_siglip_config(found) == folder
    assert sum(v.numel() for v in tower.state_dict().values()) > 400e6  # the real so400m tower (≈ 428 M)
    processor = SiglipImageProcessor.from_pretrained(str(folder))
    assert processor.size == {"height": 384, "width": 384}
    assert json.loads((folder / "config.json").read_text())["model_type"] == "siglip_vision_model"
