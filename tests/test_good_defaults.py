"""Good by default, on tiny stand-ins of the SD1.5 starter set's files pulled from the local stand-in hub
(tests/hubstandin.py) under their real names, with nothing changed after the pull: Inpaint runs the best installed
method (the inpaint ControlNet on a pre-filled hole; then the matching inpainting checkpoint once it is pulled) and a
live frame on the default style runs with the LCM LoRA at its preset steps — each said by ``result.info`` and seen in
pixels that differ from the plain path at the same seed. The stand-ins and their pull: tests/starterstandins.py."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import factory
from protocol import Job, Params
from protocol.client import Client, JobFailed
from protocol.images import GRAY8, RGBA8, ImagePayload
from server.app import ServerThread
from server.config import ServerConfig
from tests.starterstandins import build, pull

SIZE = 64
SEED = 7


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Dict[str, Path]:
    """Catalogue file id → the tiny stand-in served under its name (tests/starterstandins.py)."""
    return build(tmp_path_factory.mktemp("standins"))


def picture():
    img = np.zeros((SIZE, SIZE, 4), np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img[..., 0] = xx * 4
    img[..., 1] = 60 + (yy // 8 % 2) * 120
    img[..., 2] = 200 - yy * 2
    img[..., 3] = 255
    return img


def hole():
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[18:46, 18:46] = 255
    return mask


def inpaint(client: Client, **params):
    img, mask = picture(), hole()
    result = client.run(
        Job(
            f"inpaint-{len(params)}-{params.get('inpaint_method', 'auto')}",
            "inpaint",
            prompt="a bird",
            image=ImagePayload(SIZE, SIZE, RGBA8, img.tobytes()),
            mask=ImagePayload(SIZE, SIZE, GRAY8, mask.tobytes()),
            params=Params(seed=SEED, steps=4, **params),
        ),
        timeout=300,
    )
    (layer,) = result.layers
    return layer, np.frombuffer(layer.data, np.uint8).reshape(SIZE, SIZE, 4)


def serve(models: Path, styles: Path) -> ServerThread:
    return ServerThread(ServerConfig(port=0, model_dirs=[models], styles_dir=styles)).start()


def test_inpaint_picks_the_controlnet_then_the_inpainting_checkpoint_as_they_are_pulled(standins, tmp_path):
    models = tmp_path / "models"
    pull(models, standins, ["dreamshaper-8", "sd15-controlnet-inpaint"])
    server = serve(models, tmp_path / "styles")
    try:
        with Client(server.url, "test-good-defaults") as client:
            layer, auto = inpaint(client)
            info = layer.info["inpaint"]
            assert info["method"] == "controlnet", info
            assert info["control"] == "control_v11p_sd15_inpaint_fp16" and info["prefill"] == "patch"
            assert info["strength"] == 0.9 and info["color_match"] is True
            assert "inpaint ControlNet" in info["why"]
            assert layer.info["controlnets"] == ["control_v11p_sd15_inpaint_fp16"]
            assert layer.info["model"] == "DreamShaper_8_pruned"
            plain_layer, plain = inpaint(client, inpaint_method="plain")
            assert plain_layer.info["inpaint"]["method"] == "plain" and plain_layer.info["controlnets"] == []
            inside = hole() > 0
            assert np.abs(auto[inside].astype(int) - plain[inside].astype(int)).mean() > 1.0
            untouched = auto[..., 3] == 0  # beyond the grown, feathered hole: the picture, exactly
            assert untouched.any() and (auto[untouched][:, :3] == picture()[untouched][:, :3]).all()
            with pytest.raises(JobFailed) as err:
                inpaint(client, inpaint_method="checkpoint")
            assert err.value.field == "params.inpaint_method" and "inpainting checkpoint" in str(err.value)

        pull(models, standins, ["dreamshaper-8-inpainting"])
        with Client(server.url, "test-good-defaults") as client:
            client.list_models(timeout=300)  # the server looks at its folders again
            layer, auto = inpaint(client)
            info = layer.info["inpaint"]
            assert info["method"] == "checkpoint", info
            assert info["model"] == layer.info["model"] == "DreamShaper_8_INPAINTING.inpainting"
            assert "matches 'DreamShaper_8_pruned'" in info["why"] and info["prefill"] == ""
            _, plain = inpaint(client, inpaint_method="plain")
            assert np.abs(auto[hole() > 0].astype(int) - plain[hole() > 0].astype(int)).mean() > 1.0
    finally:
        server.stop()


def live_frame(client: Client, job_id: str, style: str = ""):
    img = picture()
    result = client.run(
        Job(
            job_id,
            "img2img",
            prompt="a bird",
            style=style,
            live=True,
            image=ImagePayload(SIZE, SIZE, RGBA8, img.tobytes()),
            params=Params(seed=SEED),
        ),
        timeout=300,
    )
    (layer,) = result.layers
    return layer, np.frombuffer(layer.data, np.uint8).reshape(SIZE, SIZE, 4)


def test_live_frames_use_the_lcm_lora_of_the_default_style_once_it_is_pulled(standins, tmp_path):
    models = tmp_path / "models"
    pull(models, standins, ["dreamshaper-8"])
    server = serve(models, tmp_path / "styles")
    try:
        with Client(server.url, "test-good-defaults") as client:
            style = client.welcome.defaults["styles"]["sd15"]
            assert style == "sd15-general"
            assert client.list_styles(timeout=300).fewstep["sd15"] == {"installed": "", "pull": "sd15-lcm-lora"}
            slow, _ = live_frame(client, "slow", style)
            live = slow.info["style"]["live"]
            assert live["fewstep"] == "" and live["pull"] == "sd15-lcm-lora"  # still runs, and says what to pull
            assert slow.info["style"]["checkpoint"] == "DreamShaper_8_pruned" and live["steps"] == 25

        pull(models, standins, ["sd15-lcm-lora"])
        with Client(server.url, "test-good-defaults") as client:
            client.list_models(timeout=300)
            assert client.list_styles(timeout=300).fewstep["sd15"] == {"installed": "lcm-lora-sdv1-5", "pull": ""}
            fast, fast_pixels = live_frame(client, "fast", style)
            live = fast.info["style"]["live"]
            assert (live["fewstep"], live["steps"], live["cfg"], live["sampler"]) == ("lcm-lora-sdv1-5", 4, 1.0, "LCM")
            assert fast.info["style"]["loras"] == [{"name": "lcm-lora-sdv1-5", "weight": 1.0}]
            assert fast.info["loras"] == [{"name": "lcm-lora-sdv1-5", "weight": 1.0}] and fast.info["steps"] == 4
            plain, plain_pixels = live_frame(client, "plain")
            assert "style" not in plain.info and plain.info["steps"] == 20
            assert np.abs(fast_pixels.astype(int) - plain_pixels.astype(int)).mean() > 1.0
    finally:
        server.stop()


def test_sdxl_inpaint_uses_the_union_controlnets_inpaint_mode_only_where_it_has_one(tmp_path):
    """SDXL without an inpainting checkpoint: a union ControlNet with the ProMax's eight modes (inpaint among them) is
    chosen and said; the first union model's six modes have no inpaint, so it is left alone (the plain path)."""
    import torch
    from diffusers import ControlNetUnionModel

    models = factory.make_models_dir(tmp_path / "models", ("sdxl", "cn-sdxl-union"))
    unet = factory.build_sdxl().unet
    torch.manual_seed(3)
    promax = ControlNetUnionModel(
        **{
            **factory._unet_to_controlnet_kwargs(unet.config),
            "conditioning_embedding_out_channels": (16, 16, 32, 32),
            "num_trans_channel": 32,
            "num_trans_head": 2,
            "num_proj_channel": 32,
            "num_control_type": 8,
        }
    )
    promax.load_state_dict(unet.state_dict(), strict=False)
    factory._randomize_zero_modules(promax, 3)
    server = serve(models, tmp_path / "styles")
    try:
        with Client(server.url, "test-good-defaults") as client:
            layer, _ = inpaint(client, inpaint_method="auto")
            assert layer.info["inpaint"]["method"] == "plain", layer.info["inpaint"]  # six modes: no inpaint
            promax.save_pretrained(models / "controlnet" / "controlnet-union-promax-tiny-sdxl")
            client.list_models(timeout=300)
            layer, auto = inpaint(client)
            info = layer.info["inpaint"]
            assert (info["method"], info["control"]) == ("controlnet", "controlnet-union-promax-tiny-sdxl"), info
            assert "union ControlNet's inpaint mode" in info["why"] and info["prefill"] == "patch"
            assert layer.info["controlnets"] == ["controlnet-union-promax-tiny-sdxl"]
            _, plain = inpaint(client, inpaint_method="plain")
            assert np.abs(auto[hole() > 0].astype(int) - plain[hole() > 0].astype(int)).mean() > 1.0
    finally:
        server.stop()


@pytest.mark.parametrize(
    "which, method, code, words",
    [
        (("sd15",), "fill", "unsupported", "Flux.1's Fill"),
        (("sd15",), "checkpoint", "model_not_found", "inpainting checkpoint matching 'tiny-sd15'"),
        (("sd15",), "controlnet", "model_not_found", "none is installed"),
        (("sd15", "sd15-inpaint"), "controlnet", "model_not_found", "none is installed"),
    ],
)
def test_a_forced_method_that_cannot_run_is_refused_naming_the_field(tmp_path, which, method, code, words):
    from server import inpaintplan
    from server.core import Job as CoreJob
    from server.models.registry import ModelRegistry

    registry = ModelRegistry([factory.make_models_dir(tmp_path / "models", which)])
    entry = registry.get("tiny-sd15", "checkpoint")
    job = CoreJob("a", "inpaint", image=picture(), mask=hole(), params=Params(inpaint_method=method))
    with pytest.raises(Exception) as err:
        inpaintplan.plan(job, entry, registry)
    assert (err.value.code, err.value.field) == (code, "params.inpaint_method") and words in err.value.message
    inside = hole() > 0
    image = picture()
    image[inside] = (255, 0, 255, 255)  # an object to remove: the pre-fill replaces it from around the hole
    plain, info = inpaintplan.plan(
        CoreJob("a", "inpaint", image=image, mask=hole(), params=Params(inpaint_method="plain")), entry, registry
    )
    assert info["method"] == "plain" and info["prefill"] == "patch" and plain.params.strength == 0.9
    assert plain.params.color_match and plain.controls == [] and plain.model == ""
    assert (plain.image[inside][:, :3] != (255, 0, 255)).any(axis=1).all()
    assert np.array_equal(plain.image[:8], image[:8]) and np.array_equal(plain.image[:, :8], image[:, :8])


def test_flux_inpaint_takes_fill_unless_the_job_carries_control_layers(tmp_path):
    """Fill takes no ControlNet: a Flux.1 inpaint job with a control layer stays on the plain path (said why) rather
    than being moved to the Fill model and refused; without one it runs on Fill."""
    from server import inpaintplan
    from server.core import Control, Job as CoreJob
    from server.models.registry import ModelRegistry

    registry = ModelRegistry([factory.make_models_dir(tmp_path / "models", ("flux", "flux-fill"))])
    entry = registry.get("tiny-flux", "checkpoint")
    canny = Control("canny", picture()[..., :3].copy())
    _, info = inpaintplan.plan(CoreJob("a", "inpaint", image=picture(), mask=hole()), entry, registry)
    assert info["method"] == "fill", info
    guided, info = inpaintplan.plan(
        CoreJob("a", "inpaint", image=picture(), mask=hole(), controls=[canny]), entry, registry
    )
    assert info["method"] == "plain" and "control layers" in info["why"] and guided.model == "", info
