"""Flux.1 (dev, Fill, Kontext) and SD3.5 through the real websocket server, on tiny random-weight models at 64 px,
offline: recognition of every layout users download, every mode, parts found in the models folders, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import factory
from protocol.client import Client, JobFailed
from server.defaults import welcome_defaults
from server.models.registry import ModelRegistry

MODELS = (
    "flux",
    "flux-fill",
    "flux-kontext",
    "sd3",
    "flux-split",
    "sd3-split",
    "flux-full",
    "sd3-full",
    "lora-flux",
    "lora-sd15",
    "sd15",
    "cn-flux-union",
    "cn-flux-canny",
    "cn-sd3-canny",
    "cn-sd15-canny",
    "flux-gguf",
)
W, H = 80, 56


def picture(w: int = W, h: int = H) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    img[..., 2] = rng.integers(0, 255, (h, w))
    img[..., 3] = 255
    return img


def selection(w: int = W, h: int = H) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[16:40, 24:56] = 255
    return mask


def payload(arr: np.ndarray) -> dict:
    return {
        "width": arr.shape[1],
        "height": arr.shape[0],
        "format": "gray8" if arr.ndim == 2 else "rgba8",
        "data": arr.tobytes(),
    }


def job(mode: str, model: str, image=True, mask=None, **params) -> dict:
    msg = {
        "mode": mode,
        "model": model,
        "prompt": params.pop("prompt", "a red apple on a (wooden:1.2) table"),
        "x": 300,
        "y": 200,
        # each model's own path: the automatic inpaint method would run tiny-flux's inpaint on the Fill model
        "params": {"steps": 2, "seed": 42, "grow": 2, "feather": 2, "inpaint_method": "plain", **params},
    }
    if image:
        msg["image"] = payload(picture())
    if mask is not None:
        msg["mask"] = payload(mask)
    return msg


def pixels(result):
    return [
        (layer, np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)) for layer in result.layers
    ]


# --- recognition -----------------------------------------------------------------------------------------------------


def test_every_layout_is_recognised_with_family_and_variant(models_dir):
    got = {(e["kind"], e["name"]): e for e in ModelRegistry([models_dir]).listing()}
    expect = {
        "tiny-flux": ("flux", "dev", "diffusers"),
        "tiny-flux-fill": ("flux-fill", "fill", "diffusers"),
        "tiny-flux-kontext": ("flux-kontext", "kontext", "diffusers"),
        "tiny-sd3": ("sd3", "3.5-medium", "diffusers"),
        "tiny-flux-split": ("flux", "dev", "safetensors"),
        "tiny-sd3-split": ("sd3", "3.5-medium", "safetensors"),
        "tiny-flux-full": ("flux", "dev", "safetensors"),
        "tiny-sd3-full": ("sd3", "3.5-medium", "safetensors"),
    }
    assert {
        n: (got[("checkpoint", n)]["arch"], got[("checkpoint", n)]["variant"], got[("checkpoint", n)]["format"])
        for n in expect
    } == expect
    encoders = {n: e["arch"] for (k, n), e in got.items() if k == "text_encoder"}
    assert encoders == {
        "tiny-flux-clip_l": "clip",
        "tiny-flux-t5xxl": "t5",
        "tiny-sd3-clip_l": "clip",
        "tiny-sd3-clip_g": "clip",
        "tiny-sd3-t5xxl": "t5",
    }
    assert not any("problem" in e for e in got.values())
    assert [n for (k, n), e in got.items() if e.get("edit")] == ["tiny-flux-kontext"]  # the plugins offer edit there


def _header_only_file(path: Path, shapes: dict) -> None:
    """A safetensors file with the telling tensor names and shapes of a real model (zeros; shapes are what counts)."""
    from safetensors.torch import save_file

    save_file({k: torch.zeros(v, dtype=torch.float16) for k, v in shapes.items()}, str(path))


@pytest.mark.parametrize(
    "name, shapes, expect",
    [
        (
            "flux1-dev.safetensors",
            {
                "img_in.weight": (3072, 64),
                "guidance_in.in_layer.weight": (3072, 256),
                "double_blocks.0.img_attn.qkv.weight": (9, 8),
            },
            ("flux", "dev"),
        ),
        (
            "flux1-schnell.safetensors",
            {"img_in.weight": (3072, 64), "double_blocks.0.img_attn.qkv.weight": (9, 8)},
            ("flux", "schnell"),
        ),
        (
            "flux1-fill-dev.safetensors",
            {
                "img_in.weight": (3072, 384),
                "guidance_in.in_layer.weight": (3072, 256),
                "double_blocks.0.img_attn.qkv.weight": (9, 8),
            },
            ("flux-fill", "fill"),
        ),
        (
            "flux1-kontext-dev.safetensors",
            {
                "img_in.weight": (3072, 64),
                "guidance_in.in_layer.weight": (3072, 256),
                "double_blocks.0.img_attn.qkv.weight": (9, 8),
            },
            ("flux-kontext", "kontext"),
        ),
        (
            "sd3_medium.safetensors",
            {
                "model.diffusion_model.context_embedder.weight": (1536, 4096),
                "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (9, 8),
                "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight": (8, 8),
            },
            ("sd3", "3-medium"),
        ),
        (
            "sd3.5_medium.safetensors",
            {
                "model.diffusion_model.context_embedder.weight": (1536, 4096),
                "model.diffusion_model.joint_blocks.0.x_block.attn.ln_q.weight": (64,),
                "model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight": (9, 8),
            },
            ("sd3", "3.5-medium"),
        ),
        (
            "sd3.5_large.safetensors",
            {
                "model.diffusion_model.context_embedder.weight": (2432, 4096),
                "model.diffusion_model.joint_blocks.0.x_block.attn.ln_q.weight": (64,),
            },
            ("sd3", "3.5-large"),
        ),
        (
            "sd3.5_large_turbo.safetensors",
            {
                "model.diffusion_model.context_embedder.weight": (2432, 4096),
                "model.diffusion_model.joint_blocks.0.x_block.attn.ln_q.weight": (64,),
            },
            ("sd3", "3.5-large-turbo"),
        ),
    ],
)
def test_real_layouts_are_recognised_from_tensor_names_and_shapes(tmp_path, name, shapes, expect):
    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    _header_only_file(folder / name, shapes)
    entry = ModelRegistry([tmp_path]).entries("checkpoint")[0]
    assert (entry.arch, entry.info["variant"]) == expect and entry.problem is None
    if name == "sd3_medium.safetensors":
        assert entry.info["encoders"] == {"t5": "text_encoders.t5xxl.transformer."}


def test_a_flux_control_model_is_listed_with_the_reason_it_cannot_run(tmp_path):
    (tmp_path / "unet").mkdir()
    _header_only_file(
        tmp_path / "unet" / "flux1-canny-dev.safetensors",
        {"img_in.weight": (3072, 128), "double_blocks.0.img_attn.qkv.weight": (9, 8)},
    )
    entry = ModelRegistry([tmp_path]).entries("checkpoint")[0]
    assert "128 input channels" in entry.problem


# --- shipped configs -------------------------------------------------------------------------------------------------

# Published sizes: Flux.1 [dev]/[schnell]/Fill 12 B (transformer 11.9 B), SD3 medium 2 B, SD3.5 medium 2.5 B,
# SD3.5 large 8.1 B (stored tensors, position embedding included); CLIP-L text 123 M, OpenCLIP bigG text 695 M.
PUBLISHED = {
    "flux-dev": 11.9e9,
    "flux-schnell": 11.9e9,
    "flux-fill": 11.9e9,
    "flux-kontext": 11.9e9,
    "sd3-medium": 2.0e9,
    "sd35-medium": 2.5e9,
    "sd35-large": 8.1e9,
}


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
    stored = sum(t.numel() for t in model.state_dict().values())
    assert abs(stored - PUBLISHED[config]) / PUBLISHED[config] < 0.05, stored  # published figures are rounded
    for sub, size in (("text_encoder", 123e6), ("text_encoder_2", 695e6)):
        cfg = json.loads((folder / sub / "config.json").read_text())
        if cfg["model_type"] == "t5":
            continue
        cls = getattr(transformers, cfg["architectures"][0])
        with init_empty_weights(include_buffers=True):
            enc = cls(cls.config_class.from_json_file(str(folder / sub / "config.json")))
        assert abs(sum(p.numel() for p in enc.parameters()) - size) / size < 0.03


def test_the_shipped_t5_tokenizer_tokenizes_like_t5():
    from server.families.loading import t5_tokenizer

    tok = t5_tokenizer()
    assert len(tok) == 32100 and tok.eos_token_id == 1 and tok.pad_token_id == 0
    assert tok("A photo of a cat").input_ids == [71, 1202, 13, 3, 9, 1712, 1]


def test_welcome_defaults_have_every_family():
    families = welcome_defaults()["families"]
    assert {"flux", "flux-fill", "flux-kontext", "sd3"} <= set(families)
    assert families["flux"]["sampler"] == "Euler" and families["flux"]["resolution"] == 1024
    assert welcome_defaults()["variants"]["schnell"]["steps"] == 4


# --- modes through the server ----------------------------------------------------------------------------------------


# the modes vary fastest: each model is loaded once for its four modes; Kontext last, still loaded for the edit test
@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint", "outpaint"])
@pytest.mark.parametrize("model", ["tiny-flux", "tiny-flux-fill", "tiny-sd3", "tiny-flux-kontext"])
def test_every_mode_keeps_geometry_and_pixels_outside_the_mask(client, model, mode):
    layer = run_mode(client, model, mode)
    assert layer.info["family"] == model[5:] if model != "tiny-sd3" else layer.info["family"] == "sd3"


def run_mode(client, model: str, mode: str):
    """Run ``mode`` on ``model`` over the test picture and check the rules every family keeps: progress to the last
    step, the layer's place and size, pixels outside the mask (and the extension) kept; returns the layer."""
    image, mask = picture(), selection()
    msg = job(mode, model, mask=None if mode in ("img2img", "outpaint") else mask)
    if mode == "outpaint":
        msg["params"]["extend"] = {"left": 16, "top": 0, "right": 0, "bottom": 8}
    progress = []
    result = client.run(msg, on_event=lambda m: m.type == "progress" and progress.append(m), timeout=120)
    ((layer, rgba),) = pixels(result)
    assert progress and progress[-1].step == progress[-1].total
    if mode == "outpaint":
        assert (layer.x, layer.y, layer.width, layer.height) == (300 - 16, 200, W + 16, H + 8)
        inner = rgba[:H, 16 : 16 + W]
        untouched = inner[..., 3] == 0
        assert untouched.mean() > 0.5 and np.array_equal(inner[untouched][:, :3], image[untouched][:, :3])
    else:
        assert (layer.x, layer.y, layer.width, layer.height) == (300, 200, W, H)
    if mode in ("generate", "inpaint"):
        outside = rgba[..., 3] == 0
        assert outside.sum() > 0.4 * W * H
        assert np.array_equal(rgba[outside][:, :3], image[outside][:, :3])
        assert not np.array_equal(rgba[mask == 255][:, :3], image[mask == 255][:, :3])
    if mode == "img2img":
        assert (rgba[..., 3] == 255).all() and not np.array_equal(rgba[..., :3], image[..., :3])
    return layer


def single_file_matches_folder(client, folder: str, single: str, parts: dict, levels: int = 1) -> None:
    """An inpaint on the single-file layout ``single`` (its parts as named in ``parts``) gives the pixels of the
    diffusers folder ``folder`` within ``levels``."""
    a = pixels(client.run(job("inpaint", folder, mask=selection()), timeout=120))[0][1]
    layer, b = pixels(client.run(job("inpaint", single, mask=selection()), timeout=120))[0]
    assert layer.info["parts"] == parts
    assert np.abs(a.astype(int) - b.astype(int)).max() <= levels


REFUSED_FIELDS = {"edit": "mode", "references": "references", "controls": "controls", "hires": "params.hires"}


def refused_by_name(client, model: str, what: str, name: str) -> None:
    """An img2img job on ``model`` turned into ``what`` (a key of ``REFUSED_FIELDS``: instruction edit, a reference
    image, a Flux union ControlNet, the hires fix) is refused as ``unsupported`` naming ``name``, on its field."""
    msg = job("img2img", model)
    if what == "edit":
        msg["mode"] = "edit"
    elif what == "references":
        msg["references"] = [{"image": msg["image"]}]
    elif what == "controls":
        msg["controls"] = [{"type": "canny", "model": "tiny-cn-flux-union", "image": msg["image"]}]
    else:
        msg["params"]["hires"] = {"enabled": True}
    with pytest.raises(JobFailed) as err:
        client.run(msg, timeout=120)
    assert err.value.code == "unsupported" and name in str(err.value), str(err.value)
    assert (err.value.field or "").startswith(REFUSED_FIELDS[what]), err.value.field


def upscale_refines_on(client, server, model: str) -> None:
    """Upscale with refine on ``model`` runs its 64-px tiles on the family engine and differs from a plain upscale."""
    msg = job("upscale", model, scale=2.0, refine=0.5, tile=64)
    ((layer, rgba),) = pixels(client.run(msg, timeout=300))
    assert (layer.width, layer.height) == (2 * W, 2 * H)
    assert server.server.router.engine("families").loaded.entry.name == model
    plain = pixels(client.run(job("upscale", "classical", scale=2.0), timeout=120))[0][1]
    assert not np.array_equal(rgba, plain)  # refined, not only scaled


def cancel_stops_the_job(client, model: str) -> None:
    """A long img2img job on ``model`` cancelled at its first progress event ends ``cancelled``, well before its end."""
    job_id = client.submit(job("img2img", model, steps=150, strength=1.0))
    steps, cancelled = [], False
    for msg in client.events(job_id, timeout=300):
        if msg.type == "progress":
            steps.append(msg.step)
            if not cancelled:
                client.cancel(job_id)
                cancelled = True
        last = msg
    assert last.type == "cancelled" and max(steps) < 100


def meta_sizes(benchmark_main, config: str) -> dict:
    """Billions of parameters per part (``{"transformer": 8.9, ...}``) of the shipped ``config`` built on the meta
    device by the GPU benchmark (its ``main``, run by the ``benchmark_main`` fixture)."""
    said = benchmark_main("gpu_families.py", "--meta", "--families", config)
    line = next(x for x in said.splitlines() if x.startswith(f"{config}:"))
    return {name: float(size) for name, size, _ in (p.rsplit(" ", 2) for p in line.split(": ", 1)[1].split(", "))}


def test_edit_on_kontext_changes_the_selection_only(client):
    mask = selection()
    ((layer, rgba),) = pixels(
        client.run(job("edit", "tiny-flux-kontext", mask=mask, prompt="make it blue"), timeout=120)
    )
    outside = rgba[..., 3] == 0
    assert np.array_equal(rgba[outside][:, :3], picture()[outside][:, :3])
    assert not np.array_equal(rgba[mask == 255][:, :3], picture()[mask == 255][:, :3])
    assert layer.name.startswith("edit")


def test_edit_on_another_family_says_it_needs_kontext(client):
    with pytest.raises(JobFailed) as err:
        client.run(job("edit", "tiny-flux", prompt="make it blue"), timeout=120)
    assert err.value.code == "unsupported" and "Kontext" in str(err.value)


@pytest.mark.parametrize("field, value", [("vae", "some-vae"), ("clip_skip", 2), ("refiner", "some-refiner")])
def test_sd_sampling_options_are_refused_by_name(client, field, value):
    with pytest.raises(JobFailed) as err:
        client.run(job("generate", "tiny-flux", image=False, width=64, height=64, **{field: value}), timeout=120)
    assert err.value.code == "unsupported" and err.value.field == f"params.{field}"


def test_batch_count_runs_on_flow_models_too(client):
    result = client.run(
        job("generate", "tiny-flux", image=False, width=64, height=64, batch_count=2, steps=2, scheduler="Karras"),
        timeout=240,
    )
    assert [layer.seed for layer in result.layers] == [42, 43] and "sampler_note" in result.layers[0].info


def test_generate_without_an_image_and_a_seed_reproduces(client):
    a = pixels(client.run(job("generate", "tiny-flux", image=False, width=96, height=48), timeout=120))[0]
    b = pixels(client.run(job("generate", "tiny-flux", image=False, width=96, height=48), timeout=120))[0]
    assert (a[0].width, a[0].height) == (96, 48) and np.array_equal(a[1], b[1])
    assert (a[1][..., 3] == 255).all() and a[1][..., :3].std() > 1


@pytest.fixture(scope="module")
def folder_img2img() -> dict:
    """Name -> the img2img pixels of ``tiny-<name>``'s diffusers folder, run once for both single-file layouts that
    are compared with it (the job is seeded: the same pixels each time)."""
    return {}


@pytest.mark.parametrize("name", ["flux", "sd3"])
@pytest.mark.parametrize("layout", ["split", "full"])
def test_single_files_give_the_same_pixels_as_their_diffusers_folder(client, name, layout, folder_img2img):
    if name not in folder_img2img:
        folder_img2img[name] = pixels(client.run(job("img2img", f"tiny-{name}"), timeout=120))[0][1]
    a = folder_img2img[name]
    result = client.run(job("img2img", f"tiny-{name}-{layout}"), timeout=120)
    layer, b = pixels(result)[0]
    assert np.array_equal(a, b)
    if layout == "split":
        assert layer.info["parts"]["vae"] == f"tiny-{name}-ae"
        assert layer.info["parts"]["text_encoder"] == f"tiny-{name}-clip_l"


def test_missing_text_encoders_are_named_with_where_to_put_them(tmp_path, start_server):
    built = factory.split_files("sd3")
    for sub in ("diffusion_models", "vae"):
        for f in (built / sub).iterdir():
            (tmp_path / sub).mkdir(exist_ok=True)
            (tmp_path / sub / f.name).symlink_to(f)
    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "tiny-sd3-clip_l.safetensors").symlink_to(
        built / "text_encoders" / "tiny-sd3-clip_l.safetensors"
    )
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-families") as c:
        with pytest.raises(JobFailed) as err:
            c.run(job("img2img", "tiny-sd3-split"), timeout=120)
    message = str(err.value)
    assert err.value.code == "model_not_found"
    assert "CLIP text encoder (48 wide)" in message and "T5 text encoder (96 wide)" in message
    assert "CLIP text encoder (32 wide)" not in message and str(tmp_path / "text_encoders") in message


def test_a_flux_lora_changes_the_result_and_switches_off(client, server, models_dir):
    assert {e.name: e.arch for e in ModelRegistry([models_dir]).entries("lora")} == {
        "tiny-lora-flux": "flux",
        "tiny-lora-sd15": "sd15",
    }
    plain = pixels(client.run(job("img2img", "tiny-flux-kontext"), timeout=120))[0][1]
    layer, styled = pixels(
        client.run(
            job("img2img", "tiny-flux-kontext", prompt="a red apple on a (wooden:1.2) table <lora:tiny-lora-flux:1>"),
            timeout=120,
        )
    )[0]
    assert layer.info["loras"] == [{"name": "tiny-lora-flux", "weight": 1.0}]
    assert np.abs(styled.astype(int) - plain.astype(int)).max() > 8
    again = pixels(client.run(job("img2img", "tiny-flux-kontext"), timeout=120))[0][1]
    assert np.abs(again.astype(int) - plain.astype(int)).max() <= 1
    loads = server.server.router.engine("families").loads
    with pytest.raises(JobFailed) as err:
        client.run(job("img2img", "tiny-flux", prompt="a cat <lora:tiny-lora-sd15>"), timeout=120)
    assert "made for SD1.5" in str(err.value) and "Flux.1" in str(err.value)
    assert server.server.router.engine("families").loads == loads, "refused before tiny-flux loads"


def test_the_router_picks_the_engine_by_family_and_frees_the_other(client, server):
    router = server.server.router
    client.run(job("img2img", "tiny-sd15"), timeout=120)
    assert router.engine("diffusers").loaded.entry.name == "tiny-sd15"
    ((layer, _),) = pixels(client.run(job("img2img", "tiny-flux"), timeout=120))
    assert router.engine("families").loaded.entry.name == "tiny-flux" and router.engine("diffusers").loaded is None
    assert layer.info["sampler"] == "Euler"
    measured = router.engine("families").dtype  # the calibration's choice for DiT families: the tiny model fits the RAM
    bf16 = measured in (torch.bfloat16, "bfloat16")  # measured here, or the suite's PAINTBRIDGE_DTYPE
    assert layer.info["memory"] == "on the CPU" and layer.info["dtype"].startswith(
        ("bf16", "bfloat16") if bf16 else ("fp32", "float32")
    )
    client.run(job("img2img", "tiny-sd15"), timeout=120)
    assert router.engine("families").loaded is None


def test_cli_run_with_a_flux_model(models_dir, tmp_path, paintbridge_cli):
    Image.fromarray(picture()).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    proc = paintbridge_cli(
        "run",
        "--models",
        str(models_dir),
        "--model",
        "tiny-flux",
        "img2img",
        "--image",
        str(tmp_path / "in.png"),
        "--steps",
        "2",
        "--seed",
        "3",
        "--prompt",
        "a lighthouse",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (W, H)


def test_gpu_benchmark_runs_in_its_cpu_smoke_mode(benchmark_main):
    said = benchmark_main("gpu_families.py", "--cpu-smoke")
    for line in (
        "tiny-flux: load server",
        "inpaint flux",
        "control flux",
        "tiny-flux-kontext: load server",
        "edit flux-kontext",
        "tiny-sd3: load server",
        "img2img sd3",
        "control sd3",
        "tiny-qwen: load server",
        "inpaint qwen-image",
        "tiny-klein: load server",
        "edit flux2-klein",
        "tiny-chroma: load server",
        "inpaint chroma",
    ):
        assert line in said, said


def test_upscale_and_refine_runs_its_tiles_on_the_flux_engine(client, server):
    msg = job("upscale", "tiny-flux", scale=2.0, refine=0.5, tile=64)
    ((layer, rgba),) = pixels(client.run(msg, timeout=300))
    assert (layer.width, layer.height) == (2 * W, 2 * H)
    assert server.server.router.engine("families").loaded.entry.name == "tiny-flux"
    plain = pixels(client.run(job("upscale", "classical", scale=2.0), timeout=120))[0][1]
    assert not np.array_equal(rgba, plain)  # refined, not only scaled


# --- ControlNets -----------------------------------------------------------------------------------------------------


def lines_image(w: int = W, h: int = H) -> np.ndarray:
    """A control layer: white lines on black (what a canny or line-art layer holds)."""
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 3] = 255
    img[::8, :, :3] = 255
    img[:, 5::11, :3] = 255
    return img


def with_control(msg: dict, type_: str, model: str = "", strength: float = 1.0) -> dict:
    msg["controls"] = [{"type": type_, "image": payload(lines_image()), "strength": strength, "model": model}]
    return msg


def test_family_controlnets_are_recognised_as_users_download_them(models_dir):
    got = {e["name"]: e for e in ModelRegistry([models_dir]).listing() if e["kind"] == "controlnet"}
    assert {n: (e["arch"], e["format"], e["union"]) for n, e in got.items()} == {
        "flux-controlnet-union-tiny": ("flux", "diffusers", True),
        "flux-controlnet-canny-tiny": ("flux", "safetensors", False),
        "sd3-controlnet-canny-tiny": ("sd3", "diffusers", False),
        "control_tiny_sd15_canny": ("sd15", "safetensors", False),
    }
    assert got["flux-controlnet-canny-tiny"]["control_types"] == ["canny"]


def test_an_xlabs_flux_controlnet_is_listed_with_the_reason_it_cannot_run(tmp_path):
    (tmp_path / "controlnet").mkdir()
    _header_only_file(
        tmp_path / "controlnet" / "flux-canny-controlnet-v3.safetensors",
        {"controlnet_blocks.0.weight": (8, 8), "double_blocks.0.img_attn.qkv.weight": (9, 8)},
    )
    entry = ModelRegistry([tmp_path]).entries("controlnet")[0]
    assert entry.arch == "flux" and "XLabs-format" in entry.problem


def test_the_config_of_a_single_controlnet_file_comes_from_its_shapes():
    """A renamed diffusers ControlNet file (no config.json) gets the config it was saved with."""
    from server.families.controlnets import config_from_shapes
    from server.models.identify import safetensors_shapes
    from server.models.identify_dit import controlnet

    for name, family, checkpoint in (("cn-flux-canny", "flux", "flux"), ("cn-sd3-canny", "sd3", "sd3")):
        path = factory.controlnet_path(name)
        if path.is_dir():  # the folder's own config is the answer; its weights file is what users rename
            saved = json.loads((path / "config.json").read_text())
            path = path / "diffusion_pytorch_model.safetensors"
        else:
            saved = dict(factory.build_transformer_controlnet(family).config)
        transformer = json.loads((factory.checkpoint_folder(checkpoint) / "transformer" / "config.json").read_text())
        got = config_from_shapes(family, controlnet(safetensors_shapes(path)).info, transformer)
        assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in got.items()} == {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in saved.items() if k in got
        }, name


@pytest.mark.parametrize("mode", ["generate", "img2img", "inpaint"])
def test_a_flux_union_controlnet_changes_the_result_in_every_mode(client, mode):
    mask = selection() if mode == "inpaint" else None
    plain = pixels(client.run(job(mode, "tiny-flux", mask=mask), timeout=120))[0][1]
    layer, guided = pixels(client.run(with_control(job(mode, "tiny-flux", mask=mask), "depth"), timeout=120))[0]
    assert layer.info["controlnet"] == {"name": "flux-controlnet-union-tiny", "type": "depth", "union_mode": 2}
    assert np.abs(guided.astype(int) - plain.astype(int)).max() > 8
    if mode == "inpaint":  # still composited by the mask
        outside = guided[..., 3] == 0
        assert outside.sum() > 0.4 * W * H and np.array_equal(guided[outside][:, :3], picture()[outside][:, :3])


def test_a_single_file_flux_controlnet_runs_by_name_and_by_type(client):
    plain = pixels(client.run(job("img2img", "tiny-flux"), timeout=120))[0][1]
    layer, guided = pixels(
        client.run(with_control(job("img2img", "tiny-flux"), "canny", model="flux-controlnet-canny-tiny"), timeout=120)
    )[0]
    assert layer.info["controlnet"]["name"] == "flux-controlnet-canny-tiny"
    assert np.abs(guided.astype(int) - plain.astype(int)).max() > 8
    by_type = pixels(client.run(with_control(job("img2img", "tiny-flux"), "canny"), timeout=120))[0]
    assert by_type[0].info["controlnet"]["name"] == "flux-controlnet-canny-tiny"  # a typed one before the union
    assert np.array_equal(by_type[1], guided)


def test_an_sd3_controlnet_changes_generate_and_says_which_modes_it_runs(client):
    plain = pixels(client.run(job("generate", "tiny-sd3", image=False, width=64, height=64), timeout=120))[0][1]
    msg = with_control(job("generate", "tiny-sd3", image=False, width=64, height=64), "canny")
    msg["controls"][0]["image"] = payload(lines_image(64, 64))
    layer, guided = pixels(client.run(msg, timeout=120))[0]
    assert layer.info["controlnet"]["name"] == "sd3-controlnet-canny-tiny"
    assert np.abs(guided.astype(int) - plain.astype(int)).max() > 8
    with pytest.raises(JobFailed) as err:
        client.run(with_control(job("img2img", "tiny-sd3"), "canny"), timeout=120)
    assert err.value.code == "unsupported" and "with generate only" in str(err.value)


def test_a_controlnet_of_another_family_or_a_family_without_controlnets_is_named(client, server):
    engine = server.server.router.engine("families")
    loads = engine.loads
    with pytest.raises(JobFailed) as err:
        client.run(with_control(job("img2img", "tiny-flux"), "canny", model="control_tiny_sd15_canny"), timeout=120)
    assert err.value.code == "unsupported"
    assert "made for SD1.5 but checkpoint 'tiny-flux' is Flux.1 dev" in str(err.value)
    with pytest.raises(JobFailed) as err:
        client.run(with_control(job("img2img", "tiny-flux"), "canny", model="sd3-controlnet-canny-tiny"), timeout=120)
    assert "made for SD3" in str(err.value)
    with pytest.raises(JobFailed) as err:
        client.run(with_control(job("img2img", "tiny-flux"), "normal"), timeout=120)
    assert err.value.code == "model_not_found" and "no Flux.1 ControlNet for control type 'normal'" in str(err.value)
    with pytest.raises(JobFailed) as err:
        client.run(with_control(job("img2img", "tiny-flux-kontext"), "canny"), timeout=120)
    assert "Flux.1 Kontext, which takes no ControlNet" in str(err.value)
    assert engine.loads == loads, "refused before a checkpoint loads"


def test_sd35_in_bf16_on_the_cpu_stays_close_to_fp32(models_dir, start_server):
    """What a CPU with native bf16 runs SD3.5 in (``memory.choose_cpu_dtype``): the tiny SD3.5 in bf16 gives nearly
    the fp32 image (run here in bf16 by ``--dtype``, whatever this CPU would choose)."""
    with Client(start_server(model_dirs=[models_dir], dtype="float32").url, client_name="test-families") as c:
        fp32 = pixels(c.run(job("img2img", "tiny-sd3"), timeout=120))[0][1]  # whatever this CPU measured fastest
    thread = start_server(model_dirs=[models_dir], dtype="bfloat16")
    with Client(thread.url, client_name="test-families") as c:
        layer, bf16 = pixels(c.run(job("img2img", "tiny-sd3"), timeout=120))[0]
    assert layer.info["dtype"] == "bfloat16"
    diff = np.abs(bf16.astype(int) - fp32.astype(int))
    assert diff.mean() < 3 and diff.max() < 40 and not np.array_equal(bf16, fp32), (diff.mean(), diff.max())


# --- progress previews -----------------------------------------------------------------------------------------------


def test_preview_unpack_inverts_flux_packing():
    from diffusers import FluxPipeline

    from server.families.preview import unpack

    latents = torch.randn(2, 16, 6, 10)
    packed = FluxPipeline._pack_latents(latents, 2, 16, 6, 10)
    assert torch.equal(unpack(packed, 6 * 8, 10 * 8), latents)


def test_the_preview_map_fitted_to_a_vae_explains_its_fitting_picture():
    """The least-squares map from a (random tiny) VAE's latents to RGB beats the mean colour on the picture it was
    fitted to; with a trained VAE the map is close (latents are nearly linear in colour), not measurable here."""
    from diffusers import AutoencoderKL

    from server.families import preview

    vae = AutoencoderKL.from_pretrained(factory.checkpoint_folder("flux"), subfolder="vae", local_files_only=True)
    weights, bias = preview.fit(vae)
    picture = preview.fitting_picture()
    z = vae.encode(torch.from_numpy(picture.transpose(2, 0, 1)[None])).latent_dist.mean
    z = (z - vae.config.shift_factor) * vae.config.scaling_factor
    rgb = preview.to_rgb(z, weights, bias).astype(float) / 127.5 - 1
    target = picture.reshape(16, 8, 16, 8, 3).mean((1, 3))
    assert weights.shape == (16, 3)
    assert ((rgb - target) ** 2).sum() < 0.95 * ((target - target.mean((0, 1))) ** 2).sum()


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux", "tiny-flux-kontext"])  # SD3 first: still loaded
def test_progress_previews_arrive_for_these_families(client, model):
    msg = job("edit" if model.endswith("kontext") else "img2img", model, steps=3)
    msg["previews"] = True
    events = []
    client.run(msg, on_event=lambda m: m.type == "progress" and events.append(m), timeout=120)
    # The outbox coalesces a job's unsent progress (the newest wins) when the connection lags, so fewer than 3 may
    # arrive; the last step's always does, and every progress carries a preview.
    assert events and all(e.preview is not None for e in events), [(e.step, e.preview) for e in events]
    assert (events[-1].step, events[-1].total) == (3, 3)
    previews = [e.preview for e in events]
    sizes = {(p.width, p.height) for p in previews}
    assert len(sizes) == 1 and max(sizes.pop()) <= 128
    assert len(previews) == 1 or len({bytes(p.data) for p in previews}) > 1  # the picture changes as the steps go


# --- GGUF ------------------------------------------------------------------------------------------------------------


def test_a_gguf_flux_transformer_is_recognised_and_runs_close_to_the_full_precision_one(client, models_dir):
    entry = ModelRegistry([models_dir]).get("tiny-flux-Q8_0", "checkpoint")
    assert (entry.arch, entry.info["variant"], entry.format) == ("flux", "dev", "gguf")
    full = pixels(client.run(job("img2img", "tiny-flux-split"), timeout=120))[0][1]
    layer, quantized = pixels(client.run(job("img2img", "tiny-flux-Q8_0"), timeout=120))[0]
    assert layer.info["parts"]["vae"] == "tiny-flux-ae" and layer.info["memory"] == "on the CPU"
    diff = np.abs(quantized.astype(int) - full.astype(int))
    assert diff.mean() < 4 and not np.array_equal(quantized, full), (diff.mean(), diff.max())


def test_the_shipped_sdxl_refiner_config_builds_the_published_refiner():
    """server/configs/sdxl-refiner (from Stability's sd_xl_refiner.yaml by diffusers' own conversion): the refiner's
    UNet (2.3 B published), its OpenCLIP-G text encoder (695 M) and an img2img pipeline without the CLIP-L encoder."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    from server.models.loading import CONFIGS_DIR

    folder = CONFIGS_DIR / "sdxl-refiner"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLImg2ImgPipeline" and index["requires_aesthetics_score"]
    assert index["text_encoder"] == [None, None] and index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    raw = json.loads((folder / "unet" / "config.json").read_text())
    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel.from_config(raw)
    assert abs(sum(p.numel() for p in unet.parameters()) - 2.3e9) / 2.3e9 < 0.03
    assert unet.config.projection_class_embeddings_input_dim == 2560 and unet.config.cross_attention_dim == 1280
    cfg = transformers.CLIPTextConfig.from_json_file(str(folder / "text_encoder_2" / "config.json"))
    with init_empty_weights():
        enc = transformers.CLIPTextModelWithProjection(cfg)
    assert abs(sum(p.numel() for p in enc.parameters()) - 695e6) / 695e6 < 0.03
