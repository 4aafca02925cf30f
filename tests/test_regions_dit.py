"""Regions on Flux.1 (dev, Fill, Kontext), SD3, Z-Image, Flux.2 Klein, Qwen-Image and Chroma: the joint-attention mask,
where a region's prompt acts on the tiny random-weight models (Flux: 1 double + 1 single block, 64 px = 4 x 4 image
tokens), and jobs through the real websocket server."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import factory
import tiny_chroma
import tiny_klein
import tiny_qwen
import tiny_zimage
from protocol.client import JobFailed
from server.core import Region
from server.families import qwen
from server.families import regions, regions_chroma, regions_klein, regions_qwen, regions_sd3, regions_zimage
from test_regions import job as sd_job, payload, picture, pixels

MODELS = (
    "flux",
    "flux-fill",
    "flux-kontext",
    "sd3",
    "cn-flux-canny",
    "cn-sd3-canny",
    "redux-file",
    "zimage",
    "klein",
    "qwen",
    "qwen-controlnet",
    "qwen-edit",
    "qwen-edit-plus",
    "qwen-layered",
    "chroma",
)
W = H = 64
PROMPT = "a landscape"
CAR, LAKE, TREE = "a bright red sports car", "a calm blue lake", "a green tree in the snow"


def columns(start: int, stop: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[:, start:stop] = 255
    return mask


LEFT, RIGHT = columns(0, 16), columns(48, 64)  # the first and the last column of image tokens


# --- the mask --------------------------------------------------------------------------------------------------------


def test_the_mask_joins_each_text_to_its_own_area():
    """[job text (2) | region text (3)] then 2 x 2 image tokens; the region covers the left column fully."""
    left = np.zeros((32, 32), np.uint8)
    left[:, :16] = 255
    plan = regions.plan([Region("car", left)], [2, 3], 32, 32)
    m = plan.mask(torch.zeros(1, dtype=torch.float32))[0, 0]
    inf = float("-inf")
    assert m.shape == (9, 9) and plan.sequence == 9
    assert (m[:2, :2] == 0).all() and (m[2:5, 2:5] == 0).all()  # each text sees itself ...
    assert (m[:2, 2:5] == inf).all() and (m[2:5, :2] == inf).all()  # ... and not the other text
    image_left, image_right = [5, 7], [6, 8]  # row-major 2 x 2 tokens
    assert (m[2:5][:, image_left] == 0).all() and (m[2:5][:, image_right] == inf).all()
    assert (m[image_left][:, 2:5] == 0).all() and (m[image_left][:, :2] == inf).all()
    assert (m[image_right][:, :2] == 0).all() and (m[image_right][:, 2:5] == inf).all()
    assert (m[:2][:, image_right] == 0).all() and (m[:2][:, image_left] == inf).all()  # the job's text: the rest
    assert (m[5:, 5:] == 0).all()  # every image token sees every image token


def test_a_half_strength_region_shares_its_area_with_the_job_prompt():
    plan = regions.plan([Region("car", np.full((16, 16), 255, np.uint8), strength=0.5)], [1, 1], 16, 16)
    m = plan.mask(torch.zeros(1, dtype=torch.float64))[0, 0]
    assert torch.allclose(m[2, :2], torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)))


def test_klein_s_extra_tokens_read_the_job_prompt_and_every_text_reads_them():
    """[job text (2) | region text (3) | 2 x 2 image | 3 reference tokens]: the reference tokens read the image and
    the job's text, not the region's; every text group reads them."""
    left = np.zeros((32, 32), np.uint8)
    left[:, :16] = 255
    plan = regions_klein.KleinPlan([2, 3], regions.token_weights([Region("car", left)], 32, 32))
    m = plan.mask(12, torch.zeros(1, dtype=torch.float32))[0, 0]
    inf = float("-inf")
    assert m.shape == (12, 12)
    assert torch.equal(m[:9, :9], regions.plan([Region("car", left)], [2, 3], 32, 32).mask(m)[0, 0])
    assert (m[9:, :2] == 0).all() and (m[9:, 2:5] == inf).all() and (m[9:, 5:] == 0).all()
    assert (m[:9, 9:] == 0).all()
    with pytest.raises(RuntimeError, match="planned 5 text"):
        plan.mask(8, m)


def test_sizes_off_the_token_grid_are_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        regions.plan([Region("car", LEFT)], [4, 4], 72, 64)


# --- where a region's prompt acts: the tiny Flux.1, Z-Image, Klein and Qwen pipelines----------------------------------

# the most a far area's latents may move, relative to the change where the region is (masks ignored: about 1). Every
# image token reads every other one, so a change leaks a little through the image: Flux (1 + 1 blocks, 3 steps)
# keeps it under 1e-3, Z-Image (4 layers, guidance 4) under 0.05, Klein (1 + 1 blocks, a reference picture) and
# Qwen-Image (true CFG 4) under 0.002, Kontext (its edited picture's tokens) 4e-4, SD3 (2 joint layers, one with the
# image's own self-attention; CFG 4) 0.003, Chroma (CFG 4) 0.008 (without the mask: 0.97 to 1.4)
LOCAL = {
    "flux": 0.02,
    "z-image": 0.1,
    "klein": 0.02,
    "qwen": 0.02,
    "qwen-edit-plus": 0.02,
    "qwen-edit": 0.02,
    "chroma": 0.05,
    "kontext": 0.02,
    "sd3": 0.05,
}
KITS = {
    "flux": regions,
    "z-image": regions_zimage,
    "klein": regions_klein,
    "qwen": regions_qwen,
    "qwen-edit-plus": regions_qwen,
    "qwen-edit": regions_qwen,
    "chroma": regions_chroma,
    "kontext": regions,
    "sd3": regions_sd3,
}


@pytest.fixture(scope="module", params=list(KITS))
def family(request):
    """(family, pipeline): the tiny Flux.1 (guidance-distilled), Z-Image (guidance 4: the negative picture too) or Klein
    (an undistilled release at guidance 4, so the negative pass runs too, seeing a reference picture: extra tokens after
    the image's) or Qwen-Image (true CFG 4: a negative prompt per region), Chroma and SD3 (CFG 4: a negative prompt
    per region; Chroma's key mask over its padded T5 tokens), Kontext (editing a picture: its tokens after the
    image's)."""
    from diffusers import (
        ChromaPipeline,
        Flux2KleinPipeline,
        FluxKontextPipeline,
        FluxPipeline,
        QwenImageEditInpaintPipeline,
        QwenImageEditPipeline,
        QwenImageEditPlusPipeline,
        QwenImagePipeline,
        StableDiffusion3Pipeline,
        ZImagePipeline,
    )

    if request.param == "flux":
        pipe = FluxPipeline.from_pretrained(factory.checkpoint_folder("flux"), local_files_only=True)
    elif request.param == "kontext":
        pipe = FluxKontextPipeline.from_pretrained(factory.checkpoint_folder("flux-kontext"), local_files_only=True)
    elif request.param == "qwen-edit":  # its inpaint pipeline: the prompt reads the picture, whose tokens follow
        folder = tiny_qwen.checkpoint_folder("qwen-edit")
        pipe = QwenImageEditInpaintPipeline.from_pipe(
            QwenImageEditPipeline.from_pretrained(folder, local_files_only=True)
        )
    elif request.param == "sd3":
        pipe = StableDiffusion3Pipeline.from_pretrained(factory.checkpoint_folder("sd3"), local_files_only=True)
    elif request.param == "chroma":
        pipe = ChromaPipeline.from_pretrained(tiny_chroma.folder(), local_files_only=True)
    elif request.param == "klein":
        pipe = Flux2KleinPipeline.from_pretrained(tiny_klein.folder(), local_files_only=True)
        pipe.register_to_config(is_distilled=False)
    elif request.param == "qwen":
        pipe = QwenImagePipeline.from_pretrained(tiny_qwen.checkpoint_folder("qwen"), local_files_only=True)
    elif request.param == "qwen-edit-plus":  # its generate, img2img and inpaint jobs run Qwen-Image's pipelines
        folder = tiny_qwen.checkpoint_folder("qwen-edit-plus")
        pipe = QwenImagePipeline.from_pipe(QwenImageEditPlusPipeline.from_pretrained(folder, local_files_only=True))
    else:
        pipe = ZImagePipeline.from_pretrained(tiny_zimage.folder(), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return request.param, pipe


def latents(family, region_list=()) -> np.ndarray:
    """The denoised latents (8 x 8 x 16) of a 3-step job at seed 7, with ``region_list`` of (prompt, mask[, strength])
    sent to the pipeline as the engine sends them (each region's text followed by the job's). Compared before the
    VAE: its decoder's group norms take statistics over the whole picture, so decoded pixels all move by ~1e-5."""
    name, pipe = family
    kit = KITS[name]
    call = {"prompt": PROMPT}
    if name == "z-image":
        call.update(negative_prompt="blurry", guidance_scale=4.0)
    if name == "klein":
        call.update(guidance_scale=4.0, image=[Image.fromarray(picture()[..., :3])])
    if name.startswith("qwen"):
        call.update(negative_prompt="blurry", true_cfg_scale=4.0)
    if name in ("chroma", "sd3"):
        call.update(negative_prompt="blurry", guidance_scale=4.0)
    if name == "qwen-edit":  # the whole picture repainted
        full = np.full((H, W), 255, np.uint8)
        call.update(image=Image.fromarray(picture()[..., :3]), mask_image=Image.fromarray(full), strength=1.0)
    if name == "kontext":  # the edited picture's tokens after the image's
        call.update(image=Image.fromarray(picture()[..., :3]), _auto_resize=False, max_area=W * H)
    plan = None
    if region_list:
        listed = [Region(r[0], r[1], strength=r[2] if len(r) > 2 else 1.0) for r in region_list]
        call, plan = kit.prepare(pipe, call, [(f"{r.prompt}, {PROMPT}", "blurry") for r in listed], listed, W, H)
    with torch.inference_mode(), regions.applied([pipe.transformer], plan), qwen.reference_area(W * H):
        out = pipe(
            **call,
            height=H,
            width=W,
            num_inference_steps=3,
            generator=torch.Generator().manual_seed(7),
            output_type="latent",
        ).images
        if name in ("flux", "chroma", "kontext"):
            out = pipe._unpack_latents(out, H, W, pipe.vae_scale_factor)
        if name.startswith("qwen"):
            out = pipe._unpack_latents(out, H, W, pipe.vae_scale_factor)[:, :, 0]
    return out[0].permute(1, 2, 0).double().numpy()


@pytest.fixture(scope="module")
def plain(family) -> np.ndarray:
    """``latents(family)`` without regions, computed once per family (the pipeline is seeded: the same latents each
    time), for the tests that compare a job with regions against it."""
    return latents(family)


def change(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean |a - b| where the (pixel-sized) mask ``where`` is set, at the size of ``a``."""
    h, w = a.shape[:2]
    inside = where[:: where.shape[0] // h, :: where.shape[1] // w] > 0
    return float(np.abs(a - b)[inside].mean())


def test_a_regions_prompt_changes_its_own_area_and_not_the_other_regions(family):
    """Criterion: with two regions, changing only the left one's prompt changes the left area and leaves the right
    area (near-)identical; without the mask both areas would see both prompts."""
    first = latents(family, [(CAR, LEFT), (LAKE, RIGHT)])
    second = latents(family, [(TREE, LEFT), (LAKE, RIGHT)])
    moved = change(first, second, LEFT)
    assert moved > 1e-6
    assert change(first, second, RIGHT) <= LOCAL[family[0]] * moved


def test_regions_change_pixels_only_near_their_areas(family, plain):
    """Criterion: the same job without regions and with one on the left differ on the left, not on the right."""
    with_region = latents(family, [(CAR, LEFT)])
    moved = change(with_region, plain, LEFT)
    assert moved > 1e-6
    assert change(with_region, plain, RIGHT) <= LOCAL[family[0]] * moved


def test_a_region_at_strength_zero_leaves_the_job_as_without_it(family, plain):
    """Its text is there, unread: the same latents up to rounding (Z-Image: each text group padded and placed as a
    caption of its own)."""
    assert np.abs(latents(family, [(CAR, LEFT, 0.0)]) - plain).max() < 1e-4


@pytest.fixture(scope="module")
def flux():
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(factory.checkpoint_folder("flux"), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_transformer_gets_its_own_processors_back(flux):
    before = dict(flux.transformer.attn_processors)
    plan = regions.plan([Region(CAR, LEFT)], [1, 1], W, H)
    with pytest.raises(RuntimeError, match="does not match"):  # the prompt's tokens are not the planned ones
        with torch.inference_mode(), regions.applied([flux.transformer], plan):
            flux(prompt=PROMPT, height=H, width=W, num_inference_steps=1)
    assert dict(flux.transformer.attn_processors) == before


@pytest.mark.parametrize("name", ["klein", "qwen"])
def test_a_klein_or_qwen_call_off_the_plan_is_refused_and_the_processors_come_back(name):
    """The prompt's tokens are not the planned ones (Klein: neither the regions' text nor the job's prompt alone)."""
    from diffusers import Flux2KleinPipeline, QwenImagePipeline

    weights = regions.token_weights([Region(CAR, LEFT)], W, H)
    if name == "klein":
        pipe = Flux2KleinPipeline.from_pretrained(tiny_klein.folder(), local_files_only=True)
        plan, match = regions_klein.KleinPlan([7, 7], weights), "a Klein call over 512 text tokens"
    else:
        pipe = QwenImagePipeline.from_pretrained(tiny_qwen.checkpoint_folder("qwen"), local_files_only=True)
        plan, match = regions_qwen.QwenPlan([1, 1], weights), "the regions planned 2 "
    before = dict(pipe.transformer.attn_processors)
    with pytest.raises(RuntimeError, match=match):
        with torch.inference_mode(), regions.applied([pipe.transformer], plan), qwen.reference_area(W * H):
            pipe(prompt=PROMPT, height=H, width=W, num_inference_steps=1)
    assert dict(pipe.transformer.attn_processors) == before
    assert not pipe.transformer._forward_pre_hooks


# --- through the server ----------------------------------------------------------------------------------------------


def job(mode: str, model: str, region_list=(), **extra) -> dict:
    """``test_regions.job`` with regions as (prompt, mask[, other fields]) and 3 steps at the family's guidance."""
    listed = [dict(r[2] if len(r) > 2 else {}, prompt=r[0], mask=r[1]) for r in region_list]
    msg = sd_job(mode, model, listed, **extra)
    msg["params"].update(steps=3, cfg=None)
    return msg


def test_welcome_offers_regions_on_the_dit_families_that_take_them(client):
    caps = client.welcome.capabilities
    takes = ("flux", "flux-fill", "flux-kontext", "sd3", "z-image", "flux2-klein", "qwen-image", "chroma")
    takes += ("qwen-image-edit", "qwen-image-edit-plus")
    assert set(takes) <= set(caps["regions"]) and "qwen-image-layered" not in caps["regions"]
    assert all(caps["families"][f]["regions"] for f in takes)
    assert not caps["families"]["qwen-image-layered"]["regions"]


@pytest.mark.parametrize(
    "model",
    [
        "tiny-flux-fill",
        "tiny-flux-kontext",
        "tiny-sd3",
        "tiny-z-image",
        "tiny-klein",
        "tiny-qwen",
        "tiny-qwen-edit",
        "tiny-qwen-edit-plus",
        "tiny-chroma",
        "tiny-flux",  # last: the tests after this one start on tiny-flux, loaded
    ],
)
def test_a_job_with_two_regions_runs_and_puts_the_processors_back(client, server, model):
    two = [(CAR, LEFT), (LAKE, RIGHT)]
    result = client.run(job("generate", model, two), timeout=300)
    assert result.layers[0].info["regions"] == 2
    plain = pixels(client.run(job("generate", model), timeout=300))
    assert not np.array_equal(pixels(result), plain)
    unused = [(CAR, LEFT, {"strength": 0.0}), (LAKE, np.zeros((H, W), np.uint8))]
    assert np.array_equal(pixels(client.run(job("generate", model, unused), timeout=300)), plain)
    transformer = server.server.router.engine("families").loaded.pipe.transformer
    wrapped = (
        regions.MaskedAttention,
        regions_zimage.ZImageMaskedAttention,
        regions_klein.KleinMaskedAttention,
        regions_qwen.QwenMaskedAttention,
        regions_sd3.SD3MaskedAttention,
    )
    assert not any(isinstance(getattr(m, "processor", None), wrapped) for m in transformer.modules())


def test_a_tileable_job_with_regions_keeps_its_latents_in_place(client):
    """Rolling the latents between steps would move the picture under the regions' masks: such a job wraps through
    the VAE's padding alone."""
    msg = job("generate", "tiny-flux", [(CAR, LEFT)])
    msg["params"]["tileable"] = True
    assert client.run(msg, timeout=300).layers[0].info["tileable"] == "circular padding in the VAE"


def test_regions_with_a_controlnet_or_a_redux_reference(client):
    control = np.zeros((H, W, 4), np.uint8)
    control[..., 3], control[::8, :, :3] = 255, 255
    with_control = job("generate", "tiny-flux", [(CAR, LEFT)])
    with_control["controls"] = [{"type": "canny", "image": payload(control), "model": "flux-controlnet-canny-tiny"}]
    assert client.run(with_control, timeout=300).layers[0].info["regions"] == 1
    with_reference = job("generate", "tiny-flux", [(CAR, LEFT)])
    with_reference["references"] = [{"type": "content", "image": payload(picture())}]
    info = client.run(with_reference, timeout=300).layers[0].info
    assert info["regions"] == 1 and info["references"]


@pytest.mark.parametrize("model", ["tiny-flux", "tiny-qwen-edit"])
def test_inpaint_with_regions_keeps_every_pixel_outside_the_mask(client, server, model):
    """Qwen-Image-Edit inpaints through its edit pipeline: the regions' texts are encoded by the pipeline (reading the
    picture) and its ``encode_prompt`` comes back afterwards."""
    image, mask = picture(), np.zeros((H, W), np.uint8)
    mask[16:48, 8:56] = 255
    msg = job("inpaint", model, [(CAR, LEFT), (LAKE, RIGHT)], image=payload(image), mask=payload(mask))
    msg["params"].update(grow=0, feather=0, strength=1.0)
    result = client.run(msg, timeout=300)
    assert result.layers[0].info["regions"] == 2
    outside = mask == 0
    assert np.array_equal(pixels(result)[outside][:, :3], image.astype(np.int16)[outside][:, :3])
    loaded = server.server.router.engine("families").loaded
    assert all("encode_prompt" not in vars(p) for p in [loaded.pipe, *loaded.variants.values()])


@pytest.mark.parametrize(
    "model, controlnet", [("tiny-qwen", "tiny-qwen-controlnet-union"), ("tiny-sd3", "sd3-controlnet-canny-tiny")]
)
def test_regions_with_a_joint_attention_controlnet(client, model, controlnet):
    """The ControlNet's own joint attention reads the same text (Qwen-Image's union one, SD3's): its layers get the
    regions' mask too."""
    control = np.zeros((H, W, 4), np.uint8)
    control[..., 3], control[::8, :, :3] = 255, 255
    msg = job("generate", model, [(CAR, LEFT), (LAKE, RIGHT)])
    msg["controls"] = [{"type": "canny", "image": payload(control), "model": controlnet}]
    info = client.run(msg, timeout=300).layers[0].info
    assert info["regions"] == 2 and info["controlnet"]["name"] == controlnet


def test_families_without_regions_are_still_refused_by_name(client):
    with pytest.raises(JobFailed) as err:
        client.run(job("generate", "tiny-qwen-layered", [(CAR, LEFT)]), timeout=300)
    error = err.value.error
    assert error.code == "unsupported" and error.field == "regions"
    assert "Qwen-Image-Layered" in error.message and "tiny-qwen-layered" in error.message


def test_z_image_refuses_captions_past_its_text_positions(client):
    """The tiny Z-Image places 1024 text positions; two regions of 512 tokens each (the encoder's most) and the job's
    prompt come to more."""
    long = " ".join(["red"] * 400)
    with pytest.raises(JobFailed) as err:
        client.run(job("generate", "tiny-z-image", [(long, LEFT), (long, RIGHT)]), timeout=300)
    error = err.value.error
    assert error.code == "unsupported" and error.field == "regions" and "fewer regions" in error.message
