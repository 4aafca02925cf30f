"""The fills: exemplar-based "patch" (the default), smooth "telea"/"ns", the LaMa network "lama", and colour match.

Quality is judged on a real photo (scikit-image's public-domain astronaut, tests/data/astronaut.png) and on a pattern
whose true content under the hole is known; the side-by-side comparison is kept as test-artifacts/fill-astronaut.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from protocol.client import Client, JobFailed
from server import imageops
from server.patchfill import patch_fill
from tests.fillcases import detail_ratio, ellipse, photo_960x540, stripes
from tests.images import layer_pixels, payload, rect_mask, rgba_image

REPO = Path(__file__).resolve().parent.parent


# --- quality ---------------------------------------------------------------------------------------------------------


def test_patch_fill_carries_the_photos_texture_into_a_hole_where_telea_blurs(artifacts_dir):
    """960 x 540 photo, an ellipse 15 % of its width over the fabric of the suit: telea's fill is a blur (a fifth of
    the surroundings' fine detail), the exemplar fill keeps most of it. The side-by-side goes to the artifacts."""
    img = photo_960x540()
    mask = ellipse(img.shape[:2], (200, 420), int(0.15 * img.shape[1]))
    telea = imageops.fill(img, mask, "telea")
    patch = imageops.fill(img, mask, "patch")
    matched = imageops.color_match(patch, img, mask)
    ratios = {name: detail_ratio(out, mask) for name, out in (("telea", telea), ("patch", patch))}
    assert ratios["telea"] < 0.3, ratios
    assert ratios["patch"] > 0.45 and ratios["patch"] > 2 * ratios["telea"], ratios
    for out in (telea, patch, matched):
        assert np.array_equal(out[mask == 0], img[mask == 0])
    # The fill's colour belongs to the surroundings (orange fabric), not to what was under the hole.
    ring = (cv2.dilate(mask, np.ones((31, 31), np.uint8)) > 0) & (mask == 0)
    assert np.abs(patch[mask > 0].mean(axis=0) - img[ring].mean(axis=0)).max() < 30
    # Side by side: the hole, telea, patch, patch + colour match, crops around the hole, 2x.
    x0, y0 = 200 - 150, 420 - 110
    holed = img.copy()
    holed[mask > 0] = (255, 0, 255)
    panels = [
        cv2.resize(p[y0 : y0 + 220, x0 : x0 + 300], (600, 440), interpolation=cv2.INTER_NEAREST)
        for p in (holed, telea, patch, matched)
    ]
    for panel, label in zip(panels, ("hole", "telea", "patch", "patch + colour match")):
        cv2.putText(panel, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
    cv2.imwrite(str(artifacts_dir / "fill-astronaut.png"), cv2.cvtColor(np.hstack(panels), cv2.COLOR_RGB2BGR))


def test_patch_fill_restores_a_pattern_exactly_where_telea_cannot():
    img = stripes()
    hole = np.zeros(img.shape[:2], np.uint8)
    hole[44:84, 60:100] = 255
    errors = {
        m: np.abs(imageops.fill(img, hole, m).astype(int) - img.astype(int))[hole > 0].mean()
        for m in ("telea", "patch")
    }
    assert errors["patch"] < 5 and errors["telea"] > 30, errors


def test_outpaint_with_patch_continues_the_pattern_into_the_new_bands():
    wide = stripes(128, 192)
    image = imageops.rgba(np.ascontiguousarray(wide[:, 32:160]))
    layer = imageops.outpaint_layer(image, imageops.Extend(left=32, right=32), "patch")
    assert np.array_equal(layer[:, 32:160, :3], wide[:, 32:160]) and (layer[:, 32:160, 3] == 0).all()
    assert (layer[:, :32, 3] == 255).all() and (layer[:, 160:, 3] == 255).all()
    error = np.abs(layer[..., :3].astype(int) - wide.astype(int))
    assert error[:, :32].mean() < 10 and error[:, 160:].mean() < 10


def test_an_8px_outpaint_band_is_filled_on_its_neighbourhood_with_the_full_fills_quality(monkeypatch):
    """The photo with an 8 px frame cut off and outpainted back: the thin-band fill (centres on a grid, search nearby)
    comes within 20 % of the full exemplar fill's error against the true frame and stays far better than telea; the
    image itself is untouched."""
    import server.patchfill as patchfill

    photo = photo_960x540()
    inner = imageops.rgba(np.ascontiguousarray(photo[8:-8, 8:-8]))

    def band_error(method: str) -> float:
        layer = imageops.outpaint_layer(inner, imageops.Extend(8, 8, 8, 8), method)
        assert np.array_equal(layer[8:-8, 8:-8, :3], inner[..., :3]) and not layer[8:-8, 8:-8, 3].any()
        new = layer[..., 3] > 0
        assert new.sum() == photo.shape[0] * photo.shape[1] - inner.shape[0] * inner.shape[1]
        return float(np.abs(layer[..., :3].astype(int) - photo.astype(int))[new].mean())

    targets = []
    real = patchfill._Level.__init__

    def counted(level, img, hole, grid=1):
        real(level, img, hole, grid)
        targets.append((int(np.count_nonzero(hole)), len(level.ty), grid))

    monkeypatch.setattr(patchfill._Level, "__init__", counted)
    thin, telea = band_error("patch"), band_error("telea")
    assert targets and all(grid == patchfill.THIN_STRIDE and n <= holes / 4 for holes, n, grid in targets), targets
    monkeypatch.setattr(patchfill, "THIN", 0)  # every hole filled the full way
    full = band_error("patch")
    assert thin <= 1.2 * full and thin < 0.6 * telea, (thin, full, telea)


def test_only_thin_holes_are_matched_on_a_grid():
    from server.patchfill import is_thin

    band, scratch, blob = (np.zeros((200, 300), np.uint8) for _ in range(3))
    band[:8] = 255
    cv2.line(scratch, (10, 20), (280, 180), 255, 9)
    blob[50:150, 50:200] = 255
    assert is_thin(band) and is_thin(scratch) and not is_thin(blob) and not is_thin(band[:, :40])
    img = photo_960x540()[100:300, 300:600]
    out = patch_fill(img, scratch)
    assert np.array_equal(out[scratch == 0], img[scratch == 0])
    assert np.abs(out.astype(int) - img.astype(int))[scratch > 0].mean() < 40


def test_an_outpaint_bands_fill_works_on_its_strip_whatever_the_canvas(monkeypatch):
    """The exemplar fill of an 8 px band gets the band's strip (the band and the margin it reads), never the canvas:
    the same left band on a canvas 4x wider costs the same (the fill sees crops of the same sizes, and the same
    pixels give the same band)."""
    import server.patchfill as patchfill

    seen = []

    def recorded(rgb, hole, check=lambda: None, seed=0):
        seen.append(hole.shape)
        return patchfill.patch_fill(rgb, hole, check, seed)

    monkeypatch.setattr(imageops, "patch_fill", recorded)
    photo = photo_960x540()[:, :480]
    bands = []
    for width in (480, 1920):
        seen.clear()
        canvas = np.ascontiguousarray(np.tile(photo, (1, width // 480, 1)))
        layer = imageops.outpaint_layer(imageops.rgba(canvas), imageops.Extend(left=8), "patch")
        assert seen == [(photo.shape[0], 8 + imageops.CONTEXT_MARGIN[0])], seen
        bands.append(layer[:, :8, :3])
    assert np.array_equal(bands[0], bands[1])


def test_a_long_thin_bands_strip_reaches_the_exemplar_fill_unreduced(monkeypatch):
    """An 8 px band along a 4800 px side: its strip (over MAX_CONTEXT_AREA) is filled at full size, as the thin fill's
    cost grows with the band (reducing it would blur the band); a wide hole's crop of the same area is reduced."""
    import server.patchfill as patchfill

    seen = []

    def recorded(rgb, hole, check=lambda: None, seed=0):
        seen.append(hole.shape)
        return patchfill.patch_fill(rgb, hole, check, seed)

    monkeypatch.setattr(imageops, "patch_fill", recorded)
    img = np.ascontiguousarray(np.tile(photo_960x540()[:40], (1, 5, 1)))
    band = np.zeros(img.shape[:2], np.uint8)
    band[:8] = 255
    assert band.size > imageops.MAX_CONTEXT_AREA
    out = imageops.fill(img, band, "patch")
    assert seen == [band.shape] and np.array_equal(out[8:], img[8:])
    seen.clear()
    imageops.fill(img, np.full_like(band, 255) - band, "patch")  # 32 px deep: not thin
    ((h, w),) = seen
    assert h * w <= imageops.MAX_CONTEXT_AREA * 1.01


def test_patch_distances_are_the_squared_differences_of_the_patches():
    """The matching's distances (patches gathered as runs of 7 pixels along their rows) are the plain sums of squared RGB
    differences of the 7 x 7 patches, within float32 rounding."""
    from server.patchfill import PATCH, RADIUS, _Field, _Level

    img = photo_960x540()[100:160, 200:300].astype(np.float32)
    hole = np.zeros(img.shape[:2], bool)
    hole[20:40, 30:60] = True
    level = _Level(img, hole)
    rng = np.random.default_rng(5)
    sy, sx = level.random_sources(len(level.ty), rng)
    field = _Field(level, sy, sx)
    padded = cv2.copyMakeBorder(img, RADIUS, RADIUS, RADIUS, RADIUS, cv2.BORDER_REFLECT)

    def patch(y, x):
        return padded[y : y + PATCH, x : x + PATCH].astype(np.float64)

    direct = np.array([((patch(ty, tx) - patch(y, x)) ** 2).sum() for ty, tx, y, x in zip(level.ty, level.tx, sy, sx)])
    assert np.allclose(field.cost, direct, rtol=1e-5), np.abs(field.cost - direct).max()


# --- behaviour of the exemplar fill ----------------------------------------------------------------------------------


def test_patch_fill_changes_only_the_hole_and_repeats_for_a_seed():
    img = photo_960x540()[300:428, 100:260]
    hole = rect_mask(160, 128, (60, 40, 100, 80))
    first, again = patch_fill(img, hole, seed=3), patch_fill(img, hole, seed=3)
    assert np.array_equal(first, again)
    assert np.array_equal(first[hole == 0], img[hole == 0]) and not np.array_equal(first[hole > 0], img[hole > 0])
    assert np.array_equal(patch_fill(img, np.zeros_like(hole)), img)


def test_patch_fill_checks_for_cancellation_between_iterations_and_stops():
    img, hole = stripes(), rect_mask(160, 128, (50, 30, 110, 90))
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        patch_fill(img, hole, check)
    assert len(calls) == 3


def test_a_hole_with_nothing_around_to_copy_gets_a_smooth_fill():
    img = stripes(40, 40)
    hole = np.full((40, 40), 255, np.uint8)
    hole[:2] = 0  # two known rows: no whole 7 x 7 patch anywhere
    out = patch_fill(img, hole)
    assert np.array_equal(out[:2], img[:2]) and out.shape == img.shape


def test_large_document_fills_only_a_bounded_crop_around_the_hole():
    """A 4000 x 3000 picture with a 1500 x 1200 hole: the fill function sees a crop of at most MAX_CONTEXT_AREA px
    (the hole's box plus its margin, reduced), never the document."""
    img = np.zeros((3000, 4000, 3), np.uint8)
    img[::2] = 90
    hole = np.zeros((3000, 4000), np.uint8)
    hole[1000:2200, 1200:2700] = 255
    seen = []

    def record(rgb, hard, check):
        seen.append(hard.shape)
        return np.full_like(rgb, 7)

    out = imageops.fill(img, hole, record)
    ((h, w),) = seen
    assert h * w <= imageops.MAX_CONTEXT_AREA * 1.01
    assert (out[hole > 0] == 7).all() and np.array_equal(out[hole == 0], img[hole == 0])


def test_margin_read_grows_with_the_hole_within_bounds():
    assert imageops.fill_margin("telea", 500, 500) == imageops.FILL_MARGIN
    low, high = imageops.CONTEXT_MARGIN
    assert imageops.fill_margin("patch", 10, 8) == low and imageops.fill_margin("patch", 4000, 10) == high
    assert imageops.fill_margin("patch", 200, 100) == 100


# --- colour match ----------------------------------------------------------------------------------------------------


def test_color_match_moves_the_colours_inside_the_mask_to_those_around_it():
    original = np.full((64, 64, 3), (120, 140, 90), np.uint8)
    mask = rect_mask(64, 64, (20, 20, 44, 44))
    result = original.copy()
    result[mask > 0] = (190, 100, 60)  # a colour cast inside
    matched = imageops.color_match(result, original, mask)
    assert np.array_equal(matched[mask == 0], original[mask == 0])
    assert np.abs(matched[mask > 0].astype(int) - (120, 140, 90)).max() <= 3


def test_color_match_keeps_texture_and_an_empty_mask_changes_nothing():
    img = photo_960x540()[300:428, 100:260]
    mask = rect_mask(160, 128, (60, 40, 100, 80))
    shifted = img.copy()
    shifted[mask > 0] = np.clip(shifted[mask > 0].astype(int) + 40, 0, 255).astype(np.uint8)
    matched = imageops.color_match(shifted, img, mask)
    assert np.abs(matched[mask > 0].mean(axis=0) - img[mask > 0].mean(axis=0)).max() < 25
    assert matched[mask > 0].std() > 0.5 * img[mask > 0].std()
    assert np.array_equal(imageops.color_match(img, img, np.zeros_like(mask)), img)


# --- through the server ----------------------------------------------------------------------------------------------


def classical_job(fill: str, **params) -> dict:
    img, mask = rgba_image(), rect_mask()
    return {
        "mode": "inpaint",
        "model": "classical",
        "image": payload(img, "rgba8"),
        "mask": payload(mask, "gray8"),
        "params": {"grow": 0, "feather": 0, "fill": fill, **params},
    }


def test_the_default_fill_is_patch_and_every_fill_runs_on_the_server(start_server):
    server = start_server()
    img, mask = rgba_image(), rect_mask()
    with Client(server.url, "test") as client:
        default = client.run(dict(classical_job("patch"), params={"grow": 0, "feather": 0}))
        assert "patch" in default.layers[0].name
        for fill in ("patch", "telea", "ns"):
            for match in (False, True):
                layer = client.run(classical_job(fill, color_match=match)).layers[0]
                px = layer_pixels(layer)
                assert fill in layer.name
                assert np.array_equal(px[mask == 0][:, :3], img[mask == 0][:, :3])
                assert (px[..., 3][mask > 0] == 255).all()


def test_lama_without_weights_names_the_pull(start_server):
    server = start_server()
    with Client(server.url, "test") as client:
        with pytest.raises(JobFailed) as err:
            client.run(classical_job("lama"))
    assert err.value.error.code == "model_not_found"
    assert "paintbridge models pull lama" in err.value.error.message and "inpaint" in err.value.error.message


def _save_random_lama(path: Path, pickle: bool = False) -> None:
    """A LaMa network with random weights, spandrel's architecture, saved as users download it."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in LaMa(in_nc=4, out_nc=3).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if pickle:
        torch.save(state, path)
    else:
        save_file(state, str(path))


@pytest.fixture(scope="module")
def lama_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lama-models")
    _save_random_lama(root / "inpaint" / "big-lama.safetensors")
    return root


def test_lama_fills_inpaint_and_outpaint_through_the_real_server(start_server, lama_models):
    server = start_server(model_dirs=[lama_models])
    img, mask = rgba_image(), rect_mask()
    with Client(server.url, "test") as client:
        assert any(m["kind"] == "inpainter" and m["name"].startswith("big-lama") for m in client.welcome.models)
        layer = client.run(classical_job("lama", color_match=True)).layers[0]
        px = layer_pixels(layer)
        assert "lama" in layer.name
        assert np.array_equal(px[mask == 0][:, :3], img[mask == 0][:, :3])
        assert not np.array_equal(px[mask > 0][:, :3], img[mask > 0][:, :3])
        out = client.run(
            {
                "mode": "outpaint",
                "model": "classical",
                "image": payload(img, "rgba8"),
                "params": {"fill": "lama", "extend": {"right": 16}},
            }
        ).layers[0]
        opx = layer_pixels(out)
        assert (out.width, out.height) == (80, 64) and (opx[:, 64:, 3] == 255).all()
        assert np.array_equal(opx[:, :64, :3], img[..., :3])


@pytest.mark.engine  # loads a model or starts a server process
def test_a_pickled_lama_is_read_without_unpickling_code(tmp_path):
    from server.lama import load, run

    path = tmp_path / "inpaint" / "lama.pth"
    _save_random_lama(path, pickle=True)
    model = load(path)
    img = stripes(40, 48)
    hole = rect_mask(48, 40, (10, 10, 30, 30))
    out = run(model, img, hole)
    assert out.shape == img.shape and out.dtype == np.uint8


# --- pull and command line -------------------------------------------------------------------------------------------


def _cli(args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


@pytest.mark.engine  # loads a model or starts a server process
def test_models_pull_lama_through_the_hub_stand_in_lands_where_the_fill_finds_it(tmp_path):
    from server.downloads.catalogue import Catalogue
    from tests.hubstandin import Hub, payload as hub_payload

    entry = Catalogue.load().files["lama"]
    with Hub() as hub:
        hub.files[(entry.repo, entry.file)] = hub_payload(150_000, seed=7)
        env = hub.env
        out = _cli(["models", "pull", "lama", "--models", str(tmp_path)], env)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "inpaint" / "big-lama.safetensors").read_bytes() == hub.files[(entry.repo, entry.file)]
    listing = _cli(["models", "--models", str(tmp_path)])
    assert listing.returncode == 0, listing.stderr
    assert "inpainter" in listing.stdout and "lama        complete" in listing.stdout


@pytest.mark.engine  # loads a model or starts a server process
def test_paintbridge_run_inpaints_with_the_chosen_fill_and_colour_match(tmp_path, paintbridge_cli):
    from PIL import Image

    img, mask = rgba_image(), rect_mask()
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for fill in ("patch", "telea"):
        out = tmp_path / f"{fill}.png"
        proc = paintbridge_cli(
            "run",
            "inpaint",
            "--image",
            str(tmp_path / "in.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--model",
            "classical",
            "--fill",
            fill,
            "--color-match",
            "--grow",
            "0",
            "--feather",
            "0",
            "--models",
            str(tmp_path),
            "--out",
            str(out),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = np.asarray(Image.open(out).convert("RGBA"))
        assert np.array_equal(result[mask == 0][:, :3], img[mask == 0][:, :3])
    bad = paintbridge_cli("run", "inpaint", "--image", str(tmp_path / "in.png"), "--fill", "blur", "--out", str(out))
    assert bad.returncode == 2 and "patch" in bad.stderr
