"""Flux.2 Klein through the real websocket server, on tiny random-weight models at 64 px, offline: recognition in the
layouts painters have (diffusers folder; Black Forest Labs' single file with its Qwen3 text encoder and Flux.2 VAE as
ComfyUI lays them out), every mode, edit with several reference images, LoRAs, previews, cancel, refusals by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tiny_klein
from protocol.client import Client, JobFailed
from server.defaults import welcome_defaults
from server.models.registry import ModelRegistry
from test_families import (
    H,
    W,
    cancel_stops_the_job,
    job,
    picture,
    pixels,
    run_mode,
    selection,
    single_file_matches_folder,
    upscale_refines_on,
)

MODELS = ("klein", "klein-file", "klein-gguf", "lora-klein", "cn-flux-union")  # factory.make_models_dir builds them
PUBLISHED = {"flux2-klein-4b": (3.88e9, 4.02e9), "flux2-klein-9b": (9.08e9, 8.19e9)}  # transformer, Qwen3 encoder


def reference(seed: int, w: int = 72, h: int = 64) -> dict:
    rng = np.random.default_rng(seed)
    img = np.concatenate([rng.integers(0, 255, (h, w, 3), dtype=np.uint8), np.full((h, w, 1), 255, np.uint8)], -1)
    return {"image": {"width": w, "height": h, "format": "rgba8", "data": img.tobytes()}}


# --- recognition -----------------------------------------------------------------------------------------------------


def test_klein_is_recognised_in_every_layout_with_its_parts(models_dir):
    got = {(e["kind"], e["name"]): e for e in ModelRegistry([models_dir]).listing()}
    for name, fmt in (("tiny-klein", "diffusers"), ("tiny-klein-file", "safetensors")):
        entry = got[("checkpoint", name)]
        assert (entry["arch"], entry["variant"], entry["format"], entry.get("edit")) == (
            "flux2-klein",
            "klein-4b",
            fmt,
            True,
        )
        assert "problem" not in entry
    assert got[("text_encoder", "tiny-klein-qwen_3")]["arch"] == "qwen3"
    assert got[("lora", "tiny-lora-klein")]["arch"] == "flux2-klein"
    assert "problem" not in got[("vae", "tiny-flux2-vae")]


def test_a_base_release_and_flux2_dev_are_told_apart_from_klein(tmp_path):
    from server.models import identify_dit

    bfl = {k: tuple(v.shape) for k, v in tiny_klein.to_bfl(_transformer_state()).items()}
    base = identify_dit.checkpoint(bfl, "flux-2-klein-base-4b.safetensors")
    assert (base.arch, base.info["variant"], base.info["distilled"]) == ("flux2-klein", "klein-4b-base", False)
    nine = dict(bfl, **{"img_in.weight": (4096, 128)})
    assert identify_dit.checkpoint(nine, "flux-2-klein-9b.safetensors").info["variant"] == "klein-9b"
    dev = identify_dit.checkpoint(dict(bfl, **{"img_in.weight": (6144, 128)}), "flux2-dev.safetensors")
    assert "Flux.2 dev is 6144" in dev.info["unsupported"]
    assert welcome_defaults()["variants"]["klein-4b-base"] == {"steps": 50, "cfg": 4.0}
    assert welcome_defaults()["families"]["flux2-klein"]["steps"] == 4


def _transformer_state():
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel.from_pretrained(
        tiny_klein.folder(), subfolder="transformer", local_files_only=True
    ).state_dict()


@pytest.mark.parametrize("config", sorted(PUBLISHED))
def test_shipped_configs_build_the_published_sizes_on_the_meta_device(config):
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    from server.models.loading import CONFIGS_DIR

    folder = CONFIGS_DIR / config
    raw = json.loads((folder / "transformer" / "config.json").read_text())
    with init_empty_weights(include_buffers=True):
        model = getattr(diffusers, raw["_class_name"]).from_config(raw)
        cls = transformers.Qwen3ForCausalLM
        encoder = cls(cls.config_class.from_json_file(str(folder / "text_encoder" / "config.json")))
    encoder.tie_weights()
    transformer_size, encoder_size = PUBLISHED[config]
    assert abs(sum(p.numel() for p in model.parameters()) - transformer_size) / transformer_size < 0.01
    assert abs(sum(p.numel() for p in encoder.parameters()) - encoder_size) / encoder_size < 0.01
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "Flux2KleinPipeline"


# --- modes through the server ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint", "outpaint"])
def test_every_mode_keeps_geometry_and_pixels_outside_the_mask(client, mode):
    layer = run_mode(client, "tiny-klein", mode)
    assert layer.info["family"] == "flux2-klein" and layer.info["variant"] == "klein-4b"


def test_the_single_file_layout_gives_the_pixels_of_the_diffusers_folder(client):
    parts = {"text_encoder": "tiny-klein-qwen_3", "vae": "tiny-flux2-vae"}
    # same weights, parts and prompt embeddings; the pipelines' outputs differ by ~3e-6 (float reductions over
    # differently allocated tensors), which the inpaint planner's pre-fill and seam colour matching can turn into 2 levels
    single_file_matches_folder(client, "tiny-klein", "tiny-klein-file", parts, levels=2)


def test_edit_with_two_reference_images_uses_each_of_them(client):
    mask = selection()

    def edit(*refs):
        msg = job("edit", "tiny-klein", mask=mask, prompt="put the two objects on the table")
        msg["references"] = list(refs)
        return pixels(client.run(msg, timeout=120))[0]

    layer, two = edit(reference(1), reference(2, 48, 80))
    _, swapped = edit(reference(1), reference(3, 48, 80))
    _, none = edit()
    assert (layer.x, layer.y, layer.width, layer.height) == (300, 200, W, H)
    assert layer.info["references"] == [{"type": "content", "seen_as": "picture"}] * 2
    outside = two[..., 3] == 0
    assert outside.sum() > 0.4 * W * H and np.array_equal(two[outside][:, :3], picture()[outside][:, :3])
    inside = mask == 255
    assert not np.array_equal(two[inside], none[inside]) and not np.array_equal(two[inside], swapped[inside])


def test_generate_takes_references_and_inpaint_one(client):
    plain = pixels(client.run(job("generate", "tiny-klein", image=False, width=W, height=H), timeout=120))[0][1]
    msg = job("generate", "tiny-klein", image=False, width=W, height=H)
    msg["references"] = [reference(1), reference(2)]
    assert not np.array_equal(pixels(client.run(msg, timeout=120))[0][1], plain)
    msg = job("inpaint", "tiny-klein", mask=selection())
    msg["references"] = [reference(1), reference(2)]
    with pytest.raises(JobFailed) as err:
        client.run(msg, timeout=120)
    assert err.value.code == "unsupported" and "at most 1 reference image in inpaint" in str(err.value)
    msg["references"] = [reference(1)]
    plain = pixels(client.run(job("inpaint", "tiny-klein", mask=selection()), timeout=120))[0][1]
    assert not np.array_equal(pixels(client.run(msg, timeout=120))[0][1], plain)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"strength": 0.5}, "references[0].strength"),
        ({"start": 0.2}, "references[0].start"),
        ({"type": "style"}, "references[0].type"),
        ({"mask": {"width": W, "height": H, "format": "gray8", "data": bytes(W * H)}}, "references[0].mask"),
    ],
)
def test_references_klein_cannot_honour_are_refused_by_name(client, change, field):
    msg = job("edit", "tiny-klein")
    msg["references"] = [dict(reference(1), **change)]
    with pytest.raises(JobFailed) as err:
        client.run(msg, timeout=120)
    assert err.value.code == "unsupported" and err.value.field == field


def test_an_elongated_picture_is_refused_before_any_work(client):
    msg = job("edit", "tiny-klein")
    msg["references"] = [reference(1, 600, 40)]
    with pytest.raises(JobFailed) as err:
        client.run(msg, timeout=120)
    assert err.value.field == "references[0].image" and "8:1" in str(err.value)


def test_a_flux1_controlnet_on_klein_is_refused_by_name(client):
    msg = job("img2img", "tiny-klein")
    msg["controls"] = [{"type": "canny", "model": "tiny-cn-flux-union", "image": msg["image"]}]
    with pytest.raises(JobFailed) as err:
        client.run(msg, timeout=120)
    assert err.value.code == "unsupported" and "Klein" in str(err.value)


def test_a_klein_lora_changes_the_result_and_switches_off(client):
    plain = pixels(client.run(job("img2img", "tiny-klein"), timeout=120))[0][1]
    layer, with_lora = pixels(
        client.run(job("img2img", "tiny-klein", prompt="a cat <lora:tiny-lora-klein:1>"), timeout=120)
    )[0]
    assert layer.info["loras"] and not np.array_equal(plain, with_lora)
    assert np.array_equal(pixels(client.run(job("img2img", "tiny-klein"), timeout=120))[0][1], plain)


def test_progress_previews_arrive_and_cancel_stops_the_job(client):
    msg = job("img2img", "tiny-klein", steps=3)
    msg["previews"] = True
    events = []
    client.run(msg, on_event=lambda m: m.type == "progress" and events.append(m), timeout=120)
    assert events and all(e.preview is not None for e in events) and (events[-1].step, events[-1].total) == (3, 3)
    assert max(events[-1].preview.width, events[-1].preview.height) <= 128
    cancel_stops_the_job(client, "tiny-klein")


def test_missing_parts_are_named_with_where_to_put_them(tmp_path, start_server):
    built = tiny_klein.split_files()
    (tmp_path / "diffusion_models").mkdir()
    (tmp_path / "diffusion_models" / "tiny-klein-file.safetensors").symlink_to(
        built / "diffusion_models" / "tiny-klein-file.safetensors"
    )
    config = tmp_path / "diffusion_models" / "tiny-klein-file.config"
    shutil.copytree(built / "diffusion_models" / "tiny-klein-file.config", config)
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-klein") as c:
        with pytest.raises(JobFailed) as err:
            c.run(job("img2img", "tiny-klein-file"), timeout=120)
        message = str(err.value)
        assert err.value.code == "model_not_found" and "Qwen3 text encoder (16 wide)" in message
        assert "VAE (32 latent channels, e.g. flux2-vae.safetensors)" in message
    for sub in ("text_encoders", "vae"):
        (tmp_path / sub).mkdir()
        for f in (built / sub).iterdir():
            (tmp_path / sub / f.name).symlink_to(f)
    shutil.rmtree(config / "tokenizer")
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-klein") as c:
        with pytest.raises(JobFailed) as err:
            c.run(job("img2img", "tiny-klein-file"), timeout=120)
        assert err.value.code == "model_not_found" and str(tmp_path / "tokenizers" / "qwen") in str(err.value)
        shutil.copytree(
            built / "diffusion_models" / "tiny-klein-file.config" / "tokenizer", tmp_path / "tokenizers" / "qwen"
        )
        assert pixels(c.run(job("img2img", "tiny-klein-file"), timeout=120))[0][0].info["family"] == "flux2-klein"


def test_the_router_sends_klein_to_the_family_engine(client, server):
    client.run(job("img2img", "tiny-klein"), timeout=120)
    assert server.server.router.engine("families").loaded.entry.name == "tiny-klein"


def test_the_gpu_benchmark_builds_klein_at_its_published_sizes_on_the_meta_device(benchmark_main):
    said = benchmark_main("gpu_families.py", "--meta", "--families", *sorted(PUBLISHED))
    assert "flux2-klein-4b: text_encoder 4.02 B, transformer 3.88 B" in said, said
    assert "flux2-klein-9b: text_encoder 8.19 B, transformer 9.08 B" in said, said


def test_klein_loras_are_told_from_flux1_ones_in_every_naming():
    from server.models import identify_dit

    def single(width):
        return {"diffusion_model.single_blocks.0.linear2.lora_A.weight": (4, width)}

    assert identify_dit.lora_family(single(15360)) == "flux"
    assert identify_dit.lora_family(single(12288)) == "flux2-klein"
    kohya = {"lora_unet_single_blocks_0_linear2.lora_down.weight": (4, 16384)}
    assert identify_dit.lora_family(kohya) == "flux2-klein"
    diffusers = {"transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj.lora_A.weight": (4, 3072)}
    assert identify_dit.lora_family(diffusers) == "flux2-klein"


def test_upscale_and_refine_runs_its_tiles_on_klein(client, server):
    upscale_refines_on(client, server, "tiny-klein")


def test_welcome_says_klein_takes_content_references(client):
    caps = client.welcome.capabilities
    assert "flux2-klein" in caps["references"] and caps["reference_types_by_family"]["flux2-klein"] == ["content"]


def test_a_gguf_klein_transformer_is_recognised_and_runs_close_to_the_full_precision_one(client, models_dir):
    entry = ModelRegistry([models_dir]).get("tiny-klein-Q8_0", "checkpoint")
    assert (entry.arch, entry.info["variant"], entry.format) == ("flux2-klein", "klein-4b", "gguf")
    full = pixels(client.run(job("img2img", "tiny-klein-file"), timeout=120))[0][1]
    layer, quantized = pixels(client.run(job("img2img", "tiny-klein-Q8_0"), timeout=120))[0]
    assert layer.info["parts"]["vae"] == "tiny-flux2-vae" and layer.info["memory"] == "on the CPU"
    diff = np.abs(quantized.astype(int) - full.astype(int))
    assert diff.mean() < 4 and not np.array_equal(quantized, full), (diff.mean(), diff.max())
