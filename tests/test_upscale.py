"""Upscale: spandrel upscalers built from random-weight RRDBNet state dicts (.pth with params_ema, .safetensors),
tiling, reaching the target scale, Lanczos, safe loading, seam-free tiled refine, and the real websocket server."""

from __future__ import annotations

import fcntl
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from protocol.client import Client, JobFailed
from protocol.errors import ProtocolError
from server.core import Job, JobCancelled, JobContext, Params
from server.models.registry import ModelRegistry
from server.upscale import run_upscale
from server.upscale.models import load_upscaler
from server.upscale.refine import refine_overlap
from server.upscale.scaling import plan_passes
from server.upscale.tiling import tile_grid, tile_weights

UPSCALERS = {  # name -> (scale, file suffix, wrapped in params_ema)
    "tiny-esrgan-x2": (2, ".pth", True),
    "tiny-esrgan-x2-st": (2, ".safetensors", False),
    "tiny-esrgan-x4": (4, ".safetensors", False),
}


def build_upscalers(models: Path) -> Path:
    """Random-weight ESRGAN (RRDBNet) upscalers in ``models/upscale_models/``, built with spandrel's own class.

    The x2 ``.pth`` and ``.safetensors`` hold the same weights. The last conv is scaled so outputs span mid-tones.
    """
    folder, partial = models / "upscale_models", models / "upscale_models.partial"
    models.mkdir(parents=True, exist_ok=True)
    # beside the models folder, which the tests' registries read: test modules on other workers build the same one
    with open(models.with_name(models.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((folder / (name + suffix)).is_file() for name, (_, suffix, _) in UPSCALERS.items()):
            return models
        _write_upscalers(partial)
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    return models


def _write_upscalers(tmp: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    tmp.mkdir(parents=True, exist_ok=True)
    states = {}
    for scale in (2, 4):
        torch.manual_seed(scale)
        state = ESRGAN(num_filters=8, num_blocks=1, scale=scale).state_dict()
        *_, last_weight, last_bias = state
        state[last_weight] = state[last_weight] * 8
        state[last_bias] = state[last_bias] + 0.5
        states[scale] = {k: v.contiguous() for k, v in state.items()}
    for name, (scale, suffix, wrapped) in UPSCALERS.items():
        path = tmp / (name + suffix)
        if suffix == ".pth":
            torch.save({"params_ema": states[scale]} if wrapped else states[scale], path)
        else:
            save_file(states[scale], str(path))


@pytest.fixture(scope="module")
def models(paintbridge_cache) -> Path:
    return build_upscalers(paintbridge_cache / "upscale-models")


@pytest.fixture(scope="module")
def registry(models) -> ModelRegistry:
    return ModelRegistry([models])


def picture(w: int = 64, h: int = 64) -> np.ndarray:
    """Opaque RGBA: gradients, a filled rectangle and a circle (edges and flat areas)."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = xs * 255 // max(1, w - 1)
    img[..., 1] = ys * 255 // max(1, h - 1)
    img[..., 2] = 128
    img[..., 3] = 255
    cv2.rectangle(img, (w // 8, h // 6), (w // 2, h // 2), (220, 40, 90, 255), thickness=-1)
    cv2.circle(img, (3 * w // 4, 2 * h // 3), min(w, h) // 6, (30, 200, 60, 255), thickness=-1)
    return img


def upscale_job(image: np.ndarray, **params) -> Job:
    return Job(id="u", mode="upscale", image=image, params=Params(**params), x=10, y=6)


def run(job: Job, registry, refine=None, ctx=None):
    (layer,) = run_upscale(job, ctx or JobContext(), registry, refine)
    return layer


# --- tiles ------------------------------------------------------------------------------------------------------------


def test_tile_grid_covers_the_image_and_weights_sum_to_one():
    tiles = tile_grid(200, 130, 64, 16)
    total = np.zeros((130, 200), np.float32)
    for t in tiles:
        assert t.width == 64 and t.height == 64
        total[t.y0 : t.y1, t.x0 : t.x1] += tile_weights(t)
    assert np.allclose(total, 1.0, atol=1e-5)
    assert tile_grid(50, 40, 64, 16)[0].width == 50  # an image smaller than a tile is one tile


def test_plan_passes_reaches_the_target_without_wasting_passes():
    assert plan_passes(4, 4.0) == [4.0]
    assert plan_passes(4, 2.0) == [2.0]  # one pass, tiles shrunk on the fly
    assert plan_passes(2, 4.0) == [2.0, 2.0]
    assert plan_passes(2, 3.0) == [2.0, 1.5]
    assert plan_passes(4, 5.0) == [4.0]  # 1.25x left: Lanczos
    assert plan_passes(1, 2.0) == [1.0]  # a 1x restoration model, then Lanczos


# --- model upscalers --------------------------------------------------------------------------------------------------


@pytest.mark.engine  # loads a model or starts a server process
def test_pth_and_safetensors_upscalers_load_through_the_registry(registry):
    listed = {e.name for e in registry.entries("upscaler")}
    assert set(UPSCALERS) <= listed
    image = picture()
    a = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=2.0), registry)
    b = run(upscale_job(image, upscaler="tiny-esrgan-x2-st", scale=2.0), registry)
    assert a.rgba.shape == (128, 128, 4) and (a.x, a.y) == (20, 12)
    assert np.array_equal(a.rgba, b.rgba), "the same weights give the same result from .pth and .safetensors"
    assert (a.rgba[..., 3] == 255).all()
    assert a.rgba[..., :3].std() > 20, "a real image came out"
    assert "tiny-esrgan-x2" in a.name and a.info["upscaler"] == "tiny-esrgan-x2"


@pytest.mark.engine  # loads a model or starts a server process
def test_tiled_and_untiled_agree(registry):
    image = picture(96, 80)
    whole = run(upscale_job(image, upscaler="tiny-esrgan-x4", scale=4.0), registry).rgba
    steps = []
    ctx = JobContext(lambda step, total, preview: steps.append((step, total)))
    tiled = run(upscale_job(image, upscaler="tiny-esrgan-x4", scale=4.0, tile=40), registry, ctx=ctx).rgba
    assert whole.shape == tiled.shape == (320, 384, 4)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8
    n = len(tile_grid(96, 80, 40, 32))
    assert n > 4 and steps == [(i, n) for i in range(1, n + 1)]


@pytest.mark.engine  # loads a model or starts a server process
def test_scale_between_model_passes(registry):
    image = picture(40, 30)
    three = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=3.0), registry).rgba
    assert three.shape == (90, 120, 4)
    two_of_four = run(upscale_job(image, upscaler="tiny-esrgan-x4", scale=2.0), registry)
    assert two_of_four.rgba.shape == (60, 80, 4) and (two_of_four.x, two_of_four.y) == (20, 12)
    odd = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=1.3), registry).rgba
    assert odd.shape == (39, 52, 4)


@pytest.mark.engine  # loads a model or starts a server process
def test_a_tile_out_of_memory_is_split_and_retried(registry, monkeypatch):
    """A device that cannot hold tiles over 40 px: the upscale still completes, matching the untiled result."""
    import torch
    from server.upscale import scaling

    real = scaling.run_model
    sizes = []

    def small_memory(model, pixels):
        sizes.append(max(pixels.shape[:2]))
        if max(pixels.shape[:2]) > 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, pixels)

    image = picture(96, 96)
    whole_layer = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=2.0), registry)
    whole = whole_layer.rgba
    assert "memory_fallbacks" not in whole_layer.info
    monkeypatch.setattr(scaling, "run_model", small_memory)
    steps = []
    ctx = JobContext(lambda step, total, preview: steps.append((step, total)))
    layer = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=2.0, tile=64), registry, ctx=ctx)
    split = layer.rgba
    assert 64 in sizes and 32 in sizes
    assert layer.info["memory_fallbacks"] == ["upscaler tiles of 32 px"], "the result says what it did"
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)], "progress still counts the planned tiles"
    diff = np.abs(whole.astype(int) - split.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8

    monkeypatch.setattr(scaling, "MIN_MODEL_TILE", 48)
    with pytest.raises(ProtocolError) as err:
        run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=2.0, tile=64), registry)
    assert err.value.code == "out_of_memory" and "64x64" in err.value.message


@pytest.mark.engine  # loads a model or starts a server process
def test_model_upscale_keeps_transparency(registry):
    image = picture()
    image[:, :20, 3] = 0
    out = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=2.0), registry).rgba
    assert (out[:, :36, 3] == 0).all() and (out[:, 44:, 3] == 255).all()


def test_lanczos_when_no_upscaler_is_chosen():
    image = picture()
    steps = []
    layer = run(upscale_job(image, scale=2.5), None, ctx=JobContext(lambda s, t, p: steps.append((s, t))))
    assert layer.rgba.shape == (160, 160, 4) and (layer.x, layer.y) == (25, 15)
    expected = cv2.resize(image[..., :3], (160, 160), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(layer.rgba[..., :3].astype(int) - expected.astype(int)).max() <= 1
    assert "Lanczos" in layer.name and steps[-1] == (1, 1)


def test_lanczos_of_a_transparent_layer_has_no_dark_fringe():
    image = np.zeros((32, 32, 4), np.uint8)  # transparent black around an opaque red square
    image[8:24, 8:24] = (255, 0, 0, 255)
    out = run(upscale_job(image, scale=4.0), None).rgba
    seen = out[..., 3] > 8
    assert seen.sum() > 60 * 60
    assert out[seen][:, 0].min() >= 250 and out[seen][:, 1:3].max() <= 5


@pytest.mark.engine  # loads a model or starts a server process
def test_unknown_upscaler_is_model_not_found(registry):
    with pytest.raises(ProtocolError) as err:
        run(upscale_job(picture(), upscaler="4x-UltraSharp"), registry)
    assert err.value.code == "model_not_found" and "tiny-esrgan-x2" in err.value.message


class Trap:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pth_holding_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    (tmp_path / "upscale_models").mkdir()
    evil = tmp_path / "upscale_models" / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"params_ema": {"model.0.weight": Trap(marker)}}, fh, protocol=2)
    registry = ModelRegistry([tmp_path])
    with pytest.raises(ProtocolError) as err:
        run(upscale_job(picture(), upscaler="evil"), registry)
    assert err.value.code == "unsupported" and "safetensors" in err.value.message
    assert not marker.exists()


def test_a_file_that_is_not_an_upscaler_says_so(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "notes.safetensors"
    save_file({"foo.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ProtocolError) as err:
        load_upscaler(path, "cpu")
    assert err.value.code == "unsupported" and "notes.safetensors" in err.value.message


def test_too_large_a_result_is_refused_before_any_work():
    image = np.zeros((3000, 3000, 4), np.uint8)
    with pytest.raises(ProtocolError) as err:
        run(upscale_job(image, scale=8.0), None)
    assert err.value.code == "too_large" and err.value.field == "params.scale"


@pytest.mark.engine  # loads a model or starts a server process
def test_cancel_stops_between_tiles(registry):
    calls = []
    ctx = JobContext(lambda step, total, preview: (calls.append(step), ctx.cancel()))
    with pytest.raises(JobCancelled):
        run(upscale_job(picture(96, 96), upscaler="tiny-esrgan-x2", tile=32), registry, ctx=ctx)
    assert calls == [1]


# --- tiled refine -----------------------------------------------------------------------------------------------------


def drifting_img2img(rgba: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """A deterministic img2img stand-in with refine's failure modes: every tile comes back brighter or darker,
    tinted, with a slightly different contrast, and with fresh noise (all decided by the seed)."""
    rng = np.random.default_rng(seed)
    rgb = rgba[..., :3].astype(np.float32)
    gain = 1.0 + rng.uniform(-0.15, 0.15) * strength
    offset = rng.uniform(-40, 40, size=3) * strength
    noisy = (rgb - 128.0) * gain + 128.0 + offset + rng.normal(0, 4.0, rgb.shape)
    out = rgba.copy()
    out[..., :3] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def smooth_gradient(w: int = 64, h: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = np.rint(40 + 160 * xs / (w - 1))
    img[..., 1] = np.rint(60 + 120 * ys / (h - 1))
    img[..., 2] = np.rint(200 - 80 * (xs + ys) / (w + h - 2))
    img[..., 3] = 255
    return img


def border_and_inner_jumps(image: np.ndarray, tiles) -> tuple:
    """Largest step between neighbouring pixels across tile borders, and everywhere else."""
    rgb = image[..., :3].astype(np.int32)
    dx = np.abs(np.diff(rgb, axis=1)).max(axis=2)  # dx[:, x] is the step between columns x and x+1
    dy = np.abs(np.diff(rgb, axis=0)).max(axis=2)
    cols = {x for t in tiles for x in (t.x0 - 1, t.x1 - 1) if 0 <= x < dx.shape[1]}
    rows = {y for t in tiles for y in (t.y0 - 1, t.y1 - 1) if 0 <= y < dy.shape[0]}
    border = max(dx[:, sorted(cols)].max(initial=0), dy[sorted(rows), :].max(initial=0))
    inner_cols = [x for x in range(dx.shape[1]) if x not in cols]
    inner_rows = [y for y in range(dy.shape[0]) if y not in rows]
    inner = max(dx[:, inner_cols].max(), dy[inner_rows, :].max())
    return border, inner


def naive_tiled(image: np.ndarray, tiles, refine) -> np.ndarray:
    """Tiles refined and pasted side by side without blending or colour correction (what the real code avoids)."""
    out = image.copy()
    for t in tiles:
        out[t.y0 : t.y1, t.x0 : t.x1] = refine(image[t.y0 : t.y1, t.x0 : t.x1], 0.5, 1000 + t.index)
    return out


def test_tiled_refine_of_a_smooth_gradient_shows_no_seam():
    source = smooth_gradient()
    job = upscale_job(source, scale=4.0, refine=0.5, tile=64, seed=1000)
    steps = []
    layer = run(job, None, drifting_img2img, ctx=JobContext(lambda s, t, p: steps.append((s, t))))
    out = layer.rgba
    upscaled = run(upscale_job(source, scale=4.0), None).rgba
    tiles = tile_grid(256, 256, 64, refine_overlap(64))
    assert len(tiles) == 25 and steps == [(i, 25) for i in range(1, 26)]
    assert layer.seed == 1000 and "refined 0.5" in layer.name

    border, inner = border_and_inner_jumps(out, tiles)
    assert border <= inner, f"a seam: {border} across tile borders, at most {inner} inside tiles"
    # No drift: the refined image keeps the upscaled image's colours at every scale above the noise.
    blur = lambda img: cv2.GaussianBlur(img[..., :3].astype(np.float32), (0, 0), 6)  # noqa: E731
    assert np.abs(blur(out) - blur(upscaled)).max() < 6
    assert np.abs(out[..., :3].astype(int) - upscaled[..., :3].astype(int)).std() > 1.5, "the refine's detail is kept"

    # The same stand-in pasted tile by tile does show seams and drift: the measure above can fail.
    naive = naive_tiled(upscaled, tiles, drifting_img2img)
    naive_border, naive_inner = border_and_inner_jumps(naive, tiles)
    assert naive_border > naive_inner
    assert np.abs(blur(naive) - blur(upscaled)).max() > 10


def test_refine_uses_one_seed_per_tile_and_keeps_alpha():
    seen = []

    def recording(rgba, strength, seed):
        seen.append((rgba.shape, strength, seed))
        return drifting_img2img(rgba, strength, seed)

    source = smooth_gradient(40, 40)
    source[:10, :, 3] = 0
    out = run(upscale_job(source, scale=2.0, refine=0.3, tile=48, seed=7), None, recording).rgba
    assert [s for _, _, s in seen] == [7, 8, 9, 10]
    assert all(shape == (48, 48, 4) and strength == 0.3 for shape, strength, _ in seen)
    assert (out[:18, :, 3] == 0).all() and (out[22:, :, 3] == 255).all()


def test_refine_without_a_checkpoint_says_what_to_install():
    with pytest.raises(ProtocolError) as err:
        run(upscale_job(picture(), refine=0.4), None, refine=None)
    assert err.value.code == "model_not_found" and "checkpoint" in err.value.message
    assert err.value.field == "params.refine"


# --- through the real websocket server --------------------------------------------------------------------------------


def payload(arr: np.ndarray) -> dict:
    arr = np.ascontiguousarray(arr)
    return {"width": arr.shape[1], "height": arr.shape[0], "format": "rgba8", "data": arr.tobytes()}


def test_upscale_through_the_websocket_server(start_server, models):
    server = start_server(model_dirs=[models])
    image = picture()
    with Client(server.url) as client:
        assert {"tiny-esrgan-x2", "tiny-esrgan-x4"} <= {
            m["name"] for m in client.list_models() if m["kind"] == "upscaler"
        }
        events = []
        job = {
            "mode": "upscale",
            "image": payload(image),
            "x": 8,
            "y": 4,
            "params": {"upscaler": "tiny-esrgan-x2", "scale": 2.0, "tile": 32},
        }
        result = client.run(job, on_event=events.append, timeout=120)
        (layer,) = result.layers
        assert (layer.x, layer.y, layer.width, layer.height) == (16, 8, 128, 128)
        pixels = np.frombuffer(layer.data, np.uint8).reshape(128, 128, 4)
        local = run(upscale_job(image, upscaler="tiny-esrgan-x2", scale=2.0, tile=32), ModelRegistry([models])).rgba
        assert np.array_equal(pixels, local)
        progress = [(e.step, e.total) for e in events if e.type == "progress"]
        n = len(tile_grid(64, 64, 32, 32))
        assert n == 9 and progress == [(i, n) for i in range(1, n + 1)]

        lanczos = client.run(dict(job, params={"scale": 1.5}), timeout=60).layers[0]
        assert (lanczos.width, lanczos.height, lanczos.x, lanczos.y) == (96, 96, 12, 6)

        with pytest.raises(JobFailed) as err:
            client.run(dict(job, params={"scale": 2.0, "refine": 0.3}), timeout=60)
        assert err.value.code == "model_not_found" and "checkpoint" in str(err.value)


@pytest.fixture(scope="module")
def checkpoint_models(tmp_path_factory):
    from tests.factory import make_models_dir

    return make_models_dir(tmp_path_factory.mktemp("refine-models"), which=("sd15",))


def test_upscale_and_refine_end_to_end_with_a_tiny_checkpoint(start_server, models, checkpoint_models):
    """Model upscale, then img2img over 4 overlapping tiles through the real diffusion engine (tiny SD1.5)."""
    server = start_server(model_dirs=[checkpoint_models, models])
    image = smooth_gradient(48, 48)
    job = {
        "mode": "upscale",
        "image": payload(image),
        "prompt": "an oil painting",
        "params": {"upscaler": "tiny-esrgan-x2", "scale": 2.0, "refine": 0.3, "tile": 64, "seed": 5, "steps": 4},
    }
    with Client(server.url) as client:
        events = []
        result = client.run(job, on_event=events.append, timeout=300)
        plain = client.run(dict(job, params=dict(job["params"], refine=0.0)), timeout=120).layers[0]
    (layer,) = result.layers
    assert (layer.width, layer.height, layer.seed) == (96, 96, 5)
    refined = np.frombuffer(layer.data, np.uint8).reshape(96, 96, 4)
    upscaled = np.frombuffer(plain.data, np.uint8).reshape(96, 96, 4)
    assert (refined[..., 3] == 255).all()
    n_refine = len(tile_grid(96, 96, 64, refine_overlap(64)))
    progress = [(e.step, e.total) for e in events if e.type == "progress"]
    assert n_refine == 4 and progress[-1] == (1 + n_refine, 1 + n_refine)
    # The refine changed the picture, but the colour correction kept it on the upscaled image's colours.
    diff = np.abs(refined[..., :3].astype(int) - upscaled[..., :3].astype(int))
    assert diff.mean() > 0.5
    # (Random weights paint strong noise; uncorrected, this drift measured 59 levels, corrected 5.)
    blur = lambda img: cv2.GaussianBlur(img[..., :3].astype(np.float32), (0, 0), 16)  # noqa: E731
    assert np.abs(blur(refined) - blur(upscaled)).max() < 12


def test_refine_tiles_are_guided_by_a_tile_controlnet_when_one_is_installed(start_server, checkpoint_models, tmp_path):
    """A ControlNet named like lllyasviel's tile model (any tiny SD1.5 ControlNet under that name) guides each tile."""
    from tests.factory import controlnet_path

    tile_models = tmp_path / "tile-models"
    (tile_models / "controlnet").mkdir(parents=True)
    (tile_models / "controlnet" / "control_v11f1e_tiny_sd15_tile").symlink_to(controlnet_path("cn-sd15-depth"))
    job = {
        "mode": "upscale",
        "image": payload(smooth_gradient(48, 48)),
        "prompt": "an oil painting",
        "params": {"scale": 2.0, "refine": 0.3, "tile": 64, "seed": 5, "steps": 3},
    }
    for dirs, expect_tile in (([checkpoint_models], False), ([checkpoint_models, tile_models], True)):
        server = start_server(model_dirs=dirs)
        with Client(server.url) as client:
            (layer,) = client.run(job, timeout=300).layers
        assert (layer.width, layer.height) == (96, 96)
        used = list(server.server.router.diffusion.parts.controlnets)
        assert bool(used) == expect_tile and all("tile" in path for path in used)
