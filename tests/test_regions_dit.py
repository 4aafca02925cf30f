"""Regions on Flux.1 (dev and Fill): the joint-attention mask, where a region's prompt acts on the tiny random-weight
Flux (1 double + 1 single block, 64 px = 4 x 4 image tokens), and jobs through the real websocket server."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import factory
from protocol.client import JobFailed
from server.core import Region
from server.families import regions
from test_regions import job as sd_job, payload, picture, pixels

torch.set_num_threads(2)

MODELS = ("flux", "flux-fill", "sd3", "cn-flux-canny", "redux-file")
W = H = 64
PROMPT = "a landscape"
CAR, LAKE, TREE = "a bright red sports car", "a calm blue lake", "a green tree in the snow"
LOCAL = 0.02  # the most a far area may change, relative to the change where the region is (masks ignored: ~1)


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
    assert (m[:2, 5:] == 0).all()  # the job's text sees the whole picture
    image_left, image_right = [5, 7], [6, 8]  # row-major 2 x 2 tokens
    assert (m[2:5][:, image_left] == 0).all() and (m[2:5][:, image_right] == inf).all()
    assert (m[image_left][:, 2:5] == 0).all() and (m[image_left][:, :2] == inf).all()
    assert (m[image_right][:, :2] == 0).all() and (m[image_right][:, 2:5] == inf).all()
    assert (m[5:, 5:] == 0).all()  # every image token sees every image token


def test_a_half_strength_region_shares_its_area_with_the_job_prompt():
    plan = regions.plan([Region("car", np.full((16, 16), 255, np.uint8), strength=0.5)], [1, 1], 16, 16)
    m = plan.mask(torch.zeros(1, dtype=torch.float64))[0, 0]
    assert torch.allclose(m[2, :2], torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)))


def test_sizes_off_the_token_grid_are_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        regions.plan([Region("car", LEFT)], [4, 4], 72, 64)


# --- where a region's prompt acts: the tiny Flux.1 pipeline ----------------------------------------------------------


@pytest.fixture(scope="module")
def flux():
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(factory.checkpoint_folder("flux"), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def latents(pipe, region_list=()) -> np.ndarray:
    """The denoised latents (8 x 8 x 16) of a 3-step job at seed 7, with ``region_list`` of (prompt, mask) as the
    engine sends them to the pipeline (each region's text followed by the job's). Compared before the VAE: its
    decoder's group norms take statistics over the whole picture, so decoded pixels all move by ~1e-5 together."""
    call, plan = {"prompt": PROMPT}, None
    if region_list:
        call, lengths = regions.prompt_inputs(pipe, call, [f"{p}, {PROMPT}" for p, _ in region_list])
        plan = regions.plan([Region(p, m) for p, m in region_list], lengths, W, H)
    with torch.inference_mode(), regions.applied([pipe.transformer], plan):
        out = pipe(
            **call,
            height=H,
            width=W,
            num_inference_steps=3,
            generator=torch.Generator().manual_seed(7),
            output_type="latent",
        )
        unpacked = pipe._unpack_latents(out.images, H, W, pipe.vae_scale_factor)[0]
    return unpacked.permute(1, 2, 0).double().numpy()


def change(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean |a - b| where the (pixel-sized) mask ``where`` is set, at the size of ``a``."""
    h, w = a.shape[:2]
    inside = where[:: where.shape[0] // h, :: where.shape[1] // w] > 0
    return float(np.abs(a - b)[inside].mean())


def test_a_regions_prompt_changes_its_own_area_and_not_the_other_regions(flux):
    """Criterion: with two regions, changing only the left one's prompt changes the left area and leaves the right
    area (near-)identical; without the mask both areas would see both prompts."""
    first = latents(flux, [(CAR, LEFT), (LAKE, RIGHT)])
    second = latents(flux, [(TREE, LEFT), (LAKE, RIGHT)])
    moved = change(first, second, LEFT)
    assert moved > 1e-6
    assert change(first, second, RIGHT) <= LOCAL * moved


def test_regions_change_pixels_only_near_their_areas(flux):
    """Criterion: the same job without regions and with one on the left differ on the left, not on the right."""
    plain = latents(flux)
    with_region = latents(flux, [(CAR, LEFT)])
    moved = change(with_region, plain, LEFT)
    assert moved > 1e-6
    assert change(with_region, plain, RIGHT) <= LOCAL * moved


def test_the_transformer_gets_its_own_processors_back(flux):
    before = dict(flux.transformer.attn_processors)
    plan = regions.plan([Region(CAR, LEFT)], [1, 1], W, H)
    with pytest.raises(RuntimeError, match="does not match"):  # the prompt's tokens are not the planned ones
        with torch.inference_mode(), regions.applied([flux.transformer], plan):
            flux(prompt=PROMPT, height=H, width=W, num_inference_steps=1)
    assert dict(flux.transformer.attn_processors) == before


# --- through the server ----------------------------------------------------------------------------------------------


def job(mode: str, model: str, region_list=(), **extra) -> dict:
    """``test_regions.job`` with regions as (prompt, mask[, other fields]) and 3 steps at the family's guidance."""
    listed = [dict(r[2] if len(r) > 2 else {}, prompt=r[0], mask=r[1]) for r in region_list]
    msg = sd_job(mode, model, listed, **extra)
    msg["params"].update(steps=3, cfg=None)
    return msg


def test_welcome_offers_regions_on_flux(client):
    caps = client.welcome.capabilities
    assert {"flux", "flux-fill"} <= set(caps["regions"]) and "sd3" not in caps["regions"]
    assert caps["families"]["flux"]["regions"] and caps["families"]["flux-fill"]["regions"]
    assert not caps["families"]["flux-kontext"]["regions"] and not caps["families"]["sd3"]["regions"]


@pytest.mark.parametrize("model", ["tiny-flux", "tiny-flux-fill"])
def test_a_flux_job_with_two_regions_runs_and_puts_the_processors_back(client, server, model):
    two = [(CAR, LEFT), (LAKE, RIGHT)]
    result = client.run(job("generate", model, two), timeout=300)
    assert result.layers[0].info["regions"] == 2
    plain = pixels(client.run(job("generate", model), timeout=300))
    assert not np.array_equal(pixels(result), plain)
    unused = [(CAR, LEFT, {"strength": 0.0}), (LAKE, np.zeros((H, W), np.uint8))]
    assert np.array_equal(pixels(client.run(job("generate", model, unused), timeout=300)), plain)
    transformer = server.server.router.engine("families").loaded.pipe.transformer
    assert not any(isinstance(p, regions.MaskedAttention) for p in transformer.attn_processors.values())


def test_inpaint_with_regions_keeps_every_pixel_outside_the_mask(client):
    image, mask = picture(), np.zeros((H, W), np.uint8)
    mask[16:48, 8:56] = 255
    msg = job("inpaint", "tiny-flux", [(CAR, LEFT), (LAKE, RIGHT)], image=payload(image), mask=payload(mask))
    msg["params"].update(grow=0, feather=0, strength=1.0)
    out = pixels(client.run(msg, timeout=300))
    outside = mask == 0
    assert np.array_equal(out[outside][:, :3], image.astype(np.int16)[outside][:, :3])


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


def test_families_without_regions_are_still_refused_by_name(client):
    with pytest.raises(JobFailed) as err:
        client.run(job("generate", "tiny-sd3", [(CAR, LEFT)]), timeout=300)
    error = err.value.error
    assert error.code == "unsupported" and error.field == "regions"
    assert "SD3" in error.message and "tiny-sd3" in error.message and "Flux.1" in error.message
