"""Qwen-Image, Qwen-Image-Edit and Edit Plus through the real websocket server, on tiny random-weight models at
64 px, offline: recognition of the layouts users download, every mode, several reference images, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

import factory
from protocol.client import Client, JobFailed
from server.defaults import welcome_defaults
from server.models.registry import ModelRegistry
from test_families import W, H, job, payload, picture, pixels, selection

MODELS = (
    "qwen",
    "qwen-split",
    "qwen-file",
    "qwen-edit",
    "qwen-edit-plus",
    "qwen-lora",
    "lora-flux",
    "qwen-controlnet",
    "qwen-gguf",
)


def reference(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (48, 40, 4), dtype=np.uint8)
    img[..., 3] = 255
    return {"image": payload(img), "type": "content"}


def test_every_layout_is_recognised_with_family_and_variant(models_dir):
    got = {(e["kind"], e["name"]): e for e in ModelRegistry([models_dir]).listing()}
    checkpoints = {
        n: (e["arch"], e.get("variant"), e["format"], e.get("edit", False))
        for (k, n), e in got.items()
        if k not in ("lora", "controlnet")
    }
    assert checkpoints == {
        "tiny-qwen": ("qwen-image", "qwen-image", "diffusers", False),
        "tiny-qwen-split": ("qwen-image", "qwen-image", "safetensors", False),
        "comfy-qwen": ("qwen-image", "qwen-image", "safetensors", False),
        "tiny-qwen-Q8_0": ("qwen-image", "qwen-image", "gguf", False),
        "comfy-qwen_2.5_vl": ("qwen2.5-vl", None, "safetensors", False),
        "tiny-qwen-edit": ("qwen-image-edit", "edit", "diffusers", True),
        "tiny-qwen-edit-plus": ("qwen-image-edit-plus", "edit-2509", "diffusers", True),
        "tiny-qwen_2.5_vl": ("qwen2.5-vl", None, "safetensors", False),
        "tiny-qwen_image_vae": (None, None, "safetensors", False),
    }
    assert not any("problem" in e for e in got.values())
    controlnet = got[("controlnet", "tiny-qwen-controlnet-union")]
    assert (controlnet["arch"], controlnet["union"]) == ("qwen-image", True)
    assert {n: e["arch"] for (k, n), e in got.items() if k == "lora"} == {
        "tiny-lora-qwen": "qwen-image",
        "tiny-lora-flux": "flux",
    }


@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint", "outpaint"])
def test_every_mode_keeps_geometry_and_pixels_outside_the_mask(client, mode):
    image, mask = picture(), selection()
    msg = job(mode, "tiny-qwen", mask=None if mode in ("img2img", "outpaint") else mask)
    msg["previews"] = True
    if mode == "outpaint":
        msg["params"]["extend"] = {"left": 16, "top": 0, "right": 0, "bottom": 8}
    progress = []
    ((layer, rgba),) = pixels(client.run(msg, on_event=lambda m: m.type == "progress" and progress.append(m)))
    assert progress and progress[-1].step == progress[-1].total and progress[-1].preview is not None
    assert layer.info["family"] == "qwen-image"
    if mode == "outpaint":
        assert (layer.x, layer.y, layer.width, layer.height) == (300 - 16, 200, W + 16, H + 8)
        inner = rgba[:H, 16 : 16 + W]
        untouched = inner[..., 3] == 0
        assert untouched.mean() > 0.5 and np.array_equal(inner[untouched][:, :3], image[untouched][:, :3])
        return
    assert (layer.x, layer.y, layer.width, layer.height) == (300, 200, W, H)
    if mode == "img2img":
        assert (rgba[..., 3] == 255).all() and not np.array_equal(rgba[..., :3], image[..., :3])
        return
    outside = rgba[..., 3] == 0
    assert outside.sum() > 0.4 * W * H and np.array_equal(rgba[outside][:, :3], image[outside][:, :3])
    assert not np.array_equal(rgba[mask == 255][:, :3], image[mask == 255][:, :3])


def test_cfg_runs_true_guidance_with_the_negative_prompt(client):
    def run(cfg: float, negative: str = ""):
        msg = job("generate", "tiny-qwen", image=False, width=64, height=64, steps=3, cfg=cfg)
        msg["negative_prompt"] = negative
        return pixels(client.run(msg))[0][1]

    plain, guided, negative = run(1.0), run(4.0), run(4.0, "blurry, low quality")
    assert not np.array_equal(plain, guided) and not np.array_equal(guided, negative)


def test_a_qwen_lora_changes_the_result_and_a_flux_one_is_refused(client):
    plain = pixels(client.run(job("img2img", "tiny-qwen")))[0][1]
    layer, styled = pixels(client.run(job("img2img", "tiny-qwen", prompt="an apple <lora:tiny-lora-qwen:1>")))[0]
    assert layer.info["loras"] == [{"name": "tiny-lora-qwen", "weight": 1.0}]
    assert np.abs(styled.astype(int) - plain.astype(int)).max() > 4
    with pytest.raises(JobFailed) as err:
        client.run(job("img2img", "tiny-qwen", prompt="a cat <lora:tiny-lora-flux>"))
    assert "made for Flux.1" in str(err.value) and "Qwen-Image" in str(err.value)


def test_the_union_controlnet_changes_generate_and_is_refused_in_other_modes(client):
    from test_families import lines_image, with_control

    def generate(control: bool):
        msg = job("generate", "tiny-qwen", image=False, width=64, height=64)
        if control:
            msg = with_control(msg, "canny")
            msg["controls"][0]["image"] = payload(lines_image(64, 64))
        return pixels(client.run(msg))[0]

    (_, plain), (layer, controlled) = generate(False), generate(True)
    assert layer.info["controlnet"] == {"name": "tiny-qwen-controlnet-union", "type": "canny", "union_mode": None}
    assert not np.array_equal(plain, controlled)
    with pytest.raises(JobFailed) as err:
        client.run(with_control(job("img2img", "tiny-qwen"), "depth"))
    assert err.value.code == "unsupported" and "with generate only" in str(err.value)


def test_the_split_layout_gives_the_same_pixels_as_the_diffusers_folder(client):
    a = pixels(client.run(job("img2img", "tiny-qwen")))[0][1]
    layer, b = pixels(client.run(job("img2img", "tiny-qwen-split")))[0]
    assert np.array_equal(a, b)
    assert layer.info["parts"] == {"text_encoder": "tiny-qwen_2.5_vl", "vae": "tiny-qwen_image_vae"}
    # ComfyUI's names: the transformer under model.diffusion_model., the text encoder's model.layers / visual
    layer, c = pixels(client.run(job("img2img", "comfy-qwen")))[0]
    assert np.array_equal(a, c) and layer.info["parts"]["text_encoder"] == "comfy-qwen_2.5_vl"
    # a Q8_0 GGUF transformer stays quantized and lands close to the full-precision pixels
    q = pixels(client.run(job("img2img", "tiny-qwen-Q8_0")))[0][1]
    assert 0 < np.abs(q.astype(int) - a.astype(int)).max() <= 8


def test_missing_parts_are_named_with_where_to_put_them(tmp_path, start_server):
    import tiny_qwen

    built = tiny_qwen.split_files()
    (tmp_path / "diffusion_models").mkdir()
    for f in (built / "diffusion_models").iterdir():
        (tmp_path / "diffusion_models" / f.name).symlink_to(f)
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-qwen") as c:
        with pytest.raises(JobFailed) as err:
            c.run(job("img2img", "tiny-qwen-split"), timeout=120)
    assert err.value.code == "model_not_found"
    assert "Qwen2.5-VL text encoder (16 wide)" in str(err.value) and "qwen_image_vae" in str(err.value)


@pytest.mark.parametrize("model", ["tiny-qwen-edit", "tiny-qwen-edit-plus"])
def test_edit_changes_the_selection_only(client, model):
    mask = selection()
    ((layer, rgba),) = pixels(client.run(job("edit", model, mask=mask, prompt="make it blue")))
    outside = rgba[..., 3] == 0
    assert np.array_equal(rgba[outside][:, :3], picture()[outside][:, :3])
    assert not np.array_equal(rgba[mask == 255][:, :3], picture()[mask == 255][:, :3])
    assert layer.info["family"] == model[5:].replace("qwen", "qwen-image")


def test_edit_plus_reads_two_reference_images_in_order(client):
    def run(*seeds):
        msg = job("edit", "tiny-qwen-edit-plus", prompt="put the cat of the second picture in the first")
        msg["references"] = [reference(s) for s in seeds]
        return pixels(client.run(msg))[0]

    (_, alone), (layer, two), (_, swapped) = run(), run(1, 2), run(2, 1)
    assert not np.array_equal(alone, two) and not np.array_equal(two, swapped)
    assert np.array_equal(two, run(1, 2)[1])
    assert layer.info["references"] == [{"type": "content", "picture": 2}, {"type": "content", "picture": 3}]


@pytest.mark.parametrize(
    "model, mode, refs, field",
    [
        ("tiny-qwen", "img2img", [reference(1)], "references"),
        ("tiny-qwen-edit", "edit", [reference(1)], "references"),
        ("tiny-qwen-edit-plus", "img2img", [reference(1)], "references"),
        ("tiny-qwen-edit-plus", "edit", [reference(i) for i in range(3)], "references"),
        ("tiny-qwen-edit-plus", "edit", [dict(reference(1), type="style")], "references[0]"),
    ],
)
def test_references_are_refused_by_name_where_the_model_cannot_read_them(client, model, mode, refs, field):
    msg = job(mode, model)
    msg["references"] = refs
    with pytest.raises(JobFailed) as err:
        client.run(msg)
    assert err.value.code == "unsupported" and err.value.field == field


def test_edit_on_the_base_model_and_tileable_are_refused_by_name(client):
    with pytest.raises(JobFailed) as err:
        client.run(job("edit", "tiny-qwen", prompt="make it blue"))
    assert err.value.code == "unsupported" and "Qwen-Image-Edit" in str(err.value)
    with pytest.raises(JobFailed) as err:
        client.run(job("img2img", "tiny-qwen", tileable=True))
    assert err.value.field == "params.tileable"


def test_welcome_defaults_have_the_qwen_families():
    families = welcome_defaults()["families"]
    assert families["qwen-image"]["cfg"] == 4.0 and families["qwen-image"]["resolution"] == 1024
    assert {"qwen-image-edit", "qwen-image-edit-plus"} <= set(families)


def test_factory_builds_the_tiny_models_offline():
    assert (factory.tiny_root() / "diffusers-qwen-v2" / ".complete").exists()


PUBLISHED = {"transformer": 20.43e9, "vae": 126.9e6, "text_encoder": 8.29e9}  # Qwen-Image 20B, its VAE, Qwen2.5-VL 7B


@pytest.mark.parametrize("config", ["qwen-image", "qwen-image-edit", "qwen-image-edit-plus", "qwen-image-edit-2511"])
def test_shipped_configs_build_the_published_sizes_on_the_meta_device(config):
    import json

    import diffusers
    import transformers
    from accelerate import init_empty_weights

    from server.models import configcheck
    from server.models.loading import CONFIGS_DIR

    folder = CONFIGS_DIR / config
    configcheck.check_folder(folder)
    sizes = {}
    for sub in ("transformer", "vae"):
        raw = json.loads((folder / sub / "config.json").read_text())
        with init_empty_weights():
            sizes[sub] = sum(
                t.numel() for t in getattr(diffusers, raw["_class_name"]).from_config(raw).state_dict().values()
            )
    cfg = transformers.Qwen2_5_VLConfig.from_json_file(str(folder / "text_encoder" / "config.json"))
    with init_empty_weights():
        sizes["text_encoder"] = sum(
            p.numel() for p in transformers.Qwen2_5_VLForConditionalGeneration(cfg).parameters()
        )
    assert all(abs(sizes[k] - PUBLISHED[k]) / PUBLISHED[k] < 0.01 for k in PUBLISHED), sizes
    index = json.loads((folder / "model_index.json").read_text())
    assert ("processor" in index) == (config != "qwen-image")


def test_welcome_says_edit_plus_takes_content_references(client):
    caps = client.welcome.capabilities
    assert "qwen-image-edit-plus" in caps["references"]
    assert caps["reference_types_by_family"]["qwen-image-edit-plus"] == ["content"]
