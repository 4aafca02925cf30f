"""Picking the companion model a job needs (an image encoder for an IP-Adapter or Redux, a ControlNet or adapter the
job names): the first installed one that fits, else an error naming the job's model and what is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError
from server.diffusion.references import encoder_for
from server.families.redux import _encoder_for as redux_encoder_for
from server.models.registry import ModelEntry, ModelRegistry


def registry_with(tmp_path: Path, *entries: ModelEntry) -> ModelRegistry:
    registry = ModelRegistry([tmp_path])
    for e in entries:
        registry._entries[(e.kind, e.name)] = e
    return registry


def encoder(name: str, arch: str, **info) -> ModelEntry:
    return ModelEntry(name, "clip_vision", Path("/m/clip_vision") / name, "safetensors", arch, info=info)


def test_an_ip_adapter_without_an_encoder_of_its_width_names_itself_and_what_is_installed(tmp_path):
    adapter = ModelEntry(
        "ipa {plus} {0}", "ipadapter", tmp_path / "a", "safetensors", "sd15", info={"encoder_output": "hidden_states"}
    )
    adapter.info["encoder_dim"] = 1280
    with pytest.raises(ProtocolError) as err:
        encoder_for(adapter, registry_with(tmp_path), "references[0].model")
    assert err.value.code == MODEL_NOT_FOUND and err.value.field == "references[0].model"
    assert "IP-Adapter 'ipa {plus} {0}' needs a ViT-H/14 image encoder" in err.value.message
    assert "(installed: none)" in err.value.message and "clip-vision-vit-h" in err.value.message


def test_redux_takes_the_siglip_tower_of_its_width_named_siglip_first(tmp_path):
    redux = ModelEntry("redux", "redux", tmp_path / "r", "safetensors", "flux", info={"redux_dim": 32})
    towers = (
        encoder("b-tower", "siglip", hidden_size=32),
        encoder("a-narrow", "siglip", hidden_size=16),
        encoder("z-siglip", "siglip", hidden_size=32),
    )
    assert redux_encoder_for(redux, registry_with(tmp_path, *towers), "f").name == "z-siglip"
    with pytest.raises(ProtocolError) as err:
        redux_encoder_for(redux, registry_with(tmp_path, towers[1]), "f")
    assert err.value.code == MODEL_NOT_FOUND and "Redux model 'redux' needs a 32-wide SigLIP" in err.value.message
    assert "SigLIP encoders installed: a-narrow (" in err.value.message


def test_a_named_model_of_another_family_is_refused_naming_both(tmp_path):
    net = ModelEntry("net", "controlnet", tmp_path / "n", "safetensors", "sd15")
    checkpoint = ModelEntry("ckpt", "checkpoint", tmp_path / "c", "safetensors", "sdxl")
    registry = registry_with(tmp_path, net)
    with pytest.raises(ProtocolError) as err:
        registry.get_fitting("net", "controlnet", checkpoint, "ControlNet", "controls[0].model", advice=": pick one")
    assert err.value.code == UNSUPPORTED and err.value.field == "controls[0].model"
    assert err.value.message == "ControlNet 'net' is made for SD1.5 but checkpoint 'ckpt' is SDXL: pick one"
    assert (
        registry.get_fitting("net", "controlnet", ModelEntry("c", "checkpoint", tmp_path, "x", "sd15"), "C", "f") is net
    )


def test_an_adapter_of_another_family_is_refused_before_the_checkpoint_loads(tmp_path):
    """A LoRA, ControlNet or SDXL refiner of another family is refused from the registry's entries alone: the
    checkpoints here are files that do not exist, so a load would fail with another error, and no engine counts one."""
    import numpy as np

    from server.core import Control, Job, JobContext, Params, Region
    from server.diffusion.engine import DiffusionEngine
    from server.families.engine import FamilyEngine

    def entry(name: str, kind: str, arch: str) -> ModelEntry:
        return ModelEntry(name, kind, tmp_path / "absent" / f"{name}.safetensors", "safetensors", arch)

    registry = registry_with(
        tmp_path,
        entry("flux-ckpt", "checkpoint", "flux"),
        entry("sd-ckpt", "checkpoint", "sd15"),
        entry("sd-lora", "lora", "sd15"),
        entry("flux-lora", "lora", "flux"),
        entry("sd-net", "controlnet", "sd15"),
        entry("refiner", "refiner", "sdxl"),
    )
    image = np.zeros((8, 8, 4), np.uint8)
    mask = np.full((8, 8), 255, np.uint8)
    sd_control = Control("canny", image[..., :3], model="sd-net")
    cases = [
        (
            FamilyEngine,
            Job("1", "img2img", "flux-ckpt", "a cat <lora:sd-lora:0.5>", image=image),
            "LoRA 'sd-lora' is made for SD1.5 but checkpoint 'flux-ckpt' is Flux.1",
        ),
        (
            FamilyEngine,
            Job("2", "img2img", "flux-ckpt", "a cat", image=image, controls=[sd_control]),
            "ControlNet 'sd-net' is made for SD1.5 but checkpoint 'flux-ckpt' is Flux.1",
        ),
        (
            DiffusionEngine,
            Job("3", "img2img", "sd-ckpt", "a cat", image=image, regions=[Region("<lora:flux-lora>", mask)]),
            "LoRA 'flux-lora' is made for Flux.1 but checkpoint 'sd-ckpt' is SD1.5",
        ),
        (
            DiffusionEngine,
            Job("4", "img2img", "sd-ckpt", "a cat", image=image, params=Params(refiner="refiner")),
            "the SDXL refiner 'refiner' works only after an SDXL checkpoint; 'sd-ckpt' is SD1.5",
        ),
    ]
    for make, job, named in cases:
        engine = make(registry, device="cpu", dtype="float32")
        with pytest.raises(ProtocolError) as err:
            engine.run(job, JobContext())
        assert err.value.code == UNSUPPORTED and named in err.value.message, err.value.message
        assert engine.loads == 0 and engine.loaded is None
