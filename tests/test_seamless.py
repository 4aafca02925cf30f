"""Seamless textures (``params.tileable``): results that wrap at their edges, on the tiny SD1.5 and the tiny Flux.1
through the real server, the upscale engine (Lanczos, a spandrel ESRGAN, upscale-and-refine), and the seam check.

A seam is judged over the results of a batch of seeds (``seamless.seam_check`` per picture, averaged): the difference
across the wrapped seam must be no larger than the inner neighbouring pixels' (10 % allowed: the seam is one pair of
rows among 63, and one pair's mean difference varies like any other's), and the correlation across it no lower than
theirs (a frame whose two edges are flat and alike has a small difference but no correlation).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from protocol.errors import ProtocolError
from server import seamless
from server.core import Job, JobContext
from server.router import FAMILIES
from server.upscale import run_upscale

MODELS = ("sd15", "flux", "sd3")
SIDE = 64
TOLERANCE = 0.1


def payload(arr: np.ndarray) -> dict:
    return {"width": arr.shape[1], "height": arr.shape[0], "format": "rgba8", "data": arr.tobytes()}


def generate(model: str, tileable: bool, **params) -> dict:
    return {
        "mode": "generate",
        "model": model,
        "prompt": "a brick wall, seamless texture",
        "params": {"steps": 4, "seed": 7, "batch": 4, "width": SIDE, "height": SIDE, "tileable": tileable, **params},
    }


def pictures(result) -> list:
    return [
        np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)[..., :3] for layer in result.layers
    ]


def seams(images) -> dict:
    """``seam_check`` of each picture, averaged."""
    reports = [seamless.seam_check(img) for img in images]
    return {key: float(np.mean([r[key] for r in reports])) for key in reports[0]}


def texture(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A random RGBA texture that wraps exactly (a sum of waves with whole periods across the picture)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for _ in range(12):
        fx, fy = rng.integers(0, 7, 2)
        phase = rng.uniform(0, 2 * np.pi, 3)
        img += rng.uniform(10, 25) * np.sin(2 * np.pi * (fx * x / w + fy * y / h)[..., None] + phase)
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = np.clip(128 + img, 0, 255)
    out[..., 3] = 255
    return out


# --- the parts --------------------------------------------------------------------------------------------------------


def test_circular_padding_is_put_back_also_when_the_job_fails():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Conv2d(4, 4, 1),
        torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    )
    with pytest.raises(RuntimeError, match="job failed"):
        with seamless.circular(net, None) as changed:
            assert changed == 2  # the 1x1 convolution has no padding to wrap
            assert [c.padding_mode for c in net] == ["circular", "zeros", "circular"]
            raise RuntimeError("job failed")
    assert [c.padding_mode for c in net] == ["zeros", "zeros", "reflect"]


def test_a_circular_convolution_net_commutes_with_rolling():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(4, 3, 3, padding=1))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad(), seamless.circular(net):
        assert torch.allclose(net(x.roll(5, -1)), net(x).roll(5, -1), atol=1e-6)
    with torch.no_grad():
        assert not torch.allclose(net(x.roll(5, -1)), net(x).roll(5, -1), atol=1e-3)


def test_the_latent_roller_returns_the_latents_to_where_they_started():
    roller = seamless.LatentRoller(3)
    x = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 4, 6, 8)
    y = x
    for _ in range(3):
        y = roller.step(y, last=False)
    assert torch.equal(roller.unrolled(y), x)
    assert torch.equal(roller.step(y, last=True), x) and roller.offset == (0, 0)


def test_fold_of_a_padded_texture_is_the_texture_and_makes_differing_copies_meet():
    tex = texture(40, 30)
    assert np.array_equal(seamless.fold(seamless.wrap_pad(tex, 6, 5), 6, 5, 40, 30), tex)
    padded = seamless.wrap_pad(tex, 6, 5).astype(np.float64)
    padded[..., :3] += np.linspace(0, 50, padded.shape[1])[None, :, None]  # as a refine drifts: smooth, but the two
    # copies of each edge band now differ by about 40
    folded = seamless.fold(np.clip(padded, 0, 255).astype(np.uint8), 6, 5, 40, 30).astype(np.float64)

    def jump(img):  # the mean difference across the left/right seam
        return np.abs(img[:, -1, :3] - img[:, 0, :3]).mean()

    assert jump(folded) < jump(tex.astype(np.float64)) + 3, "the copies meet half way: as continuous as the texture"
    assert jump(padded[5:35, 6:46]) > jump(tex.astype(np.float64)) + 15  # cropped only: a step of about 40


def test_the_seam_check_tells_a_texture_from_a_gradient_and_from_a_frame():
    assert seamless.continuous(seams([texture(48, 40, seed) for seed in range(6)]), TOLERANCE) is None
    ramp = np.tile(np.linspace(0, 255, 48)[None, :, None], (40, 1, 3))
    assert "x seam differs" in seamless.continuous(seamless.seam_check(ramp))
    rng = np.random.default_rng(1)
    framed = np.clip(128 + 60 * rng.standard_normal((40, 48, 3)), 0, 255)
    framed[:, :2] = framed[:, -2:] = framed[:2] = framed[-2:] = 128  # flat, alike edges: no difference at the seam
    assert "correlation" in seamless.continuous(seamless.seam_check(framed))


def test_wrapping_resize_keeps_a_texture_seamless_where_a_plain_resize_does_not():
    from server import imageops

    tex = texture(48, 36, seed=2)[..., :3]
    for w, h in ((80, 60), (32, 24), (61, 50)):  # enlarged, shrunk, and by a ratio that does not divide evenly
        truth = imageops.resize(np.tile(tex, (3, 3, 1)), 3 * w, 3 * h)[h : 2 * h, w : 2 * w]  # the middle copy of nine
        edges = np.zeros((h, w), bool)
        edges[:, :2] = edges[:, -2:] = edges[:2] = edges[-2:] = True
        wrapped = np.abs(seamless.resize(tex, w, h).astype(int) - truth)
        plain = np.abs(imageops.resize(tex, w, h).astype(int) - truth)
        assert wrapped.max() <= 2 + (w == 61) * 6, (w, h, wrapped.max())  # 61/48: margins not aligned, nearly right
        if w == 80:  # Lanczos reads across the edges (area averaging of a shrink need not)
            assert plain[edges].mean() > 1 + 4 * wrapped[edges].mean(), (w, h, plain[edges].mean())


# --- generate through the server --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-flux"])
def test_a_tileable_generate_wraps_at_its_edges_and_a_plain_one_does_not(client, model):
    tiled = client.run(generate(model, True), timeout=300)
    plain = client.run(generate(model, False), timeout=300)
    report = seams(pictures(tiled))
    assert seamless.continuous(report, TOLERANCE) is None, report
    assert seamless.continuous(seams(pictures(plain)), TOLERANCE) is not None, seams(pictures(plain))
    assert "circular padding" in tiled.layers[0].info["tileable"]
    if model == "tiny-flux":  # a flow model: its latents roll between steps (tiny-sd3's below)
        assert tiled.layers[0].info["tileable"] == "circular padding in the VAE, latents rolled between steps"
    assert "tileable" not in plain.layers[0].info


def test_flow_model_latents_roll_between_steps(client):
    """SD3's latents are not packed (Flux's are): rolled as they are, and the result wraps."""
    tiled = client.run(generate("tiny-sd3", True), timeout=300)
    assert tiled.layers[0].info["tileable"] == "circular padding in the VAE, latents rolled between steps"
    report, plain = seams(pictures(tiled)), seams(pictures(client.run(generate("tiny-sd3", False), timeout=300)))
    assert seamless.continuous(report, TOLERANCE) is None, report
    assert seamless.continuous(plain, TOLERANCE) is not None, plain


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-flux"])
def test_the_shared_pipeline_pads_as_before_after_a_tileable_job(client, server, model):
    before = client.run(generate(model, False, batch=1), timeout=300)
    client.run(generate(model, True, batch=1), timeout=300)
    after = client.run(generate(model, False, batch=1), timeout=300)
    assert before.layers[0].data == after.layers[0].data  # a later job is not affected
    router = server.server.router
    engine = router.diffusion if model == "tiny-sd15" else router.engine(FAMILIES)
    pipe = engine.loaded.pipe
    modules = [pipe.vae] + ([pipe.unet] if model == "tiny-sd15" else [])
    modes = {c.padding_mode for m in modules for c in m.modules() if isinstance(c, torch.nn.Conv2d)}
    assert modes == {"zeros"}


def test_a_tileable_img2img_and_hires_fix_wrap(client):
    msg = {
        "mode": "img2img",
        "model": "tiny-sd15",
        "prompt": "moss",
        "image": payload(texture(SIDE, SIDE)),
        "params": {"steps": 4, "seed": 3, "batch": 4, "strength": 0.8, "tileable": True},
    }
    report = seams(pictures(client.run(msg, timeout=300)))
    assert seamless.continuous(report, TOLERANCE) is None, report
    hires = generate("tiny-sd15", True, hires={"enabled": True, "scale": 1.5, "strength": 0.5})
    result = client.run(hires, timeout=300)
    report = seams(pictures(result))
    assert result.layers[0].width == SIDE and seamless.continuous(report, TOLERANCE) is None, report


def test_tileable_is_refused_by_name_where_no_whole_picture_is_made(client):
    mask = np.full((SIDE, SIDE), 255, np.uint8)
    msg = {
        "mode": "inpaint",
        "model": "tiny-sd15",
        "image": payload(texture(SIDE, SIDE)),
        "mask": {"width": SIDE, "height": SIDE, "format": "gray8", "data": mask.tobytes()},
        "params": {"tileable": True},
    }
    with pytest.raises(Exception) as err:
        client.run(msg, timeout=60)
    assert "params.tileable" in str(err.value) and "inpaint" in str(err.value)
    assert client.welcome.capabilities["tileable"] == ["generate", "img2img", "upscale"]


def test_paintbridge_run_generate_tileable_writes_a_seamless_texture(models_dir, tmp_path, paintbridge_cli):
    """``--tileable`` reaches the job and the written files wrap; the command line builds the same job for every
    family, whose seamless paths are each checked through the server above (tiny-flux's too)."""

    def run(*extra: str) -> list:
        out = tmp_path / f"out{len(extra)}.png"
        proc = paintbridge_cli(
            "run",
            "generate",
            "--width",
            str(SIDE),
            "--height",
            str(SIDE),
            "--prompt",
            "a brick wall",
            "--models",
            str(models_dir),
            "--model",
            "tiny-sd15",
            "--steps",
            "4",
            "--seed",
            "7",
            "--batch",
            "4",
            *extra,
            "--out",
            str(out),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return [np.asarray(Image.open(tmp_path / f"out{len(extra)}-{i}.png"))[..., :3] for i in range(1, 5)]

    tiled, plain = seams(run("--tileable")), seams(run())
    assert seamless.continuous(tiled, TOLERANCE) is None, tiled
    assert seamless.continuous(plain, TOLERANCE) is not None, plain


# --- upscale ----------------------------------------------------------------------------------------------------------


def upscale(image: np.ndarray, registry=None, refine_fn=None, **params) -> np.ndarray:
    from protocol.messages import Params

    job = Job(id="u", mode="upscale", image=image, params=Params(**{"scale": 2.0, **params}))
    return run_upscale(job, JobContext(), registry, refine_fn)[0].rgba


@pytest.fixture(scope="module")
def upscalers(paintbridge_cache):
    from server.models.registry import ModelRegistry
    from test_upscale import build_upscalers

    return ModelRegistry([build_upscalers(paintbridge_cache / "upscale-models")])


@pytest.mark.parametrize("upscaler", ["", "tiny-esrgan-x2"])
def test_a_tileable_upscale_keeps_a_texture_seamless(upscalers, upscaler):
    tex = texture(40, 32, seed=4)
    tiled = upscale(tex, upscalers, upscaler=upscaler, scale=2.5, tileable=True)
    plain = upscale(tex, upscalers, upscaler=upscaler, scale=2.5)
    assert tiled.shape == plain.shape == (80, 100, 4) and (tiled[..., 3] == 255).all()
    assert seamless.continuous(seamless.seam_check(tiled[..., :3]), TOLERANCE) is None, seamless.seam_check(tiled)
    assert seamless.continuous(seamless.seam_check(plain[..., :3]), TOLERANCE) is not None, seamless.seam_check(plain)


def test_a_tileable_upscale_and_refine_meets_at_the_seam():
    tex = texture(48, 48, seed=5)
    rng = np.random.default_rng(0)

    def refine(rgba: np.ndarray, strength: float, seed: int) -> np.ndarray:  # each tile drifts its own way
        out = rgba.astype(np.int16)
        out[..., :3] += np.random.default_rng(seed).integers(-30, 30, 3, dtype=np.int16)
        out[..., :3] += rng.integers(-3, 4, out[..., :3].shape, dtype=np.int16)
        return np.clip(out, 0, 255).astype(np.uint8)

    tiled = upscale(tex, None, refine, refine=0.3, tile=64, tileable=True)
    plain = upscale(tex, None, refine, refine=0.3, tile=64)
    assert tiled.shape == plain.shape == (96, 96, 4)
    assert seamless.continuous(seamless.seam_check(tiled[..., :3]), TOLERANCE) is None, seamless.seam_check(
        tiled[..., :3]
    )
    assert seamless.continuous(seamless.seam_check(plain[..., :3]), TOLERANCE) is not None


def test_tileable_is_a_typed_job_field():
    from protocol.messages import Job as JobMessage

    msg = JobMessage.from_wire(
        {"type": "job", "id": "t", "mode": "generate", "params": {"width": 64, "height": 64, "tileable": True}}
    )
    assert msg.params.tileable is True
    with pytest.raises(ProtocolError, match="params.tileable"):
        JobMessage.from_wire(
            {"type": "job", "id": "t", "mode": "generate", "params": {"width": 64, "height": 64, "tileable": "yes"}}
        )
