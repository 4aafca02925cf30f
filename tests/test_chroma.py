"""Chroma through the real websocket server, on tiny random-weight models at 64 px, offline: recognition as a diffusers
folder and as the original single file with its T5 text encoder and VAE as ComfyUI lays them out, every mode, real CFG
with the negative prompt, LoRAs, previews, cancel, refusals by name, missing parts named, the published size."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tiny_chroma
from protocol.client import Client, JobFailed
from server.defaults import welcome_defaults
from server.models.identify import DetectError
from server.models.registry import ModelRegistry
from test_families import (
    cancel_stops_the_job,
    job,
    meta_sizes,
    pixels,
    refused_by_name,
    run_mode,
    selection,
    single_file_matches_folder,
    upscale_refines_on,
)

MODELS = (
    "chroma",
    "chroma-file",
    "chroma-full",
    "chroma-gguf",
    "lora-chroma",
    "cn-flux-union",
)  # factory.make_models_dir builds them
PUBLISHED = 8.9e9  # Chroma1-HD's transformer ("8.9B")


def _transformer_state():
    from diffusers import ChromaTransformer2DModel

    return ChromaTransformer2DModel.from_pretrained(
        tiny_chroma.folder(), subfolder="transformer", local_files_only=True
    ).state_dict()


# --- recognition -----------------------------------------------------------------------------------------------------


def test_chroma_is_recognised_in_every_layout_with_its_parts(models_dir):
    got = {(e["kind"], e["name"]): e for e in ModelRegistry([models_dir]).listing()}
    for name, fmt in (
        ("tiny-chroma", "diffusers"),
        ("tiny-chroma-file", "safetensors"),
        ("tiny-chroma-full", "safetensors"),
    ):
        entry = got[("checkpoint", name)]
        assert (entry["arch"], entry["variant"], entry["format"]) == ("chroma", "chroma", fmt)
        assert "problem" not in entry and not entry.get("edit")
    assert got[("text_encoder", "tiny-chroma-t5xxl")]["arch"] == "t5"
    assert got[("lora", "tiny-lora-chroma")]["arch"] == "flux"  # Flux.1 LoRA names: they fit Chroma's blocks


def test_the_approximator_tells_chroma_from_flux_schnell_in_every_naming():
    from server.models import identify_dit

    original = {k: tuple(v.shape) for k, v in tiny_chroma.to_original(_transformer_state()).items()}
    comfy = {"model.diffusion_model." + k: v for k, v in original.items()}
    diffusers = {k: tuple(v.shape) for k, v in _transformer_state().items()}
    for shapes, layout in ((original, "original"), (comfy, "original"), (diffusers, "diffusers")):
        found = identify_dit.checkpoint(shapes, "Chroma1-HD.safetensors")
        assert (found.arch, found.info["variant"], found.info["layout"]) == ("chroma", "chroma", layout)
        assert "unsupported" not in found.info
    schnell = {k: v for k, v in original.items() if not k.startswith("distilled_guidance_layer.")}
    assert identify_dit.checkpoint(schnell, "flux1-schnell.safetensors").arch == "flux"
    odd = dict(original, **{"img_in.weight": (32, 48)})
    assert "48 input channels" in identify_dit.checkpoint(odd, "chroma-odd.safetensors").info["unsupported"]
    radiance = {k: v for k, v in original.items() if k != "img_in.weight"}
    radiance.update({"img_in_patch.weight": (32, 3, 16, 16), "nerf_image_embedder.embedder.0.weight": (32, 67)})
    assert "without a VAE" in identify_dit.checkpoint(radiance, "Chroma1-Radiance.safetensors").info["unsupported"]
    with pytest.raises(DetectError, match="damaged"):
        identify_dit.checkpoint(dict(original, **{"img_in.weight": (32,)}), "broken.safetensors")


def test_chroma_defaults_are_in_welcome():
    assert welcome_defaults()["families"]["chroma"] == {"steps": 40, "cfg": 3.0, "sampler": "Euler", "resolution": 1024}


def test_the_shipped_config_builds_the_published_size_on_the_meta_device(benchmark_main):
    sizes = meta_sizes(benchmark_main, "chroma1-hd")
    assert abs(sizes["transformer"] * 1e9 - PUBLISHED) / PUBLISHED < 0.01, sizes
    assert sizes["text_encoder"] == 4.76, sizes  # T5-XXL's encoder


# --- jobs ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint", "outpaint"])
def test_every_mode_keeps_geometry_and_pixels_outside_the_mask(client, mode):
    layer = run_mode(client, "tiny-chroma", mode)
    assert (layer.info["family"], layer.info["variant"], layer.info["sampler"]) == ("chroma", "chroma", "Euler")


def test_the_single_file_layouts_give_the_pixels_of_the_diffusers_folder(client):
    parts = {"text_encoder": "tiny-chroma-t5xxl", "vae": "tiny-chroma-ae"}
    single_file_matches_folder(client, "tiny-chroma", "tiny-chroma-file", parts)
    inside = {"text_encoder": "tiny-chroma-full (t5)", "vae": "tiny-chroma-full (vae)"}
    single_file_matches_folder(client, "tiny-chroma", "tiny-chroma-full", inside)


def test_cfg_is_real_guidance_with_the_negative_prompt(client):
    def run(cfg: float, negative: str = "") -> np.ndarray:
        msg = job("img2img", "tiny-chroma", cfg=cfg)
        msg["negative_prompt"] = negative
        return pixels(client.run(msg, timeout=120))[0][1]

    plain = run(3.0)
    assert not np.array_equal(run(3.0, "blurry, dark"), plain)
    assert np.array_equal(run(1.0, "blurry, dark"), run(1.0))  # cfg 1: one pass, the negative prompt unread
    assert not np.array_equal(run(1.0), plain)


def test_progress_previews_arrive_and_cancel_stops_the_job(client):
    msg = job("img2img", "tiny-chroma", steps=3)
    msg["previews"] = True
    events = []
    client.run(msg, on_event=lambda m: m.type == "progress" and events.append(m), timeout=120)
    assert events and all(e.preview is not None for e in events) and (events[-1].step, events[-1].total) == (3, 3)
    cancel_stops_the_job(client, "tiny-chroma")


@pytest.mark.parametrize("what", ["edit", "references", "controls", "hires"])
def test_what_chroma_cannot_run_is_refused_by_name(client, what):
    refused_by_name(client, "tiny-chroma", what, "Chroma")


def test_missing_parts_are_named_with_where_to_put_them(tmp_path, start_server):
    built = tiny_chroma.split_files()
    (tmp_path / "diffusion_models").mkdir()
    for f in (built / "diffusion_models").iterdir():
        (tmp_path / "diffusion_models" / f.name).symlink_to(f)
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-chroma") as c:
        with pytest.raises(JobFailed) as err:
            c.run(job("img2img", "tiny-chroma-file"), timeout=120)
        message = str(err.value)
        assert err.value.code == "model_not_found" and "(Chroma1)" in message, message
        assert "T5 text encoder (32 wide)" in message and "t5xxl_fp16.safetensors" in message, message
        assert "VAE (16 latent channels, e.g. ae.safetensors)" in message, message
        assert str(tmp_path / "text_encoders") in message and str(tmp_path / "vae") in message, message


def test_a_transformer_config_without_guidance_embeds_still_inpaints(tmp_path, start_server):
    """diffusers' Chroma inpaint pipeline reads ``guidance_embeds``, which a config written by the model class lacks."""
    src = tiny_chroma.folder()
    copy = tmp_path / "checkpoints" / "tiny-chroma-bare"
    copy.mkdir(parents=True)
    for sub in src.iterdir():
        if sub.name != "transformer":
            (copy / sub.name).symlink_to(sub)
    (copy / "transformer").mkdir()
    (copy / "transformer" / "diffusion_pytorch_model.safetensors").symlink_to(
        src / "transformer" / "diffusion_pytorch_model.safetensors"
    )
    config = json.loads((src / "transformer" / "config.json").read_text())
    assert config.pop("guidance_embeds") is False
    (copy / "transformer" / "config.json").write_text(json.dumps(config))
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-chroma") as c:
        layer = pixels(c.run(job("inpaint", "tiny-chroma-bare", mask=selection()), timeout=120))[0][0]
    assert layer.info["family"] == "chroma"


def test_upscale_and_refine_runs_its_tiles_on_chroma(client, server):
    upscale_refines_on(client, server, "tiny-chroma")


def test_a_lora_changes_the_result_and_switches_off(client):
    plain = pixels(client.run(job("img2img", "tiny-chroma"), timeout=120))[0][1]
    msg = job("img2img", "tiny-chroma", prompt="a cat <lora:tiny-lora-chroma:1>")
    layer, with_lora = pixels(client.run(msg, timeout=120))[0]
    assert layer.info["loras"] and not np.array_equal(plain, with_lora)
    assert np.array_equal(pixels(client.run(job("img2img", "tiny-chroma"), timeout=120))[0][1], plain)


def test_welcome_offers_what_chroma_runs(client):
    offered = client.welcome.capabilities["families"]["chroma"]
    assert offered["name"] == "Chroma" and offered["modes"] == ["generate", "img2img", "inpaint", "outpaint"]
    assert offered["control_modes"] == [] and offered["reference_types"] == [] and offered["techniques"] == []


def test_a_gguf_chroma_transformer_is_recognised_and_runs_close_to_the_full_precision_one(client, models_dir):
    entry = ModelRegistry([models_dir]).get("tiny-chroma-Q8_0", "checkpoint")
    assert (entry.arch, entry.info["variant"], entry.info["layout"], entry.format) == (
        "chroma",
        "chroma",
        "original",
        "gguf",
    )
    full = pixels(client.run(job("img2img", "tiny-chroma-file"), timeout=120))[0][1]
    layer, quantized = pixels(client.run(job("img2img", "tiny-chroma-Q8_0"), timeout=120))[0]
    assert layer.info["parts"] == {"text_encoder": "tiny-chroma-t5xxl", "vae": "tiny-chroma-ae"}
    diff = np.abs(quantized.astype(int) - full.astype(int))
    assert diff.mean() < 4 and not np.array_equal(quantized, full), (diff.mean(), diff.max())
