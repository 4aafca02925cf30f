"""Regions (issue 15): a prompt per area of the context box, through the real websocket server on tiny random-weight
SD1.5 and SDXL models at 64 px; the blend weights; validation; refusal on families without them; the CLI."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

import factory
from protocol.client import JobFailed
from protocol.errors import ProtocolError
from protocol.messages import MAX_REGIONS, Job, Result
from server.core import Region
from server.diffusion import regions
from server.diffusion.attention import ContiguousHeadsAttention

MODELS = ("sd15", "sdxl", "sd15-inpaint", "qwen-layered")
W = H = 64
PROMPT = "a landscape"
REGION_PROMPT = "a bright red sports car, chrome wheels"


def payload(arr: np.ndarray) -> dict:
    fmt = "gray8" if arr.ndim == 2 else "rgba8"
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": arr.tobytes()}


def left_half(w: int = W, h: int = H) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 255
    return mask


def picture(w: int = W, h: int = H) -> np.ndarray:
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    img[..., 2] = 90
    img[..., 3] = 255
    return img


def job(mode: str, model: str, region_list=(), **extra) -> dict:
    msg = {
        "mode": mode,
        "model": model,
        "prompt": PROMPT,
        "params": {"steps": 4, "seed": 7, "cfg": 7.0},
        "regions": [dict(r, mask=payload(r["mask"])) for r in region_list],
    }
    msg.update(extra)
    if mode == "generate" and "image" not in msg:
        msg["params"].update(width=W, height=H)
    return msg


def pixels(result: Result) -> np.ndarray:
    layer = result.layers[0]
    return np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4).astype(np.int16)


def change(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a[..., :3] - b[..., :3])[where].mean())


# --- the blend weights -----------------------------------------------------------------------------------------------


def test_weights_sum_to_one_and_overlaps_share_the_area():
    a = np.zeros((4, 6), np.uint8)
    a[:, :4] = 255
    b = np.zeros((4, 6), np.uint8)
    b[:, 2:] = 255
    w = regions.weights([Region("a", a), Region("b", b, strength=0.5)], 6, 4)
    assert w.shape == (3, 4, 6)
    assert np.allclose(w.sum(axis=0), 1.0)
    assert np.allclose(w[:, 0, 0], [0, 1, 0])  # only region a
    assert np.allclose(w[:, 0, 2], [0, 1 / 1.5, 0.5 / 1.5])  # both: scaled down to a sum of 1
    assert np.allclose(w[:, 0, 5], [0.5, 0, 0.5])  # only b at half strength: the job's prompt keeps the rest


def test_region_texts_add_the_job_prompt_and_take_lora_tags_out():
    texts, tags = regions.texts([Region("red car <lora:x:0.5>", np.zeros((1, 1), np.uint8), "blurry")], "street", "")
    assert texts == [("red car, street", "blurry")]
    assert [(t.name, t.weight) for t in tags] == [("x", 0.5)]


# --- protocol checks -------------------------------------------------------------------------------------------------


def parse(msg: dict) -> Job:
    return Job.from_wire(dict(msg, type="job", id="j1"))


def test_protocol_checks_mask_size_count_prompt_and_mode():
    good = job("generate", "tiny-sd15", [{"prompt": "car", "mask": left_half()}])
    assert parse(good).regions[0].prompt == "car"
    cases = [
        (job("generate", "tiny-sd15", [{"prompt": "car", "mask": left_half(32, 32)}]), "regions[0].mask", "32x32"),
        (job("generate", "tiny-sd15", [{"prompt": " ", "mask": left_half()}]), "regions[0].prompt", "empty"),
        (job("generate", "tiny-sd15", [{"prompt": "x" * 8193, "mask": left_half()}]), "regions[0].prompt", "8192"),
        (
            job("generate", "tiny-sd15", [{"prompt": "car", "mask": left_half()}] * (MAX_REGIONS + 1)),
            "regions",
            str(MAX_REGIONS),
        ),
        (
            job("generate", "tiny-sd15", [{"prompt": "car", "mask": left_half(), "strength": 1.5}]),
            "regions[0].strength",
            "",
        ),
        (job("upscale", "", [{"prompt": "car", "mask": left_half()}], image=payload(picture())), "regions", "upscale"),
    ]
    for msg, field, words in cases:
        with pytest.raises(ProtocolError) as err:
            parse(msg)
        assert err.value.code == "bad_request" and err.value.field == field and words in err.value.message


# --- through the server ----------------------------------------------------------------------------------------------


def test_welcome_lists_the_families_with_regions(client):
    assert client.welcome.capabilities["regions"] == [
        "sd15",
        "sdxl",
        "flux",
        "flux-fill",
        "flux-kontext",
        "sd3",
        "z-image",
        "flux2-klein",
        "chroma",
        "qwen-image",
        "qwen-image-edit",
        "qwen-image-edit-plus",
    ]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_each_cross_attention_layer_follows_the_region_prompt_inside_and_the_job_prompt_outside(arch):
    """Criterion at the place regions act: every cross-attention layer of the real UNet, at its own resolution, gives
    exactly the job prompt's output outside the region and exactly the region prompt's output inside it."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from server.diffusion import prompts

    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(factory.checkpoint_folder(arch), local_files_only=True)
    common = prompts.encode(pipe, PROMPT, "", "cpu")
    own = prompts.encode(pipe, f"{REGION_PROMPT}, {PROMPT}", "", "cpu")
    plan = regions.plan([Region(REGION_PROMPT, left_half())], [own], W, H, 8, 8, 1, "cpu", torch.float32)
    seen = []  # (layer name, module, the hidden states it got) of every cross-attention call of one real UNet pass
    hooks = [
        m.register_forward_pre_hook(lambda m, args, kw, n=name: seen.append((n, m, args[0])), with_kwargs=True)
        for name, m in pipe.unet.named_modules()
        if name.endswith("attn2")
    ]
    pipe.set_progress_bar_config(disable=True)
    pipe(**common.kwargs(), height=H, width=W, num_inference_steps=1, guidance_scale=1.0, output_type="latent")
    for hook in hooks:
        hook.remove()
    assert len({int(states.shape[1]) for _, _, states in seen}) >= 2  # more than one attention resolution
    with torch.no_grad():
        for name, attn, states in seen:
            inner = attn.processor
            blended = regions.RegionAttention(inner, plan)(attn, states, common.prompt_embeds)
            plain = inner(attn, states, common.prompt_embeds)
            region = inner(attn, states, own.prompt_embeds)
            side = int(round(states.shape[1] ** 0.5))
            if side == 1:  # the 1x1 middle of the tiny UNet: half of it is the region
                assert torch.allclose(blended, (plain + region) / 2, atol=1e-5), name
                continue
            inside = torch.zeros(side, side, dtype=torch.bool)
            inside[:, : side // 2] = True
            inside = inside.flatten()
            assert torch.allclose(blended[0, ~inside], plain[0, ~inside], atol=1e-6), name
            assert torch.allclose(blended[0, inside], region[0, inside], atol=1e-5), name
            assert not torch.allclose(plain[0, inside], region[0, inside]), name


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_generate_with_a_region_changes_pixels_for_the_same_seed(client, model):
    """End to end, same seed with and without a region: different pixels, and the same again when repeated. (A tiny
    random-weight UNet at 64 px spreads any change over the whole 8x8 latent through its self-attention, so where the
    pixels change is checked per attention layer above, and outside an inpaint mask below.)"""
    plain = pixels(client.run(job("generate", model), timeout=300))
    region = [{"prompt": REGION_PROMPT, "mask": left_half()}]
    with_region = pixels(client.run(job("generate", model, region), timeout=300))
    assert change(with_region, plain, left_half() > 0) > 0
    again = pixels(client.run(job("generate", model, region), timeout=300))
    assert np.array_equal(again, with_region)  # same seed, same regions: same pixels
    other = pixels(client.run(job("generate", model, [dict(region[0], prompt="a blue lake")]), timeout=300))
    assert not np.array_equal(other, with_region)  # the region's own prompt is what makes the difference


def test_a_region_at_strength_zero_or_without_pixels_changes_nothing(client):
    plain = pixels(client.run(job("generate", "tiny-sd15"), timeout=300))
    for region in (
        {"prompt": REGION_PROMPT, "mask": left_half(), "strength": 0.0},
        {"prompt": REGION_PROMPT, "mask": np.zeros((H, W), np.uint8)},
    ):
        assert np.array_equal(pixels(client.run(job("generate", "tiny-sd15", [region]), timeout=300)), plain)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sd15-inpaint", "tiny-sdxl"])
def test_inpaint_with_regions_keeps_every_pixel_outside_the_mask(client, server, model):
    """Criterion: with an inpaint mask, pixels outside the mask equal the input exactly (RGB; the layer is transparent
    there); inside, two regions
    with different prompts give different pixels than no regions for the same seed."""
    image = picture()
    mask = np.zeros((H, W), np.uint8)
    mask[16:48, 8:56] = 255
    base = job("inpaint", model, image=payload(image), mask=payload(mask))
    base["params"].update(grow=0, feather=0, strength=1.0)
    plain = pixels(client.run(base, timeout=300))
    two = [
        {"prompt": REGION_PROMPT, "mask": left_half()},
        {"prompt": "a blue lake", "mask": 255 - left_half(), "negative_prompt": "red"},
    ]
    result = client.run(dict(base, regions=[dict(r, mask=payload(r["mask"])) for r in two]), timeout=300)
    out = pixels(result)
    outside = mask == 0
    assert np.array_equal(out[outside][:, :3], image.astype(np.int16)[outside][:, :3])
    assert not out[outside][:, 3].any()  # the layer's alpha is the mask: nothing covers the outside
    assert change(out, plain, ~outside) > 0
    assert result.layers[0].info["regions"] == 2
    unet = server.server.router.diffusion.loaded.pipe.unet  # the processors are back after the job
    assert not any(isinstance(p, regions.RegionAttention) for p in unet.attn_processors.values())
    if unet.device.type == "cpu":  # and they are the CPU's own
        assert all(isinstance(p, ContiguousHeadsAttention) for p in unet.attn_processors.values())


def test_outpaint_and_img2img_take_regions(client):
    region = [{"prompt": REGION_PROMPT, "mask": left_half()}]
    out = client.run(
        job(
            "outpaint",
            "tiny-sd15",
            region,
            image=payload(picture()),
            params={"steps": 4, "seed": 3, "extend": {"right": 16}},
        ),
        timeout=300,
    )
    assert (out.layers[0].width, out.layers[0].height) == (W + 16, H)
    plain = pixels(client.run(job("img2img", "tiny-sd15", image=payload(picture())), timeout=300))
    with_region = pixels(client.run(job("img2img", "tiny-sd15", region, image=payload(picture())), timeout=300))
    assert change(with_region, plain, left_half() > 0) > 0


def test_a_batch_with_regions_gives_each_seed_its_own_pixels(client):
    region = [{"prompt": REGION_PROMPT, "mask": left_half()}]
    msg = job("generate", "tiny-sd15", region)
    msg["params"]["batch"] = 2
    batch = client.run(msg, timeout=300)
    alone = job("generate", "tiny-sd15", region)
    alone["params"]["seed"] = batch.layers[1].seed
    single = client.run(alone, timeout=300)
    second = np.frombuffer(batch.layers[1].data, np.uint8).reshape(H, W, 4).astype(np.int16)
    first = np.frombuffer(batch.layers[0].data, np.uint8).reshape(H, W, 4).astype(np.int16)
    # one pipeline call for the batch: the same image up to rounding (batched kernels round differently)
    assert np.abs(pixels(single) - second).mean() < 1.0 < np.abs(first - second).mean()


def test_families_without_regions_are_refused_by_name(client):
    region = [{"prompt": REGION_PROMPT, "mask": left_half()}]
    with pytest.raises(JobFailed) as err:
        client.run(job("generate", "tiny-qwen-layered", region), timeout=300)
    error = err.value.error
    assert error.code == "unsupported" and error.field == "regions"
    assert "Qwen-Image-Layered" in error.message and "tiny-qwen-layered" in error.message
    takes = "SD1.5, SDXL, Flux.1, Flux.1 Fill, Flux.1 Kontext, SD3, Z-Image, Flux.2 Klein, Chroma, Qwen-Image, "
    assert takes + "Qwen-Image-Edit and Qwen-Image-Edit Plus checkpoints" in error.message
    with pytest.raises(JobFailed) as err:
        client.run(
            job("inpaint", "classical", region, image=payload(picture()), mask=payload(left_half())), timeout=300
        )
    assert err.value.error.code == "unsupported" and "classical" in err.value.error.message


# --- command line ----------------------------------------------------------------------------------------------------


def test_cli_run_takes_regions(models_dir, tmp_path, paintbridge_cli):
    Image.fromarray(left_half()).save(tmp_path / "left.png")

    def run(*extra: str) -> np.ndarray:
        out = tmp_path / f"out{len(extra)}.png"
        proc = paintbridge_cli(
            "run",
            "generate",
            "--width",
            str(W),
            "--height",
            str(H),
            "--prompt",
            PROMPT,
            "--models",
            str(models_dir),
            "--model",
            "tiny-sd15",
            "--steps",
            "3",
            "--seed",
            "5",
            "--out",
            str(out),
            *extra,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return np.asarray(Image.open(out).convert("RGBA")).astype(np.int16)

    plain = run()
    with_region = run("--region", f"{tmp_path / 'left.png'}:{REGION_PROMPT}")
    assert change(with_region, plain, left_half() > 0) > 0
    bad = paintbridge_cli(
        "run",
        "generate",
        "--width",
        "32",
        "--height",
        "32",
        "--models",
        str(models_dir),
        "--model",
        "tiny-sd15",
        "--region",
        f"{tmp_path / 'left.png'}:car",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert bad.returncode != 0 and "regions[0].mask" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stderr.startswith("paintbridge run: "), bad.stderr
