"""Reference images on Flux.1 (issue 15) through diffusers' FluxPriorReduxPipeline, over the real websocket server, on
tiny random-weight Redux models laid out as users download them (ComfyUI's style_models/ + clip_vision/ files, and a
diffusers FluxPriorReduxPipeline folder: tests/tiny_redux.py), at 64 px, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import factory
from protocol.client import Client, JobFailed
from server.models import redux as rdx
from server.models.registry import ModelRegistry
from test_references import changed, payload, picture, reference
from test_references import run as sd_run

MODELS = ("flux", "flux-fill", "sd3", "redux-file", "redux-folder")
W, H = 64, 64
MOVED = 0.05  # mean |Δ| per channel: the tiny Flux (1 + 1 blocks) reads its text tokens weakly, so changes are small
FILE, FOLDER = "flux1-redux-tiny", "FLUX.1-Redux-tiny"


def run(client, model: str = "tiny-flux", references=(), mode: str = "generate", **extra) -> np.ndarray:
    """``tests/test_references.run`` on the tiny Flux: 3 steps, the family's own guidance, more time."""
    out = sd_run(client, model, references, mode, steps=3, cfg=None, timeout=300, **extra)
    run.last = sd_run.last
    return out


def refused(client, code: str = "unsupported", **job) -> object:
    with pytest.raises(JobFailed) as err:
        run(client, **job)
    assert err.value.error.code == code, err.value.error.message
    return err.value.error


# --- registry ------------------------------------------------------------------------------------------------------


def test_redux_models_and_siglip_towers_are_listed_in_both_layouts(client):
    listing = {(m["kind"], m["name"]): m for m in client.list_models()}
    for name in (FILE, FOLDER):
        entry = listing[("redux", name)]
        assert entry["arch"] == "flux" and entry["reference_types"] == ["content", "style"] and "problem" not in entry
    assert listing[("redux", FOLDER)]["format"] == "diffusers"
    tower = listing[("clip_vision", "sigclip_vision_tiny")]
    assert tower["arch"] == "siglip" and tower["encoder"].startswith("SigLIP 24-wide") and "problem" not in tower
    assert not any(k == "checkpoint" and "Redux" in n for k, n in listing)


def test_a_redux_folder_among_the_checkpoints_is_a_redux_model_not_a_checkpoint(tmp_path):
    built = factory.make_models_dir(tmp_path / "cache-links", ("redux-folder",))
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / FOLDER).symlink_to((built / "style_models" / FOLDER).resolve(), target_is_directory=True)
    registry = ModelRegistry([models])
    assert [e.name for e in registry.entries("checkpoint")] == []
    assert registry.get(FOLDER, "redux").info == {
        "redux_dim": 24,
        "txt_dim": 32,
        "encoder_inside": "SigLIP 24-wide, 2 layers, 32 px",
    }


def test_the_shipped_siglip_config_matches_the_real_towers_key_layout():
    """The weightless so400m/14-384 config builds a tower (meta device: no weights) whose tensor names, with ComfyUI's
    ``vision_model.`` prefix, the registry reads back as the standard SigLIP it is; its image processor is 384 px."""
    from accelerate import init_empty_weights
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    folder = rdx.CONFIGS_DIR / "siglip-so400m-patch14-384"
    with init_empty_weights():
        model = SiglipVisionModel(SiglipVisionConfig.from_pretrained(str(folder)))
    shapes = {"vision_model." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert rdx.looks_like_siglip(shapes)
    found = rdx.siglip_info(shapes).info
    assert (found["hidden_size"], found["layers"], found["image_size"]) == (1152, 27, 384) and found["head"]
    assert rdx.standard_siglip_config(found) == folder
    assert 380e6 < sum(int(np.prod(s)) for s in shapes.values()) < 450e6  # the so400m tower (≈ 428 M)
    assert SiglipImageProcessor.from_pretrained(str(folder)).size["height"] == 384
    real = {
        "redux_up.weight": (12288, 1152),
        "redux_up.bias": (12288,),
        "redux_down.weight": (4096, 12288),
        "redux_down.bias": (4096,),
    }  # flux1-redux-dev.safetensors
    assert rdx.redux_info(real).info == {"redux_dim": 1152, "txt_dim": 4096}


# --- the reference reaches the transformer ---------------------------------------------------------------------------


def test_a_siglip_file_without_a_config_of_its_size_is_named(tmp_path):
    import tiny_redux

    vision = tmp_path / "models" / "clip_vision"
    vision.mkdir(parents=True)
    source = tiny_redux.redux_models("redux-file") / "clip_vision" / "sigclip_vision_tiny.safetensors"
    (vision / "odd-siglip.safetensors").write_bytes(source.read_bytes())
    entry = ModelRegistry([tmp_path / "models"]).find("odd-siglip", "clip_vision")
    assert entry.arch == rdx.SIGLIP and "config.json" in entry.problem and "SigLIP 24-wide" in entry.problem


def test_files_that_are_not_redux_models_are_named():
    from server.models.identify import DetectError

    with pytest.raises(DetectError, match="redux_up"):
        rdx.redux_info({"foo.weight": (3, 4)})
    with pytest.raises(DetectError, match="do not fit"):
        rdx.redux_info({"redux_up.weight": (96, 24), "redux_down.weight": (32, 64)})


def test_a_reference_changes_flux_pixels_and_the_image_matters(client):
    plain = run(client)
    with_ref = run(client, references=[reference(1)])
    info = run.last.layers[0].info["references"]
    assert info == [
        {
            "type": "content",
            "strength": 1.0,
            "redux": FOLDER,
            "encoder": f"{FOLDER} (image_encoder)",
            "start": 0.0,
            "end": 1.0,
            "masked": False,
        }
    ]
    other = run(client, references=[reference(2)])
    assert changed(plain, with_ref) > MOVED and changed(with_ref, other) > MOVED
    assert np.array_equal(run(client, references=[reference(1)]), with_ref)  # same seed, same reference
    assert np.array_equal(run(client), plain)  # back without references
    assert np.array_equal(run(client, references=[reference(1, strength=0.0)]), plain)  # strength 0 = no reference


def test_both_download_layouts_load_the_same_weights(client):
    """The ComfyUI files (Redux embedder + SigLIP single file with its config) and the diffusers folder hold the
    same random weights: the same job gives the same pixels through either."""
    folder = run(client, references=[reference(1, model=FOLDER)])
    single = run(client, references=[reference(1, model=FILE)])
    assert run.last.layers[0].info["references"][0]["encoder"] == "sigclip_vision_tiny"
    assert np.array_equal(folder, single)


def test_strength_scales_the_image_tokens_and_several_references_concatenate(client, server):
    """What reaches the transformer (its context embedder's input, recorded by a forward pre-hook): the prompt's 512
    T5 tokens, then per reference its image tokens times its strength, in order; the pooled CLIP embedding stays the
    prompt's. (The pixels move little with strength on the tiny model: the tokens pass a biased projection and layer
    norms, so scaling them is a weak knob there, as ComfyUI's multiply strength is on the real one.)"""
    run(client)
    transformer = server.server.router.engine("families").loaded.pipe.transformer
    seen = []
    hook = transformer.context_embedder.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        run(client)
        full = run(client, references=[reference(1)])
        half = run(client, references=[reference(1, strength=0.5)])
        style = run(client, references=[reference(1, type="style")])
        both = run(client, references=[reference(1), reference(2, type="style", strength=0.7)])
        assert [r["strength"] for r in run.last.layers[0].info["references"]] == [1.0, 0.7]
        only_two = run(client, references=[reference(2)])
        with_zero = run(client, references=[reference(1), reference(2, strength=0.0)])
    finally:
        hook.remove()
    plain_t, full_t, half_t, style_t, both_t, two_t, zero_t = (t[:1] for t in seen[::3])  # 3 steps per job
    tokens = full_t.shape[1] - 512
    assert plain_t.shape[1] == 512 and tokens == 16  # 32 px / 8 px patches: 4 x 4 SigLIP states per image
    assert torch.equal(full_t[:, :512], plain_t) and torch.equal(both_t[:, : 512 + tokens], full_t)
    assert torch.allclose(half_t[:, 512:], full_t[:, 512:] * 0.5, atol=1e-6)
    assert torch.allclose(both_t[:, 512 + tokens :], two_t[:, 512:] * 0.7, atol=1e-6)
    assert torch.equal(style_t, full_t) and torch.equal(zero_t, full_t)  # one kind of tokens; strength 0 left out
    assert changed(both, full) > MOVED and changed(full, half) > 0 and changed(only_two, full) > MOVED
    assert np.array_equal(style, full) and np.array_equal(with_zero, full)


@pytest.mark.parametrize(
    "model,mode",
    [("tiny-flux", "img2img"), ("tiny-flux", "inpaint"), ("tiny-flux-fill", "inpaint"), ("tiny-flux", "outpaint")],
)
def test_references_work_in_the_painting_modes_and_on_fill(client, model, mode):
    extra = {}
    if mode == "inpaint":
        mask = np.zeros((H, W), np.uint8)
        mask[16:48, 16:48] = 255
        extra["mask"] = payload(mask)
    if mode == "outpaint":
        extra["params"] = {"steps": 3, "seed": 7, "strength": 1.0, "extend": {"right": 16}}
    plain = run(client, model=model, mode=mode, **extra)
    ref = run(client, model=model, mode=mode, references=[reference(1)], **extra)
    assert plain.shape == ref.shape and changed(plain, ref) > 0


# --- refusals --------------------------------------------------------------------------------------------------------


def test_what_redux_cannot_honour_is_refused_by_name(client):
    for kind in ("composition", "face"):
        error = refused(client, references=[reference(1, type=kind)])
        assert error.field == "references[0].type" and kind in error.message and "Flux.1" in error.message
    mask = np.full((H, W), 255, np.uint8)
    error = refused(client, references=[reference(1), reference(2, mask=payload(mask))])
    assert error.field == "references[1].mask" and "masked" in error.message and "Flux.1" in error.message
    error = refused(client, references=[reference(1, start=0.5)])
    assert error.field == "references[0].start" and "step range" in error.message
    assert refused(client, references=[reference(1, end=0.8)]).field == "references[0].end"
    error = refused(client, model="tiny-sd3", references=[reference(1)])
    assert error.field == "references" and "SD3" in error.message and "tiny-sd3" in error.message
    error = refused(client, references=[reference(1, model=FILE), reference(2, model=FOLDER)])
    assert error.field == "references[1].model"


def test_a_missing_redux_model_or_encoder_names_the_catalogue_entry(start_server, tmp_path):
    models = factory.make_models_dir(tmp_path / "m", ("flux",))
    with Client(start_server(model_dirs=[models]).url) as client:
        error = refused(client, "model_not_found", references=[reference(1)])
        assert "style_models" in error.message and "flux-redux" in error.message
    only_redux = factory.make_models_dir(tmp_path / "r", ("flux",))
    built = factory.make_models_dir(tmp_path / "cache-links", ("redux-file",))
    (only_redux / "style_models").mkdir()
    (only_redux / "style_models" / f"{FILE}.safetensors").symlink_to(
        (built / "style_models" / f"{FILE}.safetensors").resolve()
    )
    with Client(start_server(model_dirs=[only_redux]).url) as client:
        error = refused(client, "model_not_found", references=[reference(1)])
        assert "SigLIP" in error.message and "clip_vision" in error.message and "flux-redux" in error.message


def test_welcome_says_per_family_which_reference_types_it_takes(client):
    caps = client.welcome.capabilities
    assert caps["references"][:2] == ["sd15", "sdxl"] and {"flux", "flux-fill", "flux-kontext"} <= set(
        caps["references"]
    )
    by_family = caps["reference_types_by_family"]
    assert by_family["flux"] == ["content", "style"] and "face" in by_family["sdxl"] and "sd3" not in by_family


# --- command line and catalogue --------------------------------------------------------------------------------------


def test_paintbridge_run_takes_a_reference_file_on_flux(models_dir, tmp_path, paintbridge_cli):
    Image.fromarray(picture(1, 48, 40)[..., :3]).save(tmp_path / "ref.png")
    outs = {}
    for name, extra in (("plain", []), ("ref", ["--reference", f"{tmp_path / 'ref.png'}:style:0.8"])):
        out = tmp_path / f"{name}.png"
        proc = paintbridge_cli(
            "run",
            "generate",
            "--prompt",
            "a cat",
            "--models",
            str(models_dir),
            "--model",
            "tiny-flux",
            "--width",
            str(W),
            "--height",
            str(H),
            "--steps",
            "3",
            "--seed",
            "3",
            "--out",
            str(out),
            *extra,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[name] = np.asarray(Image.open(out).convert("RGBA"))
    assert changed(outs["plain"], outs["ref"]) > 0


def test_the_catalogue_knows_flux_redux():
    from server.downloads import Catalogue

    files = {f.kind: f for f in Catalogue.load().presets["flux-redux"].files}
    assert files["redux"].target == "style_models/flux1-redux-dev.safetensors"
    assert files["clip_vision"].target == "clip_vision/sigclip_vision_patch14_384.safetensors"
    assert all(f.family == "flux" or f.kind == "clip_vision" for f in files.values())


def test_models_pull_flux_redux_lands_where_the_registry_reads_it(tmp_path):
    """`paintbridge models pull flux-redux` against the hub stand-in serving the tiny files under the real names."""
    from server.downloads import Catalogue
    from tests.hubstandin import Hub

    built = factory.make_models_dir(tmp_path / "cache-links", ("redux-file",))
    content = {
        "redux": (built / "style_models" / f"{FILE}.safetensors").read_bytes(),
        "clip_vision": (built / "clip_vision" / "sigclip_vision_tiny.safetensors").read_bytes(),
    }
    models = tmp_path / "models"
    with Hub() as hub:
        for f in Catalogue.load().presets["flux-redux"].files:
            hub.files[(f.repo, f.file)] = content[f.kind]
        out = subprocess.run(
            [sys.executable, "-m", "server", "models", "pull", "flux-redux", "--models", str(models)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, **hub.env},
        )
    assert out.returncode == 0, out.stderr
    registry = ModelRegistry([models])
    assert registry.get("flux1-redux-dev", "redux").info["txt_dim"] == 32
    tower = registry.find("sigclip_vision_patch14_384", "clip_vision")
    # a tiny tower under the real name: recognised as SigLIP, and told it lacks a config of its size
    assert tower.arch == "siglip" and "config.json" in tower.problem
