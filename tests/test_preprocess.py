"""ControlNet preprocessors: built-in ones on synthetic pictures, depth/normal on a real tiny Depth Anything model,
soft edge (HED) on random and hand-made weights in the real ControlNetHED.pth layout, clear errors for missing or
foreign annotator weights, and mode 'preprocess' through the real websocket server."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from protocol.client import Client, JobFailed
from protocol.errors import ProtocolError
from server.core import Job, JobContext, Params
from server.preprocess import PREPROCESSORS, PreprocessEngine, canonical_name, inpaint_condition, preprocess_image


class Registry:
    """Just what preprocessors use of the model registry: its folders."""

    def __init__(self, *dirs: Path) -> None:
        self.dirs = list(dirs)


def shapes(w: int = 64, h: int = 64) -> tuple:
    """A white picture with a dark filled rectangle and a mid-gray filled circle, and the shapes' mask."""
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.rectangle(img, (6, 8), (26, 30), (20, 20, 20), thickness=-1)
    cv2.circle(img, (44, 42), 13, (120, 60, 200), thickness=-1)
    inside = (img != 255).any(axis=2).astype(np.uint8)
    return img, inside


def sketch(w: int = 64, h: int = 64) -> np.ndarray:
    """Dark pencil strokes on white paper."""
    img = np.full((h, w, 3), 250, np.uint8)
    cv2.line(img, (5, 5), (58, 20), (30, 30, 30), 1)
    cv2.line(img, (10, 55), (50, 30), (60, 60, 60), 2)
    cv2.circle(img, (32, 40), 9, (40, 40, 40), 1)
    return img


def stroke_mask(img: np.ndarray) -> np.ndarray:
    return img.min(axis=2) < 128


def test_canny_finds_the_borders_of_a_rectangle_and_a_circle():
    img, inside = shapes()
    edges = preprocess_image("canny", img, None, low_threshold=50, high_threshold=150)
    assert edges.shape == img.shape and edges.dtype == np.uint8
    assert set(np.unique(edges)) <= {0, 255}
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 0] == edges[..., 2]).all()
    border = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    dist_to_border = cv2.distanceTransform((~border).astype(np.uint8), cv2.DIST_L2, 3)
    edge = edges[..., 0] > 0
    assert edge.sum() > 100
    assert dist_to_border[edge].max() <= 1.5, "an edge pixel far from any shape border"
    dist_to_edge = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)
    assert (dist_to_edge[border] <= 1.5).mean() > 0.95, "part of a shape border has no edge"


def test_canny_thresholds_decide_which_edges_count():
    img = np.full((64, 64, 3), 255, np.uint8)
    cv2.rectangle(img, (6, 8), (26, 30), (0, 0, 0), thickness=-1)  # strong edge
    cv2.rectangle(img, (36, 36), (58, 58), (240, 240, 240), thickness=-1)  # faint edge
    low = preprocess_image("canny", img, None, low_threshold=10, high_threshold=30)[..., 0] > 0
    high = preprocess_image("canny", img, None, low_threshold=200, high_threshold=250)[..., 0] > 0
    assert low[:34, :34].sum() > 50 and high[:34, :34].sum() > 50
    assert low[34:, 34:].sum() > 50 and high[34:, 34:].sum() == 0


def test_lineart_traces_strokes_as_white_on_black():
    img = sketch()
    out = preprocess_image("lineart", img, None)
    assert out.shape == img.shape and out.dtype == np.uint8
    strokes = stroke_mask(img)
    far = cv2.distanceTransform((~strokes).astype(np.uint8), cv2.DIST_L2, 3) > 4
    assert out[strokes][:, 0].mean() > 150
    assert out[far][:, 0].mean() < 5


def test_lineart_of_a_photo_like_gradient_is_empty():
    ys, xs = np.mgrid[0:64, 0:64]
    img = np.dstack([xs * 3, ys * 3, (xs + ys)]).astype(np.uint8)
    out = preprocess_image("lineart_standard", img, None)
    assert out.max() < 40


@pytest.mark.parametrize("invert", [False, True])
def test_scribble_makes_binary_thick_strokes_either_polarity(invert):
    img = sketch()
    src = 255 - img if invert else img
    out = preprocess_image("scribble", src, None)
    assert out.shape == img.shape
    assert set(np.unique(out)) <= {0, 255}
    strokes = stroke_mask(img)
    assert (out[strokes][:, 0] == 255).mean() > 0.9
    far = cv2.distanceTransform((~strokes).astype(np.uint8), cv2.DIST_L2, 3) > 4
    assert (out[far][:, 0] == 0).all()


def test_shuffle_scrambles_layout_keeps_colors_and_is_deterministic():
    img, _ = shapes()
    a = preprocess_image("shuffle", img, None, seed=3)
    b = preprocess_image("shuffle", img, None, seed=3)
    c = preprocess_image("shuffle", img, None, seed=4)
    assert a.shape == img.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a.astype(int) - img.astype(int)).mean() > 20, "layout not scrambled"
    # Every output colour comes from the picture (up to interpolation between neighbours).
    palette = np.unique(img.reshape(-1, 3), axis=0).astype(int)
    nearest = np.abs(a.reshape(-1, 1, 3).astype(int) - palette[None]).sum(axis=2).min(axis=1)
    assert np.median(nearest) == 0


def test_tile_is_the_image_or_a_softened_copy():
    img, _ = shapes()
    assert np.array_equal(preprocess_image("tile", img, None), img)
    soft = preprocess_image("tile", img, None, tile_downscale=4, tile_blur=1.5)
    assert soft.shape == img.shape
    diff = np.abs(soft.astype(int) - img.astype(int))
    assert 0 < diff.mean() < 30


def test_inpaint_marks_the_masked_area():
    img, _ = shapes()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[10:40, 20:50] = 255
    out = preprocess_image("inpaint", img, None, mask=mask)
    assert (out[mask > 0] == 0).all() and np.array_equal(out[mask == 0], img[mask == 0])
    cond = inpaint_condition(img, mask)
    assert cond.dtype == np.float32 and (cond[mask > 0] == -1).all()
    assert np.allclose(cond[mask == 0], img[mask == 0] / 255.0)
    with pytest.raises(ProtocolError) as err:
        preprocess_image("inpaint", img, None, mask=mask[:10])
    assert err.value.field == "mask"


def test_every_built_in_keeps_size_on_odd_sizes():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for kind in ("canny", "lineart", "scribble", "shuffle", "tile", "inpaint", "reference"):
        out = preprocess_image(kind, img, None)
        assert out.shape == img.shape and out.dtype == np.uint8, kind


def test_unknown_preprocessor_names_the_choices():
    with pytest.raises(ProtocolError) as err:
        canonical_name("sobel")
    assert err.value.code == "bad_request" and "canny" in err.value.message
    assert err.value.field == "params.preprocessor"
    assert canonical_name("HED") == "softedge" and canonical_name("Content-Shuffle") == "shuffle"
    assert set(PREPROCESSORS) >= {"canny", "lineart", "scribble", "shuffle", "tile", "inpaint", "depth", "normal"}


@pytest.mark.parametrize(
    "kind, filename",
    [
        ("softedge", "ControlNetHED.pth"),
        ("hed", "ControlNetHED.pth"),
        ("pose", "body_pose_model.pth"),
        ("lineart_anime", "netG.pth"),
    ],
)
def test_weights_needing_preprocessor_names_the_file_to_install(tmp_path, kind, filename):
    img, _ = shapes()
    with pytest.raises(ProtocolError) as err:
        preprocess_image(kind, img, Registry(tmp_path))
    assert err.value.code == "model_not_found"
    assert str(tmp_path / "annotators" / filename) in err.value.message


def test_depth_without_a_model_names_the_folder_and_files(tmp_path):
    img, _ = shapes()
    for kind in ("depth", "normal"):
        with pytest.raises(ProtocolError) as err:
            preprocess_image(kind, img, Registry(tmp_path))
        assert err.value.code == "model_not_found"
        assert str(tmp_path / "annotators" / "Depth-Anything-V2-Small-hf") in err.value.message
        assert "model.safetensors" in err.value.message and "preprocessor_config.json" in err.value.message


# --- depth / normal on a real (tiny, random-weight) Depth Anything model ---------------------------------------------


def build_depth_model(models: Path) -> Path:
    """A tiny random-weight Depth Anything in the transformers layout, under ``models/annotators/``."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    folder = models / "annotators" / "Depth-Anything-V2-Small-hf"
    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=98,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    tmp = folder.with_name(folder.name + ".partial")
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(tmp)
    DPTImageProcessor(
        do_resize=True,
        size={"height": 98, "width": 98},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(tmp)
    tmp.rename(folder)
    return folder


@pytest.fixture(scope="module")
def depth_models(paintbridge_cache) -> Path:
    models = paintbridge_cache / "preprocess-models"
    build_depth_model(models)
    return models


@pytest.mark.engine  # loads a model or starts a server process
def test_depth_runs_the_model_from_the_annotators_folder(depth_models):
    img, _ = shapes(80, 64)
    out = preprocess_image("depth", img, Registry(depth_models))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255, "depth is normalised to the full range"
    assert (out[..., 0] == out[..., 2]).all()
    again = preprocess_image("midas", img, Registry(depth_models))
    assert np.array_equal(out, again)
    other = preprocess_image("depth", 255 - img, Registry(depth_models))
    assert not np.array_equal(out, other), "depth depends on the picture"


@pytest.mark.engine  # loads a model or starts a server process
def test_available_preprocessors_say_what_is_ready(depth_models, hed_models, hed_safetensors_models, tmp_path):
    from server.preprocess import available_preprocessors

    bare = {p["name"]: p for p in available_preprocessors(Registry(tmp_path))}
    assert bare["canny"]["ready"] and not bare["depth"]["ready"]
    assert bare["depth"]["needs"] == "annotators/Depth-Anything-V2-Small-hf/"
    assert bare["softedge"] == {"name": "softedge", "ready": False, "needs": "annotators/ControlNetHED.pth"}
    installed = {p["name"]: p for p in available_preprocessors(Registry(depth_models))}
    assert installed["depth"]["ready"] and installed["normal"]["ready"]
    assert installed["softedge"] == {"name": "softedge", "ready": True, "needs": ""}
    assert not installed["pose"]["ready"]
    only_safetensors = {p["name"]: p for p in available_preprocessors(Registry(hed_safetensors_models))}
    assert only_safetensors["softedge"]["ready"] and not only_safetensors["depth"]["ready"]


@pytest.mark.engine  # loads a model or starts a server process
def test_normal_map_is_unit_normals_facing_the_viewer(depth_models):
    img, _ = shapes(80, 64)
    out = preprocess_image("normal", img, Registry(depth_models))
    assert out.shape == img.shape
    n = out.astype(np.float32) / 255.0 * 2.0 - 1.0
    assert np.allclose(np.linalg.norm(n, axis=2), 1.0, atol=0.03)
    assert (n[..., 2] > 0).all(), "every normal points towards the viewer"


def test_normal_map_slopes_follow_the_depth(monkeypatch, tmp_path):
    """A ramp getting nearer to the right tilts normals to the left (R < 128); flat depth faces the viewer."""
    from server.preprocess import annotators

    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (64, 1)).astype(np.uint8)
    monkeypatch.setattr(annotators, "_depth_map", lambda rgb, registry, device="cpu": ramp)
    out = annotators.normal(np.zeros((64, 64, 3), np.uint8), None)
    assert out[8:-8, 8:-8, 0].max() < 110 and abs(int(out[32, 32, 1]) - 128) <= 1
    monkeypatch.setattr(annotators, "_depth_map", lambda rgb, registry, device="cpu": np.full((64, 64), 90, np.uint8))
    flat = annotators.normal(np.zeros((64, 64, 3), np.uint8), None)
    assert (np.abs(flat.astype(int) - [128, 128, 255]) <= 1).all()


# --- soft edge (HED) in the layout of lllyasviel's ControlNetHED.pth -------------------------------------------------

# The tensors of lllyasviel/Annotators' ControlNetHED.pth (ControlNet 1.1's "ControlNetHED_Apache2"), written out by
# hand from that network's definition: a file saved by our network class must have exactly these names and shapes.
REAL_HED_TENSORS = {
    "norm": (1, 3, 1, 1),
    "block1.convs.0.weight": (64, 3, 3, 3),
    "block1.convs.0.bias": (64,),
    "block1.convs.1.weight": (64, 64, 3, 3),
    "block1.convs.1.bias": (64,),
    "block1.projection.weight": (1, 64, 1, 1),
    "block1.projection.bias": (1,),
    "block2.convs.0.weight": (128, 64, 3, 3),
    "block2.convs.0.bias": (128,),
    "block2.convs.1.weight": (128, 128, 3, 3),
    "block2.convs.1.bias": (128,),
    "block2.projection.weight": (1, 128, 1, 1),
    "block2.projection.bias": (1,),
    "block3.convs.0.weight": (256, 128, 3, 3),
    "block3.convs.0.bias": (256,),
    "block3.convs.1.weight": (256, 256, 3, 3),
    "block3.convs.1.bias": (256,),
    "block3.convs.2.weight": (256, 256, 3, 3),
    "block3.convs.2.bias": (256,),
    "block3.projection.weight": (1, 256, 1, 1),
    "block3.projection.bias": (1,),
    "block4.convs.0.weight": (512, 256, 3, 3),
    "block4.convs.0.bias": (512,),
    "block4.convs.1.weight": (512, 512, 3, 3),
    "block4.convs.1.bias": (512,),
    "block4.convs.2.weight": (512, 512, 3, 3),
    "block4.convs.2.bias": (512,),
    "block4.projection.weight": (1, 512, 1, 1),
    "block4.projection.bias": (1,),
    "block5.convs.0.weight": (512, 512, 3, 3),
    "block5.convs.0.bias": (512,),
    "block5.convs.1.weight": (512, 512, 3, 3),
    "block5.convs.1.bias": (512,),
    "block5.convs.2.weight": (512, 512, 3, 3),
    "block5.convs.2.bias": (512,),
    "block5.projection.weight": (1, 512, 1, 1),
    "block5.projection.bias": (1,),
}


def random_hed_state() -> dict:
    """Random ControlNetHED weights from our network class, float16 like the published file."""
    import torch

    from server.preprocess import annotators

    torch.manual_seed(0)
    net = annotators.hed_network()
    with torch.no_grad():
        net.norm.copy_(torch.tensor([122.7, 116.7, 104.0]).reshape(1, 3, 1, 1))  # about the mean colour
    return {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}


def write_weights(state: dict, path: Path) -> Path:
    """``state`` as a plain dict of tensors: torch.save for .pth, safetensors for .safetensors (written atomically)."""
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if path.suffix == ".safetensors":
        save_file(state, str(tmp))
    else:
        torch.save(state, str(tmp))
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def hed_models(depth_models) -> Path:
    """The cached models folder (the depth one) with random weights at annotators/ControlNetHED.pth."""
    path = depth_models / "annotators" / "ControlNetHED.pth"
    if not path.is_file():
        write_weights(random_hed_state(), path)
    return depth_models


@pytest.fixture(scope="module")
def hed_safetensors_models(paintbridge_cache) -> Path:
    """A cached models folder with the same random weights at annotators/ControlNetHED.safetensors."""
    models = paintbridge_cache / "preprocess-models-safetensors"
    path = models / "annotators" / "ControlNetHED.safetensors"
    if not path.is_file():
        write_weights(random_hed_state(), path)
    return models


@pytest.mark.engine  # loads a model or starts a server process
def test_hed_network_has_the_tensors_of_the_real_file(hed_models):
    from server.preprocess import annotators

    state = annotators.hed_network().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == REAL_HED_TENSORS
    assert annotators.hed_state_shapes() == REAL_HED_TENSORS
    from server.models.weights import read_state_dict

    saved = read_state_dict(hed_models / "annotators" / "ControlNetHED.pth")
    assert {k: tuple(v.shape) for k, v in saved.items()} == REAL_HED_TENSORS


def reference_softedge(state: dict, rgb: np.ndarray) -> np.ndarray:
    """ControlNet's softedge_hed computed from the tensors with plain functional ops: each projection resized to the
    picture with cv2 (bilinear), sigmoid of their mean, times 255 truncated."""
    import torch
    from torch.nn import functional as F

    h = torch.from_numpy(rgb).float().permute(2, 0, 1)[None] - state["norm"].float()
    projections = []
    for b, convs in enumerate((2, 2, 3, 3, 3), start=1):
        if b > 1:
            h = F.max_pool2d(h, 2, 2)
        for i in range(convs):
            weight, bias = state[f"block{b}.convs.{i}.weight"], state[f"block{b}.convs.{i}.bias"]
            h = F.relu(F.conv2d(h, weight.float(), bias.float(), padding=1))
        p = F.conv2d(h, state[f"block{b}.projection.weight"].float(), state[f"block{b}.projection.bias"].float())
        projections.append(cv2.resize(p[0, 0].numpy(), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR))
    edge = 1.0 / (1.0 + np.exp(-np.mean(projections, axis=0).astype(np.float64)))
    return (edge * 255.0).clip(0, 255).astype(np.uint8)


@pytest.mark.engine  # loads a model or starts a server process
def test_softedge_runs_the_pth_from_the_annotators_folder(hed_models):
    img, _ = shapes(80, 64)
    out = preprocess_image("softedge", img, Registry(hed_models))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert np.array_equal(preprocess_image("hed", img, Registry(hed_models)), out)
    other = preprocess_image("softedge", 255 - img, Registry(hed_models))
    assert not np.array_equal(out, other), "soft edges depend on the picture"
    from server.models.weights import read_state_dict

    expected = reference_softedge(read_state_dict(hed_models / "annotators" / "ControlNetHED.pth"), img)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    rng = np.random.default_rng(2)
    for size in ((37, 53), (3, 5), (6, 300), (1, 1)):  # odd, tiny, a thin strip: scaled up and padded for the network
        odd = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        assert preprocess_image("softedge", odd, Registry(hed_models)).shape == odd.shape, size


@pytest.mark.engine  # loads a model or starts a server process
def test_softedge_reads_safetensors_as_well(hed_models, hed_safetensors_models):
    img, _ = shapes()
    from_pth = preprocess_image("softedge", img, Registry(hed_models))
    from_safetensors = preprocess_image("softedge", img, Registry(hed_safetensors_models))
    assert np.array_equal(from_pth, from_safetensors)


@pytest.mark.engine  # loads a model or starts a server process
def test_softedge_works_at_a_reduced_size_for_big_pictures(hed_models, monkeypatch):
    """Pictures whose short side is over the network's size are scaled down for it and the map scaled back."""
    from server.preprocess import annotators

    img, _ = shapes(80, 64)
    seen = []
    real = annotators._hed_models.get

    def spy(path, device="cpu"):
        net = real(path, device)
        return lambda x: seen.append(tuple(x.shape)) or net(x)

    monkeypatch.setattr(annotators._hed_models, "get", spy)
    monkeypatch.setattr(annotators, "SOFTEDGE_SHORT_SIDE", 32)
    out = preprocess_image("softedge", img, Registry(hed_models))
    assert seen == [(1, 3, 32, 40)] and out.shape == img.shape


@pytest.mark.engine  # loads a model or starts a server process
def test_softedge_draws_white_edges_on_black_with_hand_made_weights(tmp_path):
    """Weights that make block 1 a luminance-gradient detector (all else zero, projections biased to -5): the map is
    the sigmoid of the mean of the five projections, so shape borders come out white and flat areas black."""
    import torch

    from server.preprocess import annotators

    state = {k: torch.zeros(v) for k, v in annotators.hed_state_shapes().items()}
    state["block1.convs.0.weight"][0, :, 1, 1] = 1.0 / (3 * 255)  # channel 0: luminance 0..1
    w = state["block1.convs.1.weight"]
    w[0, 0, 1, 2], w[0, 0, 1, 1] = 1, -1  # channel 0/1: right minus here, and its negative
    w[1, 0, 1, 2], w[1, 0, 1, 1] = -1, 1
    w[2, 0, 2, 1], w[2, 0, 1, 1] = 1, -1  # channel 2/3: below minus here, and its negative
    w[3, 0, 2, 1], w[3, 0, 1, 1] = -1, 1
    state["block1.projection.weight"][0, :4] = 50.0
    for b in range(1, 6):
        state[f"block{b}.projection.bias"][0] = -5.0
    models = tmp_path / "models"
    write_weights({k: v.half() for k, v in state.items()}, models / "annotators" / "ControlNetHED.safetensors")

    img = np.zeros((64, 64, 3), np.uint8)  # white shapes on black
    cv2.rectangle(img, (6, 8), (26, 30), (255, 255, 255), thickness=-1)
    cv2.circle(img, (44, 42), 13, (255, 255, 255), thickness=-1)
    out = preprocess_image("softedge", img, Registry(models))[..., 0]
    inside = (img[..., 0] > 0).astype(np.uint8)
    border = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    dist_to_border = cv2.distanceTransform((~border).astype(np.uint8), cv2.DIST_L2, 3)
    assert out[dist_to_border > 2].max() <= 2, "flat areas are black (sigmoid(-5))"
    bright = out > 200
    assert bright.sum() > 60 and dist_to_border[bright].max() <= 1.5, "white only at shape borders"
    dist_to_bright = cv2.distanceTransform((~bright).astype(np.uint8), cv2.DIST_L2, 3)
    assert (dist_to_bright[border] <= 1.5).mean() > 0.9, "every shape border is drawn"

    # With no gradient and every projection at 0, the map is sigmoid(0) = 0.5 everywhere: 127 as ControlNet writes it.
    zeros = {k: torch.zeros(v, dtype=torch.float16) for k, v in annotators.hed_state_shapes().items()}
    write_weights(zeros, tmp_path / "flat" / "annotators" / "ControlNetHED.pth")
    assert (preprocess_image("softedge", img, Registry(tmp_path / "flat")) == 127).all()


class NotATensor:
    """Any Python object besides tensors and plain containers: a weights-only load must refuse it."""


def test_softedge_refuses_other_networks_and_pickled_objects(tmp_path):
    import torch

    img, _ = shapes()
    other = tmp_path / "other"
    write_weights({"conv.weight": torch.zeros(4, 3, 3, 3)}, other / "annotators" / "ControlNetHED.safetensors")
    with pytest.raises(ProtocolError) as err:
        preprocess_image("softedge", img, Registry(other))
    assert err.value.code == "unsupported" and "ControlNetHED" in err.value.message
    assert "missing norm" in err.value.message and "unexpected conv.weight" in err.value.message

    pickled = tmp_path / "pickled"
    (pickled / "annotators").mkdir(parents=True)
    torch.save(
        {"norm": torch.zeros(1, 3, 1, 1), "extra": NotATensor()}, str(pickled / "annotators" / "ControlNetHED.pth")
    )
    with pytest.raises(ProtocolError) as err:
        preprocess_image("softedge", img, Registry(pickled))
    assert err.value.code == "unsupported" and "does not unpickle" in err.value.message


# --- mode 'preprocess' ------------------------------------------------------------------------------------------------


def payload(arr: np.ndarray, fmt: str) -> dict:
    arr = np.ascontiguousarray(arr)
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": arr.tobytes()}


def job_of(img: np.ndarray, **params) -> Job:
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    return Job(id="t", mode="preprocess", image=rgba, params=Params(**params), x=5, y=7)


def test_preprocess_engine_returns_one_opaque_layer_at_the_job_position():
    img, _ = shapes()
    steps = []
    ctx = JobContext(lambda step, total, preview: steps.append((step, total)))
    layers = PreprocessEngine(None).run(job_of(img, preprocessor="canny"), ctx)
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "Control: canny" and (layer.x, layer.y) == (5, 7)
    assert layer.rgba.shape == (64, 64, 4) and (layer.rgba[..., 3] == 255).all()
    assert steps[-1] == (1, 1)


def test_sketch_on_a_transparent_layer_reads_as_lines_on_paper():
    img = sketch()
    strokes = stroke_mask(img)
    layer = np.zeros((64, 64, 4), np.uint8)  # transparent black, like an empty paint layer
    layer[strokes, :3] = img[strokes]
    layer[strokes, 3] = 255
    job = job_of(img, preprocessor="scribble")
    job.image = layer
    out = PreprocessEngine(None).run(job, JobContext())[0].rgba
    assert (out[strokes][:, 0] == 255).mean() > 0.9
    assert (out[..., 0] == 255).mean() < 0.5
    assert np.array_equal(preprocess_image("scribble", layer, None), out[..., :3])
    # A channel slice (not contiguous in memory), as a control layer's RGB may be, works the same.
    assert np.array_equal(
        preprocess_image("lineart", np.dstack([img, img[..., :1]])[..., :3], None),
        preprocess_image("lineart", img, None),
    )


def test_preprocess_mode_through_the_websocket_server(start_server, depth_models, hed_models):
    server = start_server(model_dirs=[depth_models])
    img, _ = shapes()
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    with Client(server.url) as client:
        job = {
            "mode": "preprocess",
            "image": payload(rgba, "rgba8"),
            "x": 12,
            "y": 34,
            "params": {"preprocessor": "canny", "low_threshold": 50, "high_threshold": 150},
        }
        result = client.run(job, timeout=60)
        (layer,) = result.layers
        assert layer.name == "Control: canny" and (layer.x, layer.y) == (12, 34)
        pixels = np.frombuffer(layer.data, np.uint8).reshape(64, 64, 4)
        expected = preprocess_image("canny", img, None, low_threshold=50, high_threshold=150)
        assert np.array_equal(pixels[..., :3], expected)

        depth = client.run(dict(job, params={"preprocessor": "depth"}), timeout=120).layers[0]
        assert depth.name == "Control: depth" and depth.width == 64

        softedge = client.run(dict(job, params={"preprocessor": "hed"}), timeout=120).layers[0]
        assert softedge.name == "Control: softedge" and (softedge.width, softedge.height) == (64, 64)
        pixels = np.frombuffer(softedge.data, np.uint8).reshape(64, 64, 4)
        assert np.array_equal(pixels[..., :3], preprocess_image("softedge", img, Registry(hed_models)))
        assert (pixels[..., 3] == 255).all()

        with pytest.raises(JobFailed) as err:
            client.run(dict(job, params={"preprocessor": "pose"}), timeout=60)
        assert err.value.code == "model_not_found" and "body_pose_model.pth" in str(err.value)
        with pytest.raises(JobFailed) as err:
            client.run(dict(job, params={"preprocessor": "sobel"}), timeout=60)
        assert err.value.code == "bad_request" and err.value.field == "params.preprocessor"
