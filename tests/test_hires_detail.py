"""Hires fix and detailer through the real websocket server, on tiny random-weight models (native 64 px), offline;
the detailer's face and hand detectors are networks with YuNet's and MediaPipe's palm detector's interfaces that the
tests build (tests/tiny_yunet.py, tests/tiny_palm.py), run by the real loading and detection code (``server.detect``,
OpenCV's FaceDetectorYN and dnn), on a synthetic face and hand drawn by the tests; tests/test_detectors.py runs
trained detectors on a real photograph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import factory
import tiny_palm
import tiny_yunet
from protocol import Limits
from protocol.client import JobFailed
from protocol.messages import Detail, Hires, Params
from server.detect import Detectors, FaceDetector
from server.diffusion import hires as hires_fix
from test_upscale import build_upscalers
from tests.hubstandin import hub  # noqa: F401 - a fixture

W, H = 128, 96  # larger than the tiny models' native 64 x 64: the first pass runs at 72 x 56
FACE = (180, 66, 88, 104)  # the drawn face in tiny_yunet.portrait() (x, y, w, h)
HAND = (302, 249, 142, 142)  # the hand box found for tiny_palm.draw_hand(image, 373, 352, 64) (tests/test_detectors.py)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, paintbridge_cache) -> Path:
    models = factory.make_models_dir(
        tmp_path_factory.mktemp("models"), ("sd15", "sdxl", "sd15-inpaint", "cn-sd15-canny", "flux")
    )
    ups = build_upscalers(paintbridge_cache / "upscale-models")
    shutil.copytree(ups / "upscale_models", models / "upscale_models")
    tiny_yunet.write_detector(models / "detectors")
    tiny_palm.write_detector(models / "detectors")
    return models


def portrait() -> np.ndarray:
    """The test portrait (512 x 512): a textured background and one drawn face at ``FACE``."""
    return tiny_yunet.portrait()


def picture(w: int = W, h: int = H) -> np.ndarray:
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    img[..., 2] = np.random.default_rng(0).integers(0, 255, (h, w))
    img[..., 3] = 255
    return img


def payload(arr: np.ndarray) -> dict:
    fmt = "gray8" if arr.ndim == 2 else "rgba8"
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": arr.tobytes()}


def job(mode: str, model: str = "tiny-sd15", image=None, mask=None, **params) -> dict:
    msg = {
        "mode": mode,
        "model": model,
        "prompt": "a portrait",
        "x": 10,
        "y": 20,
        "params": {"steps": 4, "seed": 7, "grow": 0, "feather": 2, **params},
    }
    if image is not None:
        msg["image"] = payload(image)
    if mask is not None:
        msg["mask"] = payload(mask)
    return msg


def run(client, msg: dict, progress: list = None):
    result = client.run(
        msg, on_event=lambda m: progress is not None and m.type == "progress" and progress.append(m), timeout=300
    )
    return [
        (layer, np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)) for layer in result.layers
    ]


# --- hires fix ---------------------------------------------------------------------------------------------------------


def test_the_plan_runs_a_second_pass_only_for_a_box_larger_than_the_first_pass():
    on = Hires(enabled=True, strength=0.5)
    assert hires_fix.plan(Hires(), 128, 96, 72, 56, 8, 20) is None
    assert hires_fix.plan(on, 64, 48, 72, 56, 8, 20) is None, "a box within the native area needs one pass"
    assert hires_fix.plan(on, 128, 96, 72, 56, 8, 20, live=True) is None
    p = hires_fix.plan(on, 128, 96, 72, 56, 8, 20)
    assert (p.width, p.height, p.upscaler, p.steps) == (128, 96, "latent", 20) and hires_fix.second_pass_steps(p) == 10
    p = hires_fix.plan(Hires(enabled=True, scale=1.5, steps=6, upscaler="lanczos"), 4000, 3000, 72, 56, 8, 20)
    assert (p.width, p.height, p.steps, p.upscaler) == (112, 88, 6, "lanczos")
    capped = hires_fix.plan(on, 4000, 3000, 72, 56, 8, 20)
    assert (capped.width, capped.height) == (288, 216), "at most 4x the first pass's side"


@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-sd15"])  # SD1.5 last: still loaded for the next tests
def test_hires_generate_gives_the_target_size_and_progress_counts_both_passes(client, model):
    progress = []
    msg = job("generate", model, width=W, height=H, hires={"enabled": True, "strength": 0.5, "steps": 6})
    ((layer, rgba),) = run(client, dict(msg, previews=True), progress)
    assert (layer.width, layer.height, layer.x, layer.y) == (W, H, 10, 20) and (rgba[..., 3] == 255).all()
    assert layer.info["hires"] == {"size": [W, H], "upscaler": "latent", "strength": 0.5, "steps": 6}
    assert layer.info["size"] == [72, 56], "the first pass runs at the native area"
    totals = {p.total for p in progress}
    assert totals == {4 + 3}, "one total: 4 first-pass steps and int(6 x 0.5) second-pass steps"
    steps = [p.step for p in progress]  # the server coalesces progress a slow reader has not taken yet
    assert steps == sorted(set(steps)) and steps[-1] == 7 and all(p.preview is not None for p in progress)


def test_every_step_of_both_passes_reports_progress_with_a_preview(server):
    from server.core import Job, JobContext

    seen = []
    ctx = JobContext(lambda step, total, preview: seen.append((step, total, preview.shape[:2])))
    params = Params(steps=4, seed=1, width=W, height=H, hires=Hires(enabled=True, strength=0.5, steps=6))
    server.server.router.diffusion.run(Job("j", "generate", model="tiny-sd15", params=params, previews=True), ctx)
    assert [(s, t) for s, t, _ in seen] == [(i, 7) for i in range(1, 8)]
    first, second = {size for _, _, size in seen[:4]}, {size for _, _, size in seen[4:]}
    assert len(first) == len(second) == 1 and second.pop()[1] > first.pop()[1], "pass two previews its larger latents"


def test_hires_batch_gives_each_image_at_the_target_size_with_its_seed(client):
    results = run(client, job("generate", width=W, height=H, batch=2, hires={"enabled": True, "upscaler": "lanczos"}))
    assert [(layer.width, layer.height, layer.seed) for layer, _ in results] == [(W, H, 7), (W, H, 8)]
    assert not np.array_equal(results[0][1], results[1][1])
    ((alone, rgba),) = run(
        client, job("generate", width=W, height=H, seed=8, hires={"enabled": True, "upscaler": "lanczos"})
    )
    # one pipeline call per pass for the batch: the same image up to rounding (batched kernels round differently)
    assert np.abs(rgba.astype(int) - results[1][1].astype(int)).mean() < 1.0


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_hires_with_a_control_layer(client, mode):
    edges = np.zeros((H, W, 4), np.uint8)
    edges[::8, :, :3] = 255
    edges[..., 3] = 255
    mask = np.zeros((H, W), np.uint8)
    mask[20:70, 30:100] = 255
    msg = job(
        mode,
        image=picture(),
        mask=mask if mode == "inpaint" else None,
        strength=0.6,
        hires={"enabled": True, "upscaler": "latent"},
    )
    msg["controls"] = [{"type": "canny", "image": payload(edges)}]
    ((layer, rgba),) = run(client, msg)
    assert layer.info["hires"]["size"] == [W, H] and layer.info["controlnets"] == ["control_tiny_sd15_canny"]


def test_latent_lanczos_and_model_upscale_differ_and_a_plain_job_differs_from_all(client):
    def make(**hires):
        ((layer, rgba),) = run(client, job("generate", width=W, height=H, hires={"enabled": True, **hires}))
        return layer, rgba

    plain = run(client, job("generate", width=W, height=H))[0]
    latent = make(upscaler="latent")
    lanczos = make(upscaler="lanczos")
    model = make(upscaler="tiny-esrgan-x2")
    assert "hires" not in plain[0].info and model[0].info["hires"]["upscaler"] == "tiny-esrgan-x2"
    pictures = [plain[1], latent[1], lanczos[1], model[1]]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(pictures[i], pictures[j]), (i, j)
    assert np.array_equal(make(upscaler="lanczos")[1], lanczos[1]), "the same seed gives the same pixels"


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sd15-inpaint", "tiny-sdxl"])
def test_hires_inpaint_keeps_pixels_outside_the_mask(client, model):
    image = picture()
    mask = np.zeros((H, W), np.uint8)
    mask[20:70, 30:100] = 255
    progress = []
    ((layer, rgba),) = run(
        client,
        job("inpaint", model, image, mask, strength=1.0, hires={"enabled": True, "upscaler": "lanczos"}),
        progress,
    )
    assert layer.info["hires"]["size"] == [W, H] and (layer.width, layer.height) == (W, H)
    outside = rgba[..., 3] == 0
    assert outside.mean() > 0.5 and np.array_equal(rgba[outside][:, :3], image[outside][:, :3])
    assert rgba[45, 65, 3] == 255 and not np.array_equal(rgba[20:70, 30:100, :3], image[20:70, 30:100, :3])
    assert progress[-1].step == progress[-1].total == 4 + 1


def test_hires_img2img_runs_two_passes(client):
    progress = []
    ((layer, rgba),) = run(client, job("img2img", image=picture(), strength=0.5, hires={"enabled": True}), progress)
    assert layer.info["hires"]["size"] == [W, H] and progress[-1].step == progress[-1].total == 2 + 1


def test_an_unknown_hires_upscaler_is_refused_naming_what_is_installed(client):
    with pytest.raises(JobFailed) as err:
        run(client, job("generate", width=W, height=H, hires={"enabled": True, "upscaler": "nope"}))
    assert err.value.code == "model_not_found" and "nope" in str(err.value)


# --- detailer ----------------------------------------------------------------------------------------------------------


def test_the_detector_finds_the_drawn_face(tmp_path):
    detector = FaceDetector(tiny_yunet.write_detector(tmp_path))
    faces = detector.detect(portrait()[..., :3], 0.5)
    assert len(faces) == 1 and faces[0].score > 0.8
    x, y, w, h = FACE
    f = faces[0]
    assert abs(f.x - x) <= 4 and abs(f.y - y) <= 4 and abs(f.width - w) <= 6 and abs(f.height - h) <= 6
    assert detector.detect(picture()[..., :3], 0.5) == [], "no face in a gradient"


def test_without_weights_the_detailer_names_the_pull(tmp_path):
    with pytest.raises(Exception) as err:
        Detectors([tmp_path]).face()
    assert err.value.code == "model_not_found" and "paintbridge models pull detailer" in str(err.value)


def test_detail_mode_repaints_only_the_face(client):
    image = portrait()
    progress = []
    ((layer, rgba),) = run(client, job("detail", image=image, detail={"strength": 0.5, "padding": 16}), progress)
    assert (layer.x, layer.y, layer.width, layer.height) == (10, 20, 512, 512)
    (found,) = layer.info["detections"]
    assert found["target"] == "face" and found["score"] > 0.8
    x, y, w, h = found["box"]
    changed = rgba[..., 3] > 0
    ys, xs = np.nonzero(changed)
    assert (
        changed.any() and xs.min() >= x - 16 and xs.max() < x + w + 16 and ys.min() >= y - 16 and ys.max() < y + h + 16
    )
    assert rgba[y + h // 2, x + w // 2, 3] == 255, "the face's centre is repainted fully"
    assert np.array_equal(rgba[~changed][:, :3], image[~changed][:, :3]), "outside the face the pixels stay"
    assert not np.array_equal(rgba[y : y + h, x : x + w, :3], image[y : y + h, x : x + w, :3])
    assert progress[-1].step == progress[-1].total == 2


def test_detail_separate_gives_one_layer_per_face_at_its_place(client):
    image = np.concatenate([portrait(), portrait()], axis=1)
    results = run(client, job("detail", image=image, detail={"separate": True}))
    assert len(results) == 2
    boxes = sorted(layer.info["detection"]["box"][0] for layer, _ in results)
    assert abs(boxes[0] - FACE[0]) <= 4 and abs(boxes[1] - FACE[0] - 512) <= 4
    for layer, rgba in results:
        bx, by, bw, bh = layer.info["detection"]["box"]
        assert layer.x - 10 <= bx and layer.x - 10 + layer.width >= bx + bw and layer.width < 256
        assert rgba[by + bh // 2 - (layer.y - 20), bx + bw // 2 - (layer.x - 10), 3] == 255
        assert layer.name.startswith("detail face")


def test_detail_mode_on_a_selection_only_takes_faces_inside_it(client):
    image = np.concatenate([portrait(), portrait()], axis=1)
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[:, 512:] = 255
    ((layer, rgba),) = run(client, job("detail", image=image, mask=mask))
    (found,) = layer.info["detections"]
    assert found["box"][0] > 512 and (rgba[:, :512, 3] == 0).all()


def test_detail_after_an_inpaint_job_repaints_the_faces_in_its_box(client):
    image = portrait()
    mask = np.zeros((512, 512), np.uint8)
    mask[400:500, 20:120] = 255  # far from the face
    progress = []
    job_msg = job("inpaint", image=image, mask=mask, strength=0.5, detail={"enabled": True, "separate": True})
    (plain, plain_rgba), (part, _) = run(client, job_msg, progress)
    assert plain.info["detections"][0]["target"] == "face" and part.info["detection"]["target"] == "face"
    assert plain_rgba[FACE[1] + 50, FACE[0] + 45, 3] == 0, "separate: the job's own layer stays as it was"
    assert progress[-1].step == progress[-1].total == 2 + 1, "the job's 2 steps, then int(4 x 0.4) for the face"
    job_msg["params"]["detail"]["separate"] = False
    ((layer, rgba),) = run(client, job_msg)
    assert rgba[FACE[1] + 50, FACE[0] + 45, 3] == 255 and rgba[450, 70, 3] == 255
    assert layer.name.endswith("+ detail")


def test_one_detail_job_repaints_a_hand_and_a_face_and_nothing_else(client):
    image = portrait()
    tiny_palm.draw_hand(image, 373, 352, 64)
    progress = []
    msg = job("detail", image=image, detail={"targets": ["face", "hand"], "strength": 0.5, "padding": 16})
    ((layer, rgba),) = run(client, msg, progress)
    found = {d["target"]: d for d in layer.info["detections"]}
    assert sorted(found) == ["face", "hand"] and layer.name == "detail 2 face/hand (7)"
    assert all(abs(a - b) <= 4 for a, b in zip(found["face"]["box"], FACE))
    assert all(abs(a - b) <= 3 for a, b in zip(found["hand"]["box"], HAND))
    inside = np.zeros((512, 512), bool)
    for target in ("face", "hand"):
        x, y, w, h = found[target]["box"]
        pad = max(16, max(w, h) // 4)  # the crop each region is inpainted in
        inside[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad] = True
        assert rgba[y + h // 2, x + w // 2, 3] == 255, f"the {target}'s centre is repainted fully"
        assert not np.array_equal(rgba[y : y + h, x : x + w, :3], image[y : y + h, x : x + w, :3]), (
            f"the {target} changed"
        )
    changed = rgba[..., 3] > 0
    assert not (changed & ~inside).any(), "nothing changes outside the two regions"
    assert np.array_equal(rgba[~changed][:, :3], image[~changed][:, :3])
    assert progress[-1].step == progress[-1].total == 2 * 2, "int(4 x 0.5) steps for each of the two regions"


def test_the_server_names_the_detail_targets_whose_detectors_are_installed(client, start_server, empty_models_dir):
    assert client.welcome.capabilities["detail_targets"] == ["face", "hand"]
    detectors = [(m["name"], m["targets"]) for m in client.welcome.models if m["kind"] == "detector"]
    assert detectors == [("face_detection_yunet_tests", ["face"]), ("palm_detection_tests", ["hand"])]
    assert all("path" not in m for m in client.welcome.models), "where the files lie is not told"
    tiny_yunet.write_detector(empty_models_dir / "detectors")
    from protocol.client import Client

    with Client(start_server([empty_models_dir]).url, client_name="faces-only") as other:
        assert other.welcome.capabilities["detail_targets"] == ["face"]


def test_without_a_detector_and_on_the_classical_engine_the_detailer_says_what_to_do(client):
    with pytest.raises(JobFailed) as err:
        run(client, job("detail", model="classical", image=picture()))
    assert err.value.code == "unsupported" and "diffusion checkpoint" in str(err.value)
    with pytest.raises(JobFailed) as err:
        run(client, job("detail", image=picture(), detail={"targets": ["feet"]}))
    assert err.value.code == "bad_request" and err.value.field == "params.detail.targets[0]"


def test_params_carry_hires_and_detail_on_the_wire():
    params = Params.parse_map(
        {"hires": {"enabled": True, "upscaler": "lanczos"}, "detail": {"separate": True}}, "", Limits()
    )
    assert params.hires == Hires(enabled=True, upscaler="lanczos") and params.detail == Detail(separate=True)
    assert Params().as_dict()["hires"]["enabled"] is False and Params().as_dict()["detail"]["targets"] == ("face",)


def test_readme_tables_cover_hires_and_detail():
    from protocol import messages as m
    from protocol.schema import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "protocol" / "README.md").read_text()
    for model in (m.Job, m.Params, m.Hires, m.Detail):
        assert markdown_table(model) in readme, f"protocol/README.md's table of {model.__name__} is out of date"


def test_models_pull_detailer_gets_a_detector_the_detailer_finds(hub, tmp_path):
    """The catalogue's face and hand detectors, pulled from the hub stand-in (serving the tests' detectors: the
    catalogue's exact sizes and checksums are those of the zoo's files, so these files' are put in), are what the
    detailer loads."""
    import dataclasses
    import hashlib

    from server.downloads import Catalogue
    from server.downloads.pull import pull_file

    items = Catalogue.load().resolve("detailer")
    assert [i.target for i in items] == [
        "detectors/face_detection_yunet_2023mar.onnx",
        "detectors/palm_detection_mediapipe_2023feb.onnx",
    ]
    for item, data in zip(items, (tiny_yunet.model_bytes(), tiny_palm.model_bytes())):
        assert item.kind == "detector" and item.serves("detail") and item.licence
        hub.files[(item.repo, item.file)] = data
        pull_file(dataclasses.replace(item, size=len(data), sha256=hashlib.sha256(data).hexdigest()), tmp_path)
    image = portrait()
    tiny_palm.draw_hand(image, 373, 352, 64)
    found = Detectors([tmp_path]).detect(image[..., :3], ("face", "hand"), 0.5)
    assert [f.target for f in found] == ["face", "hand"]


def test_paintbridge_run_hires_and_detail_from_the_command_line(models_dir, tmp_path, paintbridge_cli):
    def cli(*args):
        proc = paintbridge_cli(
            "run", *args, "--models", str(models_dir), "--model", "tiny-sd15", "--steps", "2", "--seed", "5"
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    out = tmp_path / "hires.png"
    said = cli(
        "generate",
        "--width",
        str(W),
        "--height",
        str(H),
        "--hires",
        "--hires-upscaler",
        "lanczos",
        "--hires-strength",
        "0.5",
        "--out",
        str(out),
    )
    assert f"{out}: {W}x{H} at (0, 0), seed 5" in said and Image.open(out).size == (W, H)
    Image.fromarray(portrait()).save(tmp_path / "in.png")
    out = tmp_path / "face.png"
    said = cli(
        "detail",
        "--image",
        str(tmp_path / "in.png"),
        "--detail-strength",
        "0.6",
        "--detail-separate",
        "--out",
        str(out),
    )
    assert f"{out}: " in said and "seed 5" in said
    result = np.asarray(Image.open(out).convert("RGBA"))
    assert result.shape == (512, 512, 4), "the detected face over the input"
    x, y, w, h = FACE
    changed = np.any(result[..., :3] != portrait()[..., :3], axis=2)
    assert changed[y + h // 2, x + w // 2] and not changed[: y - 40].any() and not changed[y + h + 40 :].any()


def test_flux_and_sd3_checkpoints_refuse_hires_and_detail_naming_the_field(client):
    with pytest.raises(JobFailed) as err:
        run(client, job("generate", "tiny-flux", width=W, height=H, hires={"enabled": True}))
    assert err.value.code == "unsupported" and err.value.field == "params.hires" and "SD1.5" in str(err.value)
    with pytest.raises(JobFailed) as err:
        run(client, job("img2img", "tiny-flux", image=picture(), detail={"enabled": True}))
    assert err.value.code == "unsupported" and err.value.field == "params.detail"
    with pytest.raises(JobFailed) as err:
        run(client, job("detail", "tiny-flux", image=picture()))
    assert err.value.code == "unsupported" and err.value.field == "mode" and "SD1.5 and SDXL" in str(err.value)


def test_a_detail_crop_cuts_controls_reference_masks_and_regions_to_the_crop():
    from server.core import Control, Job, Region
    from server.diffusion.detail import crop_area, crop_parts

    image = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8)
    cut = crop_area(image, (10, 20), (16, 23, 20, 27))  # document box partly right of and below the image
    assert cut.shape == (4, 4) and np.array_equal(cut[:3, :2], image[3:6, 6:8]) and not cut[:, 2:].any()
    assert not crop_area(image, (10, 20), (0, 0, 5, 5)).any()
    far, near = np.zeros((6, 8), np.uint8), np.zeros((6, 8), np.uint8)
    far[0, 0], near[4, 7] = 255, 255
    edges = np.full((6, 8, 3), 9, np.uint8)
    parts = crop_parts(
        Job("j", "inpaint", controls=[Control("canny", edges)], regions=[Region("far", far), Region("near", near)]),
        (10, 20),
        (15, 22, 18, 26),
    )
    assert parts["controls"][0].image.shape == (4, 3, 3) and parts["controls"][0].image[:, :3].max() == 9
    assert [r.prompt for r in parts["regions"]] == ["near"] and parts["regions"][0].mask[2, 2] == 255


def test_detail_keeps_the_jobs_control_layer_and_region_on_the_faces_crop(client):
    image = portrait()
    edges = np.zeros((512, 512, 4), np.uint8)
    edges[::6, :, :3] = 255
    edges[..., 3] = 255
    near, far = np.zeros((512, 512), np.uint8), np.zeros((512, 512), np.uint8)
    near[FACE[1] : FACE[1] + FACE[3], FACE[0] : FACE[0] + FACE[2]] = 255
    far[480:, :40] = 255
    mask = np.zeros((512, 512), np.uint8)
    mask[400:500, 20:120] = 255  # far from the face
    plain = job("inpaint", image=image, mask=mask, strength=0.5, detail={"enabled": True, "separate": True})
    guided = dict(
        plain,
        controls=[{"type": "canny", "image": payload(edges)}],
        regions=[{"prompt": "a bronze statue", "mask": payload(near)}, {"prompt": "grass", "mask": payload(far)}],
    )
    _, (face, rgba) = run(client, guided)
    assert face.info["controlnets"] == ["control_tiny_sd15_canny"], "the control layer guides the face's inpaint"
    assert face.info["regions"] == 1, "the region over the face applies there, the far one is left out"
    _, (plain_face, plain_rgba) = run(client, plain)
    assert not plain_face.info.get("controlnets") and not np.array_equal(rgba, plain_rgba)
