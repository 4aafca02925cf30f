"""Model registry: architecture detection from tensors, folder layouts, pickle safety, offline single-file loading."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import factory
from protocol.errors import ProtocolError
from server.models import loading
from server.models.registry import ModelRegistry
from server.models.tokenizers import clip_tokenizer

ALL = (
    "sd15",
    "sd15-inpaint",
    "sdxl",
    "sdxl-inpaint",
    "sd15-file",
    "sd15-inpaint-file",
    "sdxl-file",
    "sdxl-inpaint-file",
    "cn-sd15-canny",
    "cn-sd15-depth",
    "cn-sdxl-canny",
    "cn-sdxl-union",
    "lora-sd15",
    "lora-sdxl",
    "emb-sd15",
    "emb-sdxl",
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return factory.make_models_dir(tmp_path_factory.mktemp("models"), ALL)


def by_name(registry: ModelRegistry) -> dict:
    return {(e["kind"], e["name"]): e for e in registry.listing()}


def test_every_kind_is_recognised_from_its_tensors(models):
    got = by_name(ModelRegistry([models]))
    expect = {
        ("checkpoint", "tiny-sd15"): ("sd15", False, "diffusers"),
        ("checkpoint", "tiny-sd15-inpaint"): ("sd15", True, "diffusers"),
        ("checkpoint", "tiny-sdxl"): ("sdxl", False, "diffusers"),
        ("checkpoint", "tiny-sdxl-inpaint"): ("sdxl", True, "diffusers"),
        ("checkpoint", "tiny-sd15-file"): ("sd15", False, "safetensors"),
        ("checkpoint", "tiny-sd15-inpaint-file"): ("sd15", True, "safetensors"),
        ("checkpoint", "tiny-sdxl-file"): ("sdxl", False, "safetensors"),
        ("checkpoint", "tiny-sdxl-inpaint-file"): ("sdxl", True, "safetensors"),
        ("controlnet", "control_tiny_sd15_canny"): ("sd15", False, "safetensors"),
        ("controlnet", "controlnet-depth-tiny-sd15"): ("sd15", False, "diffusers"),
        ("controlnet", "controlnet-canny-tiny-sdxl"): ("sdxl", False, "safetensors"),
        ("controlnet", "controlnet-union-tiny-sdxl"): ("sdxl", False, "diffusers"),
        ("lora", "tiny-lora-sd15"): ("sd15", False, "safetensors"),
        ("lora", "tiny-lora-sdxl"): ("sdxl", False, "safetensors"),
        ("embedding", "sd15/tinystyle"): ("sd15", False, "safetensors"),
        ("embedding", "sdxl/tinystyle"): ("sdxl", False, "safetensors"),
    }
    assert {k: (v["arch"], v["inpaint"], v["format"]) for k, v in got.items()} == expect
    assert got[("controlnet", "control_tiny_sd15_canny")]["control_types"] == ["canny"]
    assert got[("controlnet", "controlnet-union-tiny-sdxl")]["union"] is True
    assert not any("problem" in v for v in got.values())


def test_architecture_comes_from_tensors_not_the_file_name(models, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(factory.checkpoint_file("sdxl"), tmp_path / "checkpoints" / "sd15-inpainting-v1.safetensors")
    entry = ModelRegistry([tmp_path]).get("sd15-inpainting-v1", "checkpoint")
    assert (entry.arch, entry.inpaint) == ("sdxl", False)


def test_automatic1111_layout_and_extra_folders(tmp_path):
    webui = tmp_path / "webui"
    for sub, src in (
        ("models/Stable-diffusion/v1", factory.checkpoint_file("sd15")),
        ("models/Lora", factory.lora_path("sd15")),
        ("models/ControlNet", factory.controlnet_path("cn-sd15-canny")),
        ("embeddings", factory.embedding_path("sd15")),
    ):
        (webui / sub).mkdir(parents=True)
        os.symlink(src, webui / sub / src.name)
    upscalers = webui / "models" / "ESRGAN"
    upscalers.mkdir()
    (upscalers / "4x-Test.pth").write_bytes(b"not inspected here")
    comfy = tmp_path / "comfy"
    factory.make_models_dir(comfy, ("sdxl",))
    registry = ModelRegistry([comfy, webui / "models"])
    names = {(e.kind, e.name) for e in registry.entries()}
    assert names >= {
        ("checkpoint", "v1/tiny-sd15-file"),
        ("lora", "tiny-lora-sd15"),
        ("checkpoint", "tiny-sdxl"),
        ("controlnet", "control_tiny_sd15_canny"),
        ("embedding", "tinystyle"),
        ("upscaler", "4x-Test"),
    }
    # found by its plain file name too, with or without extension
    assert registry.get("tiny-sd15-file.safetensors", "checkpoint").name == "v1/tiny-sd15-file"
    assert registry.default_checkpoint().name == "tiny-sdxl"  # earlier folders first, regular before inpaint


def test_a_link_loop_in_a_models_folder_ends(tmp_path):
    factory.make_models_dir(tmp_path, ("lora-sd15",))
    os.symlink(tmp_path / "loras", tmp_path / "loras" / "again")
    assert [e.name for e in ModelRegistry([tmp_path]).entries("lora")] == ["tiny-lora-sd15"]


def test_equal_names_in_sub_folders_resolve_by_architecture(models):
    registry = ModelRegistry([models])
    assert registry.get("tinystyle", "embedding", "sdxl").name == "sdxl/tinystyle"
    assert registry.get("tinystyle", "embedding", "sd15").name == "sd15/tinystyle"
    assert registry.get("sdxl/tinystyle", "embedding", "sd15").name == "sdxl/tinystyle"  # a full name is exact


def test_unknown_model_names_what_is_installed(models):
    with pytest.raises(ProtocolError) as err:
        ModelRegistry([models]).get("dreamshaper", "checkpoint")
    assert err.value.code == "model_not_found"
    assert "dreamshaper" in err.value.message and "tiny-sd15" in err.value.message
    with pytest.raises(ProtocolError) as err:
        ModelRegistry([models]).get("x", "upscaler")
    assert "none is installed" in err.value.message


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_are_not_read_unless_allowed_and_then_only_weights(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    from safetensors.torch import load_file

    torch.save(load_file(str(factory.checkpoint_file("sd15"))), ckpts / "legacy.ckpt")
    bad = _Exploit()
    bad.marker = str(tmp_path / "pwned")
    with open(ckpts / "evil.ckpt", "wb") as fh:
        pickle.dump({"state_dict": bad}, fh)

    closed = ModelRegistry([tmp_path])
    assert [e.name for e in closed.entries("checkpoint")] == []
    with pytest.raises(ProtocolError) as err:
        closed.get("legacy", "checkpoint")
    assert err.value.code == "unsupported" and "--allow-pickle" in err.value.message

    opened = ModelRegistry([tmp_path], allow_pickle=True)
    legacy = opened.get("legacy", "checkpoint")
    assert (legacy.arch, legacy.format) == ("sd15", "pickle")
    shutil.copytree(factory.checkpoint_file("sd15").with_name("tiny-sd15-file.config"), ckpts / "legacy.config")
    pipe = loading.load_checkpoint(opened.get("legacy", "checkpoint"), torch.float32, allow_pickle=True)
    reference = load_file(str(factory.checkpoint_file("sd15")))
    assert torch.equal(pipe.unet.conv_out.weight, reference["model.diffusion_model.out.2.weight"])
    evil = opened.find("evil", "checkpoint")
    assert evil.problem and "weights only" in evil.problem
    assert not (tmp_path / "pwned").exists()


def test_damaged_and_foreign_files_are_listed_with_the_reason(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    from safetensors.torch import save_file

    save_file(
        {"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2)}, str(tmp_path / "checkpoints" / "flux.safetensors")
    )
    (tmp_path / "embeddings").mkdir()
    save_file({"emb_params": torch.zeros(())}, str(tmp_path / "embeddings" / "scalar.safetensors"))
    registry = ModelRegistry([tmp_path])
    assert "cannot be inspected" in registry.find("scalar", "embedding").problem
    for name in ("broken", "flux"):
        assert registry.find(name, "checkpoint").problem
        with pytest.raises(ProtocolError) as err:
            registry.get(name, "checkpoint")
        assert err.value.code == "unsupported" and name in err.value.message
    assert registry.default_checkpoint() is None


@pytest.mark.parametrize("name", ["sd15", "sd15-inpaint", "sdxl", "sdxl-inpaint"])
def test_single_file_loads_offline_and_equals_the_diffusers_folder(models, name):
    registry = ModelRegistry([models])
    single = loading.load_checkpoint(registry.get(f"tiny-{name}-file", "checkpoint"), torch.float32)
    folder = loading.load_checkpoint(registry.get(f"tiny-{name}", "checkpoint"), torch.float32)
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(folder, part, None) is None:
            continue
        a, b = getattr(single, part).state_dict(), getattr(folder, part).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert len(single.tokenizer) == 49408


def test_tensors_that_do_not_fit_the_architecture_fail_clearly(models, tmp_path):
    # The tiny file without its config folder is loaded against the real SD1.5 config: shapes differ.
    (tmp_path / "checkpoints").mkdir()
    os.symlink(factory.checkpoint_file("sd15"), tmp_path / "checkpoints" / "odd.safetensors")
    entry = ModelRegistry([tmp_path]).get("odd", "checkpoint")
    with pytest.raises(ProtocolError) as err:
        loading.load_checkpoint(entry, torch.float32)
    assert err.value.code == "unsupported"
    assert "don't fit" in err.value.message and "SD1.5" in err.value.message and "odd" in err.value.message

    # A file that lost tensors: never a model with meta (NaN-producing) parameters.
    from safetensors.torch import load_file, save_file

    state = load_file(str(factory.checkpoint_file("sd15")))
    for key in [k for k in state if k.startswith("model.diffusion_model.output_blocks.11.")]:
        del state[key]
    save_file(state, str(tmp_path / "checkpoints" / "cut.safetensors"))
    shutil.copytree(
        factory.checkpoint_file("sd15").with_name("tiny-sd15-file.config"), tmp_path / "checkpoints" / "cut.config"
    )
    entry = ModelRegistry([tmp_path]).get("cut", "checkpoint")
    with pytest.raises(ProtocolError) as err:
        loading.load_checkpoint(entry, torch.float32)
    assert err.value.code == "unsupported" and "cut" in err.value.message


@pytest.mark.parametrize(
    "arch, union, overrides, heads",
    [
        ("sdxl", False, {}, [5, 10, 20]),  # "full"
        ("sdxl", False, {"transformer_layers_per_block": [1, 1, 4]}, [5, 10, 20]),  # a slimmer variant
        ("sdxl", True, {"num_control_type": 8}, [5, 10, 20]),  # union "promax"
        ("sd15", False, {}, 8),
    ],
)
def test_controlnet_config_is_read_off_real_size_shapes(arch, union, overrides, heads):
    import inspect

    import diffusers
    from accelerate import init_empty_weights

    from server.models import controlnet_config

    cls = diffusers.ControlNetUnionModel if union else diffusers.ControlNetModel
    allowed = set(inspect.signature(cls.__init__).parameters)
    config = {k: v for k, v in {**controlnet_config._base(arch), **overrides}.items() if k in allowed}
    with init_empty_weights():
        original = cls(**config)
    shapes = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    inferred = controlnet_config.infer(shapes, arch, union)
    with init_empty_weights():
        rebuilt = cls.from_config(inferred)
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    assert inferred["attention_head_dim"] == heads
    if arch == "sdxl":
        assert inferred["transformer_layers_per_block"] == config["transformer_layers_per_block"]
    if union:  # the modes it serves follow from the modes it was trained on: promax adds tile and inpaint
        from server.diffusion.controls import union_types
        from server.models.identify import controlnet_arch
        from server.models.registry import ModelEntry

        info = controlnet_arch(shapes).info
        served = union_types(ModelEntry("u", "controlnet", Path("u"), "safetensors", arch, info=info))
        assert info["num_control_type"] == 8 and {"tile", "inpaint", "pose"} <= set(served)
        first = ModelEntry("u", "controlnet", Path("u"), "safetensors", arch, info={**info, "num_control_type": 6})
        assert not {"tile", "inpaint"} & set(union_types(first))


# Parameter counts of the published models (UNet, VAE, CLIP-L text, OpenCLIP-bigG text with projection).
PUBLISHED = {
    "sd15": (859_520_964, 83_653_863, 123_060_480, None),
    "sd15-inpaint": (859_535_364, 83_653_863, 123_060_480, None),
    "sdxl": (2_567_463_684, 83_653_863, 123_060_480, 694_659_840),
    "sdxl-inpaint": (2_567_478_084, 83_653_863, 123_060_480, 694_659_840),
}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_shipped_configs_build_the_real_architectures(arch):
    import json

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = loading.CONFIGS_DIR / arch
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with init_empty_weights():
        got = (
            count(UNet2DConditionModel.from_config(json.loads((folder / "unet" / "config.json").read_text()))),
            count(AutoencoderKL.from_config(json.loads((folder / "vae" / "config.json").read_text()))),
            count(CLIPTextModel(CLIPTextConfig.from_json_file(str(folder / "text_encoder" / "config.json")))),
            count(
                CLIPTextModelWithProjection(
                    CLIPTextConfig.from_json_file(str(folder / "text_encoder_2" / "config.json"))
                )
            )
            if arch.startswith("sdxl")
            else None,
        )
    assert got == PUBLISHED[arch]


def test_the_shipped_tokenizer_is_the_real_clip_one():
    tok = clip_tokenizer()
    assert len(tok) == 49408
    assert tok("a photo of an astronaut riding a horse").input_ids == [
        49406,
        320,
        1125,
        539,
        550,
        18376,
        6765,
        320,
        4558,
        49407,
    ]
    assert clip_tokenizer("!").pad_token_id == 0


@pytest.mark.slow
def test_real_size_sd15_single_file_is_recognised_and_loads_offline(tmp_path):
    path = factory.real_sd15_checkpoint()
    (tmp_path / "checkpoints").mkdir()
    os.symlink(path, tmp_path / "checkpoints" / path.name)
    entry = ModelRegistry([tmp_path]).get(path.stem, "checkpoint")
    assert (entry.arch, entry.inpaint, entry.config_dir) == ("sd15", False, None)
    pipe = loading.load_checkpoint(entry, torch.float16)
    assert sum(p.numel() for p in pipe.unet.parameters()) > 850_000_000
    assert pipe.text_encoder.config.hidden_size == 768 and len(pipe.tokenizer) == 49408
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        want = fh.get_tensor("model.diffusion_model.out.2.weight")
    assert torch.equal(pipe.unet.conv_out.weight, want)
    assert not any(p.is_meta for p in pipe.unet.parameters())
