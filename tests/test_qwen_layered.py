"""Qwen-Image-Layered through the real websocket server, on a tiny random-weight model at 64 px, offline: a picture
into a group of RGBA layers (mode ``decompose``), its recognition and what it is offered, and refusals by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tiny_qwen
from protocol.client import JobFailed
from protocol.errors import ProtocolError
from protocol.messages import ResultLayer
from server.models.registry import ModelRegistry
from test_families import H, W, job, payload, picture, pixels, selection

MODELS = ("qwen-layered", "qwen", "qwen-controlnet", "qwen-split", "qwen-layered-split")
LAYERED = "tiny-qwen-layered"


def decompose(count: int = 3, **params) -> dict:
    msg = job("decompose", LAYERED, prompt=params.pop("prompt", "a red apple on a table"), layer_count=count, **params)
    msg["params"].pop("inpaint_method")
    return msg


def test_the_layered_folder_is_its_own_family_that_runs_decompose_only(models_dir):
    got = {e["name"]: e for e in ModelRegistry([models_dir]).listing() if e["kind"] == "checkpoint"}
    entry = got[LAYERED]
    assert (entry["arch"], entry["variant"], entry.get("decompose"), entry.get("edit")) == (
        "qwen-image-layered",
        "layered",
        True,
        None,
    )
    assert "problem" not in entry and "decompose" not in got["tiny-qwen"]


def test_the_split_layout_is_recognised_and_gives_the_folders_layers_with_its_rgba_vae(client, models_dir):
    got = {e["name"]: e for e in ModelRegistry([models_dir]).listing()}
    split = got["tiny-qwen-layered-split"]
    assert (split["arch"], split["variant"], split["format"], split.get("decompose")) == (
        "qwen-image-layered",
        "layered",
        "safetensors",
        True,
    )
    assert "problem" not in split
    folder = pixels(client.run(decompose(2)))
    result = client.run(dict(decompose(2), model="tiny-qwen-layered-split"))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folder, pixels(result)))
    assert result.layers[0].info["parts"] == {"text_encoder": "tiny-qwen_2.5_vl", "vae": "tiny-qwen_image_layered_vae"}
    # beside the RGBA VAE, Qwen-Image's split checkpoint still takes its own RGB one
    plain = client.run(job("img2img", "tiny-qwen-split"))
    assert plain.layers[0].info["parts"]["vae"] == "tiny-qwen_image_vae"


def test_a_split_layered_transformer_names_its_configs_and_its_rgba_vae_when_missing(tmp_path, start_server):
    import torch
    from diffusers import AutoencoderKLQwenImage

    from protocol.client import Client

    built = tiny_qwen.layered_split_files()
    for sub in ("diffusion_models", "vae", "text_encoders"):
        (tmp_path / sub).mkdir()
    transformer = built / "diffusion_models" / "tiny-qwen-layered-split.safetensors"
    (tmp_path / "diffusion_models" / transformer.name).symlink_to(transformer)
    encoder = tiny_qwen.split_files() / "text_encoders" / "tiny-qwen_2.5_vl.safetensors"
    (tmp_path / "text_encoders" / encoder.name).symlink_to(encoder)
    # an RGB VAE of the same latent size: not the layered model's
    config = json.loads(
        (built / "diffusion_models" / "tiny-qwen-layered-split.config" / "vae" / "config.json").read_text()
    )
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    AutoencoderKLQwenImage(**dict(config, input_channels=3)).save_pretrained(tmp_path / "rgb")
    shutil.copy(tmp_path / "rgb" / "diffusion_pytorch_model.safetensors", tmp_path / "vae" / "rgb_vae.safetensors")
    thread = start_server(model_dirs=[tmp_path])
    with Client(thread.url, client_name="test-qwen-layered") as c:
        with pytest.raises(JobFailed) as err:
            c.run(dict(decompose(2), model="tiny-qwen-layered-split"), timeout=120)
        assert err.value.code == "model_not_found" and "tiny-qwen-layered-split.config" in str(err.value)
        assert "processor/" in str(err.value)
        shutil.copytree(
            built / "diffusion_models" / "tiny-qwen-layered-split.config",
            tmp_path / "diffusion_models" / "tiny-qwen-layered-split.config",
        )
        with pytest.raises(JobFailed) as err:
            c.run(dict(decompose(2), model="tiny-qwen-layered-split"), timeout=120)
        assert err.value.code == "model_not_found" and "qwen_image_layered_vae" in str(err.value), str(err.value)


def test_a_layered_folder_without_its_rgba_vae_or_a_part_is_named(tmp_path):
    built = tiny_qwen.checkpoint_folder("qwen-layered")
    folder = tmp_path / "checkpoints" / "broken-layered"
    shutil.copytree(built, folder)
    shutil.rmtree(folder / "processor")
    config = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps(dict(config, input_channels=3)))
    (entry,) = [e for e in ModelRegistry([tmp_path]).listing() if e["name"] == "broken-layered"]
    assert entry["arch"] == "qwen-image-layered" and "processor/" in entry["problem"]
    shutil.copytree(built / "processor", folder / "processor")
    (entry,) = [e for e in ModelRegistry([tmp_path]).listing() if e["name"] == "broken-layered"]
    assert "RGBA VAE" in entry["problem"] and "takes 3 channels" in entry["problem"]


def test_decompose_returns_the_layers_in_one_group_bottom_first_with_alpha(client):
    progress = []
    result = client.run(
        dict(decompose(3), previews=True), on_event=lambda m: m.type == "progress" and progress.append(m)
    )
    got = pixels(result)
    assert len(got) == 3 and progress and progress[-1].step == progress[-1].total
    assert progress[-1].preview is not None
    names = [layer.name for layer, _ in got]
    assert names == ["Layer 1 (bottom)", "Layer 2", "Layer 3 (top)"]
    assert {layer.group for layer, _ in got} == {"a red apple on a table (seed 42)"}
    for layer, rgba in got:
        assert (layer.x, layer.y, layer.width, layer.height) == (300, 200, W, H)
        assert layer.info["family"] == "qwen-image-layered" and layer.info["layers"] == 3
        assert layer.seed == 42
        alpha = rgba[..., 3]
        assert alpha.min() < 255 and alpha.max() > 0 and len(np.unique(alpha)) > 8  # real alpha, not a mask
    assert not np.array_equal(got[0][1], got[1][1])
    # the same seed gives the same layers; the count follows params.layer_count
    again = pixels(client.run(decompose(3)))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(got, again))
    assert len(client.run(decompose(2, seed=7)).layers) == 2


def test_an_empty_prompt_is_captioned_by_the_model_and_a_batch_gives_one_group_per_seed(client):
    result = client.run(decompose(2, prompt="", batch=2, seed=5))
    groups = [layer.group for layer in result.layers]
    assert groups == ["Layers (seed 5)"] * 2 + ["Layers (seed 6)"] * 2


def test_the_transparent_parts_of_the_picture_reach_the_model(client):
    """The layered VAE reads alpha: a picture with a transparent half decomposes differently."""
    msg = decompose(2)
    half = picture()
    half[:, : W // 2, 3] = 0
    msg["image"] = payload(half)
    a = pixels(client.run(decompose(2)))[0][1]
    b = pixels(client.run(msg))[0][1]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "msg, field, words",
    [
        (job("decompose", "tiny-qwen", layer_count=3), "mode", "needs a Qwen-Image-Layered checkpoint"),
        (job("decompose", "classical", layer_count=3), "mode", "Qwen-Image-Layered"),
        (job("img2img", LAYERED), "mode", "runs nothing else"),
        (job("inpaint", LAYERED, mask=selection()), "mode", "runs nothing else"),
        (dict(decompose(2), mask=payload(selection())), "mask", "takes no mask"),
        (dict(decompose(2), references=[{"image": payload(picture()), "type": "content"}]), "references", "no ref"),
    ],
)
def test_decompose_and_the_layered_model_are_refused_by_name_elsewhere(client, msg, field, words):
    with pytest.raises(JobFailed) as err:
        client.run(msg)
    assert err.value.code == "unsupported" and err.value.field == field and words in str(err.value)


def test_welcome_offers_decompose_for_the_layered_family_only(client):
    from client.offers import offers

    families = client.welcome.capabilities["families"]
    assert families["qwen-image-layered"]["modes"] == ["decompose"]
    assert all("decompose" not in f["modes"] for name, f in families.items() if name != "qwen-image-layered")
    # besides the modes no checkpoint runs (upscale, preprocess, caption): decompose alone
    assert set(offers(client.welcome, LAYERED).modes) == {"decompose", "upscale", "preprocess", "caption"}
    assert "decompose" not in offers(client.welcome, "tiny-qwen").modes
    assert "decompose" not in offers(client.welcome, "classical").modes
    assert "decompose" in client.welcome.capabilities["modes"]


def test_a_result_layer_group_is_typed_and_checked():
    base = {"name": "a", "x": 0, "y": 0, "width": 1, "height": 1, "format": "rgba8", "data": b"\0" * 4}
    assert ResultLayer.from_wire(base).group is None
    assert ResultLayer.from_wire(dict(base, group="Layers")).group == "Layers"
    for bad in (" ", 3, "x" * 300):
        with pytest.raises(ProtocolError) as err:
            ResultLayer.from_wire(dict(base, group=bad))
        assert err.value.field == "layer.group"


def test_factory_builds_the_layered_model_offline_with_an_rgba_vae():
    config = json.loads((tiny_qwen.checkpoint_folder("qwen-layered") / "vae" / "config.json").read_text())
    assert config["input_channels"] == 4


def test_a_layer_count_out_of_range_is_a_bad_request(client):
    for count in (1, 11):
        with pytest.raises((JobFailed, ProtocolError)) as err:
            client.run(decompose(count))
        assert err.value.field == "params.layer_count"


def test_the_command_line_writes_each_layer_with_its_own_alpha_bottom_first(client, server, tmp_path):
    from PIL import Image

    from server.cli import main

    Image.fromarray(picture(), "RGBA").save(tmp_path / "photo.png")
    out = tmp_path / "layers.png"
    args = ["run", "decompose", "--image", str(tmp_path / "photo.png"), "--model", LAYERED, "--layer-count", "2"]
    args += ["--steps", "2", "--seed", "3", "--prompt", "a red apple on a table", "--out", str(out)]
    assert main(args + ["--server", server.url]) == 0
    written = [np.asarray(Image.open(tmp_path / f"layers-{i}.png").convert("RGBA")) for i in (1, 2)]
    expected = pixels(client.run(decompose(2, seed=3)))
    assert all(np.array_equal(w, e[1]) for w, e in zip(written, expected))
