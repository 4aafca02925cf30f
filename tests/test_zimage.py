"""Z-Image through the real websocket server, on tiny random-weight models at 64 px, offline: recognition as a
diffusers folder and as the original single file with its Qwen3 text encoder and VAE as ComfyUI lays them out, every
mode, its negative prompt, previews, refusals by name, the published size, its union ControlNet (alibaba-pai's single
file) recognised in each release's layout and steering generate."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import tiny_zimage
from protocol.client import Client, JobFailed
from server.defaults import welcome_defaults
from server.models.registry import ModelRegistry
from test_families import (
    job,
    meta_sizes,
    pixels,
    refused_by_name,
    run_mode,
    single_file_matches_folder,
    upscale_refines_on,
)

MODELS = (
    "zimage",
    "zimage-file",
    "lora-zimage",
    "zimage-controlnet",
    "cn-flux-union",
)  # factory.make_models_dir builds them
PUBLISHED = (6.15e9, 4.02e9)  # Z-Image Turbo's transformer ("6B"), its Qwen3-4B text encoder


def test_zimage_is_recognised_in_every_layout_with_its_parts(models_dir):
    got = {(e["kind"], e["name"]): e for e in ModelRegistry([models_dir]).listing()}
    for name, fmt in (("tiny-z-image", "diffusers"), ("tiny-z-image-file", "safetensors")):
        entry = got[("checkpoint", name)]
        assert (entry["arch"], entry["variant"], entry["format"]) == ("z-image", "z-image", fmt)
        assert "problem" not in entry and not entry.get("edit")
    assert got[("text_encoder", "tiny-z-image-qwen_3")]["arch"] == "qwen3"


def test_turbo_is_told_by_its_name_and_has_its_own_defaults():
    from server.models import identify_dit

    state = tiny_zimage.to_original(_transformer_state())
    shapes = {"model.diffusion_model." + k: tuple(v.shape) for k, v in state.items()}
    found = identify_dit.checkpoint(shapes, "z_image_turbo_bf16.safetensors")
    assert (found.arch, found.info["variant"], found.info["layout"]) == ("z-image", "z-image-turbo", "original")
    lumina_like = {k: v for k, v in shapes.items() if not k.endswith("pad_token")}
    with pytest.raises(Exception, match="not a Flux or SD3 transformer"):
        identify_dit.checkpoint(lumina_like, "lumina2.safetensors")
    assert welcome_defaults()["variants"]["z-image-turbo"] == {"steps": 9, "cfg": 0.0}
    assert welcome_defaults()["families"]["z-image"]["sampler"] == "Euler"


def _transformer_state():
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel.from_pretrained(
        tiny_zimage.folder(), subfolder="transformer", local_files_only=True
    ).state_dict()


def test_the_shipped_config_builds_the_published_size_on_the_meta_device(benchmark_main):
    sizes = meta_sizes(benchmark_main, "z-image-turbo")
    assert abs(sizes["transformer"] * 1e9 - PUBLISHED[0]) / PUBLISHED[0] < 0.01, sizes
    assert abs(sizes["text_encoder"] * 1e9 - PUBLISHED[1]) / PUBLISHED[1] < 0.01, sizes


@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint", "outpaint"])
def test_every_mode_keeps_geometry_and_pixels_outside_the_mask(client, mode):
    layer = run_mode(client, "tiny-z-image", mode)
    assert layer.info["family"] == "z-image" and layer.info["variant"] == "z-image"


def test_the_single_file_layout_gives_the_pixels_of_the_diffusers_folder(client):
    parts = {"text_encoder": "tiny-z-image-qwen_3", "vae": "tiny-z-image-ae"}
    single_file_matches_folder(client, "tiny-z-image", "tiny-z-image-file", parts)


def test_the_negative_prompt_is_read_with_guidance(client):
    plain = pixels(client.run(job("img2img", "tiny-z-image", cfg=4.0), timeout=120))[0][1]
    msg = job("img2img", "tiny-z-image", cfg=4.0)
    msg["negative_prompt"] = "blurry, dark"
    assert not np.array_equal(pixels(client.run(msg, timeout=120))[0][1], plain)


def test_progress_previews_arrive(client):
    msg = job("img2img", "tiny-z-image", steps=3)
    msg["previews"] = True
    events = []
    client.run(msg, on_event=lambda m: m.type == "progress" and events.append(m), timeout=120)
    assert events and all(e.preview is not None for e in events) and (events[-1].step, events[-1].total) == (3, 3)


@pytest.mark.parametrize("what", ["edit", "references", "controls"])
def test_what_zimage_cannot_run_is_refused_by_name(client, what):
    refused_by_name(client, "tiny-z-image", what, "Z-Image")


def test_a_missing_tokenizer_is_named_with_where_to_put_it(tmp_path, start_server):
    built = tiny_zimage.split_files()
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (tmp_path / sub).mkdir()
        for f in (built / sub).iterdir():
            if f.is_dir():
                shutil.copytree(f, tmp_path / sub / f.name)
            else:
                (tmp_path / sub / f.name).symlink_to(f)
    shutil.rmtree(tmp_path / "diffusion_models" / "tiny-z-image-file.config" / "tokenizer")
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-zimage") as c:
        with pytest.raises(JobFailed) as err:
            c.run(job("img2img", "tiny-z-image-file"), timeout=120)
    message = str(err.value)
    assert err.value.code == "model_not_found" and "(Z-Image)" in message and "pull z-image-turbo" in message
    assert str(tmp_path / "tokenizers" / "qwen") in message


def test_upscale_and_refine_runs_its_tiles_on_zimage(client, server):
    upscale_refines_on(client, server, "tiny-z-image")


def test_a_zimage_lora_changes_the_result_and_switches_off(client, models_dir):
    from server.models import identify_dit

    assert ModelRegistry([models_dir]).get("tiny-lora-zimage", "lora").arch == "z-image"
    kohya = {"lora_unet_layers_0_attention_to_q.lora_down.weight": (4, 3840)}
    assert identify_dit.lora_family(kohya) == "z-image"
    assert identify_dit.lora_family({"diffusion_model.layers.3.attention.qkv.lora_A.weight": (4, 3840)}) == "z-image"
    plain = pixels(client.run(job("img2img", "tiny-z-image"), timeout=120))[0][1]
    msg = job("img2img", "tiny-z-image", prompt="a cat <lora:tiny-lora-zimage:1>")
    layer, with_lora = pixels(client.run(msg, timeout=120))[0]
    assert layer.info["loras"] and not np.array_equal(plain, with_lora)
    assert np.array_equal(pixels(client.run(job("img2img", "tiny-z-image"), timeout=120))[0][1], plain)


# The three releases of alibaba-pai's union ControlNet as diffusers builds them, at the tiny width, with the control
# layer places and refiner kind the real configs have on Z-Image Turbo's 30 layers and 2 noise refiners.
RELEASES = {
    "1.0": dict(control_layers_places=list(range(0, 30, 5)), control_in_dim=16, add_control_noise_refiner=None),
    "2.0": dict(control_layers_places=list(range(0, 30, 2)), add_control_noise_refiner="control_layers"),
    "2.1": dict(control_layers_places=list(range(0, 30, 2)), add_control_noise_refiner="control_noise_refiner"),
}
TURBO_LAYERS = {"n_layers": 30, "n_refiner_layers": 2, "n_heads": 2, "n_kv_heads": 2, "norm_eps": 1e-5, "qk_norm": True}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_each_union_controlnet_release_is_read_off_its_tensors(release):
    from server.families import controlnets
    from server.models import identify_dit

    config = dict(RELEASES[release], control_refiner_layers_places=[0, 1], n_refiner_layers=2)
    net = tiny_zimage.controlnet_model(**config)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert identify_dit.looks_like_controlnet(shapes)
    found = identify_dit.controlnet(shapes)
    assert (found.arch, found.info["union"], found.info["hidden"]) == ("z-image", True, 32)
    read = controlnets.config_from_shapes("z-image", found.info, TURBO_LAYERS)
    built = {k: (list(v) if isinstance(v, tuple) else v) for k, v in net.config.items() if not k.startswith("_")}
    assert read == built


def test_a_damaged_union_controlnet_is_named_not_guessed():
    from server.families import controlnets
    from server.models import identify_dit
    from server.models.identify import DetectError

    shapes = {k: tuple(v.shape) for k, v in tiny_zimage.controlnet_model().state_dict().items()}
    for key, shape in (("control_all_x_embedder.2-1.weight", (32, 33)), ("control_all_x_embedder.0-1.weight", (32,))):
        with pytest.raises(DetectError, match="Z-Image ControlNet"):
            identify_dit.controlnet({**shapes, key: shape})
    info = identify_dit.controlnet(shapes).info
    with pytest.raises(ValueError, match="3 layers"):
        controlnets.config_from_shapes("z-image", dict(info, layers=5), dict(TURBO_LAYERS, n_layers=3))


def test_a_zeroed_control_refiner_is_the_2_0_release_that_runs_its_control_layers_instead():
    from server.families import controlnets
    from server.models import identify_dit

    net = tiny_zimage.controlnet_model(**RELEASES["2.1"], control_refiner_layers_places=[0, 1], n_refiner_layers=2)
    state = net.state_dict()
    info = dict(identify_dit.controlnet({k: tuple(v.shape) for k, v in state.items()}).info)
    assert controlnets._zimage_state(info, dict(state)) == state, "2.1: a trained refiner runs"
    state["control_noise_refiner.0.before_proj.weight"] = torch.zeros_like(
        state["control_noise_refiner.0.before_proj.weight"]
    )
    kept = controlnets._zimage_state(info, dict(state))
    assert not any(k.startswith("control_noise_refiner.") for k in kept)
    config = controlnets.config_from_shapes("z-image", info, TURBO_LAYERS)
    assert config["add_control_noise_refiner"] == "control_layers"


def test_the_union_controlnet_file_is_listed_and_steers_generate(client, models_dir):
    from test_families import lines_image, payload, with_control

    entry = ModelRegistry([models_dir]).get("tiny-z-image-controlnet-union", "controlnet")
    assert (entry.arch, entry.info["union"], entry.info["refiner"]) == ("z-image", True, "control")

    def generate(control: bool):
        msg = job("generate", "tiny-z-image", image=False, width=64, height=64)
        if control:
            msg = with_control(msg, "canny")
            msg["controls"][0]["image"] = payload(lines_image(64, 64))
        return pixels(client.run(msg, timeout=120))[0]

    (_, plain), (layer, controlled) = generate(False), generate(True)
    assert layer.info["controlnet"] == {"name": "tiny-z-image-controlnet-union", "type": "canny", "union_mode": None}
    assert np.abs(plain.astype(int) - controlled.astype(int)).max() > 4


@pytest.mark.parametrize(
    "change, words",
    [
        ({"type": "tile", "model": "tiny-z-image-controlnet-union"}, "has no 'tile' mode"),
        ({"type": "tile"}, "no Z-Image ControlNet for control type 'tile'"),
        ({"start": 0.2}, "steer every step"),
        ({"mode": "img2img"}, "not 'img2img'"),
    ],
)
def test_what_the_union_controlnet_cannot_do_is_refused_by_name(client, change, words):
    from test_families import with_control

    from test_families import selection

    mode = change.pop("mode", "generate")
    msg = with_control(job(mode, "tiny-z-image", mask=selection() if mode == "inpaint" else None), "canny")
    msg["controls"][0].update(change)
    with pytest.raises(JobFailed) as err:
        client.run(msg, timeout=120)
    assert words in str(err.value) and err.value.code in ("unsupported", "model_not_found"), str(err.value)


def test_the_union_controlnet_steers_inpaint_inside_the_selection_only(client):
    from test_families import selection, with_control

    def inpaint(strength: float):
        msg = with_control(job("inpaint", "tiny-z-image", mask=selection()), "canny", strength=strength)
        return pixels(client.run(msg, timeout=120))[0]

    (_, idle), (layer, steered) = inpaint(0.0), inpaint(1.0)
    assert layer.info["controlnet"]["name"] == "tiny-z-image-controlnet-union"
    assert layer.info["strength"] == 1.0, "the ControlNet inpaint pipeline repaints the selection fully"
    inside = selection() == 255
    assert np.abs(idle[inside].astype(int) - steered[inside].astype(int)).max() > 4
    assert not steered[:8, :8, 3].any() and not steered[-8:, :16, 3].any(), "nothing outside the selection"


def test_the_first_release_generates_only(tmp_path, start_server):
    from test_families import selection, with_control

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "tiny-z-image").symlink_to(tiny_zimage.folder())
    (tmp_path / "controlnet").mkdir()
    first = tiny_zimage.controlnet_model(control_in_dim=16, add_control_noise_refiner=None)
    state = {k: v.contiguous() for k, v in first.state_dict().items()}
    import factory

    factory._save_file(state, tmp_path / "controlnet" / "tiny-z-image-controlnet-union-1.safetensors")
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-zimage") as c:
        layer = pixels(
            c.run(with_control(job("generate", "tiny-z-image", image=False, width=64, height=64), "canny"), timeout=120)
        )[0][0]
        assert layer.info["controlnet"]["name"] == "tiny-z-image-controlnet-union-1"
        with pytest.raises(JobFailed) as err:
            c.run(with_control(job("inpaint", "tiny-z-image", mask=selection()), "canny"), timeout=120)
    assert err.value.code == "unsupported" and "cannot inpaint" in str(err.value), str(err.value)
