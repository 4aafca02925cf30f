"""Reference images (IP-Adapter, issue 15) through the real websocket server, on tiny random-weight IP-Adapters and
image encoders laid out as users download them (ComfyUI single files, h94's repository folders), at 64 px, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

import factory
from protocol.client import JobFailed
from server.diffusion import references as refs
from server.models.registry import ModelRegistry

MODELS = ("sd15", "sdxl", "flux", "ipa-sd15-plus", "ipa-sd15-face", "ipa-sdxl")
W, H = 64, 64


def payload(arr: np.ndarray) -> dict:
    fmt = "gray8" if arr.ndim == 2 else "rgba8"
    return {"width": arr.shape[1], "height": arr.shape[0], "format": fmt, "data": np.ascontiguousarray(arr).tobytes()}


def picture(seed: int, w: int = W, h: int = H) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 4), dtype=np.uint8)
    img[..., 3] = 255
    return img


def reference(seed: int = 1, **extra) -> dict:
    return {"image": payload(picture(seed, 48, 40)), **extra}


def run(
    client,
    model: str = "tiny-sd15",
    references=(),
    mode: str = "generate",
    steps: int = 4,
    cfg: Optional[float] = 5.0,
    timeout: Optional[float] = None,
    **extra,
) -> np.ndarray:
    """The job's first layer as pixels (read-only); the result is kept in ``run.last``. ``cfg`` None: the model's."""
    msg = {"mode": mode, "model": model, "prompt": "a cat", "params": {"steps": steps, "seed": 7}}
    if cfg is not None:
        msg["params"]["cfg"] = cfg
    if mode == "generate":
        msg["params"].update(width=W, height=H)
    else:
        msg["image"] = payload(picture(99))
        msg["params"]["strength"] = 0.8
    if references:
        msg["references"] = list(references)
    msg.update(extra)
    result = client.run(msg, timeout=timeout)
    layer = result.layers[0]
    out = np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4).copy()
    out.flags.writeable = False
    run.last = result
    return out


def changed(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).mean())


# --- registry ------------------------------------------------------------------------------------------------------


def test_adapters_and_encoders_are_recognised_in_both_download_layouts(models_dir, client):
    listing = {(m["kind"], m["name"]): m for m in client.list_models()}
    plus = listing[("ipadapter", "ip-adapter-plus_tiny_sd15")]
    assert plus["arch"] == "sd15" and plus["variant"] == "plus" and "face" not in plus["reference_types"]
    assert listing[("ipadapter", "ip-adapter-plus-face_tiny_sd15")]["reference_types"] == ["face"]
    sdxl = listing[("ipadapter", "IP-Adapter/sdxl_models/ip-adapter_tiny_sdxl")]
    assert sdxl["arch"] == "sdxl" and sdxl["variant"] == "base"
    assert ("clip_vision", "CLIP-tiny-vit-a") in listing  # ComfyUI single file with a .config/ beside it
    assert ("clip_vision", "IP-Adapter/sdxl_models/image_encoder") in listing  # h94's folder
    assert not any(k == "ipadapter" and "image_encoder" in n for k, n in listing)
    registry = ModelRegistry([models_dir])
    plans = refs.select(
        [refs.Reference(np.zeros((4, 4, 3), np.uint8))], registry.get("tiny-sdxl", "checkpoint"), registry
    )
    assert plans[0].encoder.name == "IP-Adapter/sdxl_models/image_encoder"


def test_shipped_encoder_configs_match_the_real_encoders_key_layout(tmp_path):
    """The weightless ViT-H/14 and ViT-bigG/14 configs build models whose tensor names and shapes the registry reads
    back as the standard encoder they are (on the meta device: no weights)."""
    from accelerate import init_empty_weights
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from server.models import ipadapter as ipa

    for name, (hidden, layers, projection) in (
        ("clip-vision-vit-h", (1280, 32, 1024)),
        ("clip-vision-vit-bigg", (1664, 48, 1280)),
    ):
        config = CLIPVisionConfig.from_pretrained(str(ipa.CONFIGS_DIR / name))
        with init_empty_weights():
            model = CLIPVisionModelWithProjection(config)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        found = ipa.encoder_info(shapes).info
        assert (found["hidden_size"], found["layers"], found["projection_dim"]) == (hidden, layers, projection)
        assert found["config"] == name and ipa.standard_config(found) == ipa.CONFIGS_DIR / name
        assert sum(int(np.prod(s)) for s in shapes.values()) > 600e6  # real-size towers (ViT-H ≈ 632 M)


def test_pickled_adapters_are_listed_only_with_allow_pickle_and_read_weights_only(tmp_path):
    models = factory.make_models_dir(tmp_path / "m", ("sd15", "ipa-sd15-bin", "ipa-sd15-plus"))
    assert "ip-adapter_tiny_sd15" not in [e.name for e in ModelRegistry([models]).entries("ipadapter")]
    entry = ModelRegistry([models], allow_pickle=True).get("ip-adapter_tiny_sd15", "ipadapter")
    assert entry.format == "pickle" and entry.info["variant"] == "base" and entry.info["encoder_dim"] == 24


# --- the reference reaches the UNet's attention --------------------------------------------------------------------


def test_a_reference_changes_the_result_and_the_image_matters(client, server):
    plain = run(client)
    with_ref = run(client, references=[reference(1)])
    info = run.last.layers[0].info["references"][0]
    assert info["adapter"] == "ip-adapter-plus_tiny_sd15" and info["encoder"] == "CLIP-tiny-vit-a"
    other_ref = run(client, references=[reference(2)])
    assert changed(plain, with_ref) > 1 and changed(with_ref, other_ref) > 0.5
    assert np.array_equal(run(client, references=[reference(1)]), with_ref)  # same seed, same reference
    unet = server.server.router.diffusion.loaded.pipe.unet
    processors = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    # with the adapter in: the cross-attention layers take it, the self-attention layers keep the CPU processor
    assert {p for name, p in processors.items() if ".attn2." in name} == {"IPAdapterAttnProcessor2_0"}
    assert {p for name, p in processors.items() if ".attn1." in name} == {"ContiguousHeadsAttention"}
    # back without references: the adapter is unloaded, the pixels are those of the plain run again, every layer
    # has the CPU processor of a fresh load again (diffusers' unload leaves AttnProcessor2_0)
    assert np.array_equal(run(client), plain)
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"ContiguousHeadsAttention"}
    assert np.array_equal(run(client, references=[reference(1, strength=0.0)]), plain)


def test_old_control_type_reference_is_a_content_reference(client):
    via_control = run(client, controls=[{"type": "reference", "image": reference(1)["image"]}])
    assert run.last.layers[0].info["references"][0]["type"] == "content"
    assert np.array_equal(via_control, run(client, references=[reference(1, type="content")]))


def test_types_use_their_blocks_and_several_references_combine(client):
    results = {t: run(client, references=[reference(1, type=t)]) for t in ("content", "style", "composition")}
    assert changed(results["content"], results["style"]) > 0.5
    assert changed(results["style"], results["composition"]) > 0.5
    face = run(client, references=[reference(1, type="face")])
    assert run.last.layers[0].info["references"][0]["adapter"] == "ip-adapter-plus-face_tiny_sd15"
    both = run(client, references=[reference(1, type="style"), reference(2, type="composition")])
    assert [r["type"] for r in run.last.layers[0].info["references"]] == ["style", "composition"]
    assert changed(both, results["style"]) > 0.5 and changed(face, results["content"]) > 0.5


def test_scale_configs_follow_instantstyle_and_the_step_range():
    ref = refs.Reference(np.zeros((2, 2, 3), np.uint8), type="style", strength=0.5, start=0.25, end=0.5)
    assert refs.scale_config("sdxl", ref) == {"up": {"block_0": [0.0, 0.5, 0.0]}}
    assert [refs.active(ref, f) for f in (0.0, 0.25, 0.4, 0.5, 0.9)] == [False, True, True, False, False]
    assert refs.scales("sd15", [ref], 0.0) == [0.0]
    whole = refs.Reference(np.zeros((2, 2, 3), np.uint8))
    assert all(refs.active(whole, f) for f in (0.0, 0.5, 0.99)) and refs.scales("sd15", [whole], 0.7) == [1.0]


def test_step_range_is_respected(client, server):
    """A reference limited to the last half changes less than one over all steps, and one whose range holds no
    step (start = end) changes nothing; the scales the UNet saw per step are recorded by a forward pre-hook."""
    unet = server.server.router.diffusion.loaded.pipe.unet
    seen = []

    def record(module, args, kwargs):
        procs = [p for n, p in module.attn_processors.items() if hasattr(p, "scale") and "attn2" in n]
        seen.append(float(procs[0].scale[0]) if procs else None)

    plain = run(client, steps=6)
    handle = unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        full = run(client, steps=6, references=[reference(1)])
        full_scales, seen[:] = list(seen), []
        late = run(client, steps=6, references=[reference(1, start=0.5)])
        late_scales, seen[:] = list(seen), []
        none = run(client, steps=6, references=[reference(1, start=0.5, end=0.5)])
        none_scales = list(seen)
    finally:
        handle.remove()
    assert full_scales == [1.0] * 6 and late_scales == [0.0] * 3 + [1.0] * 3 and none_scales == [0.0] * 6
    assert np.array_equal(none, plain)
    assert 0 < changed(late, plain) and changed(late, full) > 0


def test_a_masked_reference_changes_pixels_only_where_its_mask_reaches(client, server):
    """The criterion: the adapter's attention output is multiplied by the mask downsampled to each attention layer
    (diffusers' IPAdapterMaskProcessor), so an all-zero mask leaves the picture exactly as without the reference,
    and with a mask on the left half the first cross-attention layer adds nothing to the right half. Later layers
    mix positions (self-attention, convolutions), so the final picture changes most, not only, under the mask."""
    plain = run(client)
    empty = np.zeros((H, W), np.uint8)
    assert np.array_equal(run(client, references=[reference(1, mask=payload(empty))]), plain)
    left = empty.copy()
    left[:, : W // 2] = 255
    unet = server.server.router.diffusion.loaded.pipe.unet
    first = next(n for n in unet.attn_processors if "attn2" in n)[: -len(".processor")]
    captured = []
    hook = unet.get_submodule(first).register_forward_hook(lambda m, a, out: captured.append(out.detach().clone()))
    try:
        run(client, steps=1, references=[reference(1, mask=payload(left))])
        base_out = captured[0]
        captured.clear()
        run(client, steps=1)
        plain_out = captured[0]
    finally:
        hook.remove()
    side = int(round(base_out.shape[1] ** 0.5))
    diff = (base_out - plain_out).abs().reshape(base_out.shape[0], side, side, -1)
    assert float(diff[:, :, side // 2 :].max()) == 0.0 and float(diff[:, :, : side // 2].max()) > 0
    masked = run(client, references=[reference(1, mask=payload(left))])
    delta = np.abs(masked[..., :3].astype(int) - plain[..., :3].astype(int)).mean(axis=(0, 2))
    assert delta[: W // 2].mean() > delta[W // 2 :].mean()


@pytest.mark.parametrize("mode", ["img2img", "inpaint", "outpaint"])
def test_references_work_in_every_diffusion_mode_on_sdxl_too(client, mode):
    extra = {}
    if mode == "inpaint":
        mask = np.zeros((H, W), np.uint8)
        mask[16:48, 16:48] = 255
        extra["mask"] = payload(mask)
    if mode == "outpaint":
        extra["params"] = {"steps": 3, "seed": 7, "cfg": 5.0, "strength": 1.0, "extend": {"right": 16}}
    refmask = np.full((H, W), 255, np.uint8)
    for model in ("tiny-sd15", "tiny-sdxl"):
        plain = run(client, model=model, mode=mode, **extra)
        ref = run(client, model=model, mode=mode, references=[reference(1, mask=payload(refmask))], **extra)
        assert plain.shape == ref.shape and changed(plain, ref) > 0


# --- refusals --------------------------------------------------------------------------------------------------------


def test_unsupported_families_and_missing_adapters_are_named(client, tmp_path):
    with pytest.raises(JobFailed) as err:  # Flux takes references through Redux (test_references_flux.py): none here
        run(client, model="tiny-flux", references=[reference(1)])
    assert err.value.error.code == "model_not_found" and "flux-redux" in err.value.error.message
    assert err.value.error.field == "references"
    with pytest.raises(JobFailed) as err:
        run(client, model="classical", mode="inpaint", references=[reference(1)])
    assert err.value.error.code == "unsupported"
    with pytest.raises(JobFailed) as err:
        run(client, model="tiny-sdxl", references=[reference(1, type="face")])
    assert err.value.error.code == "model_not_found" and "face" in err.value.error.message
    assert "sdxl-ipadapter" in err.value.error.message
    with pytest.raises(JobFailed) as err:
        run(client, model="tiny-sdxl", references=[reference(1, model="ip-adapter-plus_tiny_sd15")])
    assert err.value.error.code == "unsupported" and "SD1.5" in err.value.error.message


def test_welcome_says_which_families_take_references(client):
    caps = client.welcome.capabilities
    assert caps["references"][:2] == ["sd15", "sdxl"] and "face" in caps["reference_types"]
    assert caps["reference_types_by_family"]["sd15"] == ["style", "composition", "content", "face"]


def test_a_masked_reference_keeps_its_mask_in_a_job_with_regions(client):
    """A reference bound to a region (issue 15) comes with that region: the regions' cross-attention processor passes
    the IP-Adapter masks on (diffusers drops keyword arguments a processor does not name), so an all-zero mask still
    leaves the picture as without the reference, and a half mask differs from none."""
    left = np.zeros((H, W), np.uint8)
    left[:, : W // 2] = 200
    areas = [{"prompt": "a red car", "mask": payload(left)}]
    plain = run(client, regions=areas)
    empty = payload(np.zeros((H, W), np.uint8))
    assert np.array_equal(run(client, regions=areas, references=[reference(1, mask=empty)]), plain)
    everywhere = run(client, regions=areas, references=[reference(1)])
    masked = run(client, regions=areas, references=[reference(1, mask=payload(left))])
    assert changed(everywhere, plain) > 0.5 and changed(masked, everywhere) > 0.5


def test_a_reference_mask_of_another_size_is_a_bad_request(client):
    with pytest.raises(JobFailed) as err:
        run(client, references=[reference(1, mask=payload(np.zeros((8, 8), np.uint8)))])
    assert err.value.error.code == "bad_request" and err.value.error.field == "references[0].mask"


# --- command line ----------------------------------------------------------------------------------------------------


def test_paintbridge_run_takes_reference_files(models_dir, tmp_path, paintbridge_cli):
    Image.fromarray(picture(99)).save(tmp_path / "in.png")
    Image.fromarray(picture(1, 48, 40)[..., :3]).save(tmp_path / "ref.png")
    outs = {}
    for name, extra in (("plain", []), ("ref", ["--reference", f"{tmp_path / 'ref.png'}:style:0.8"])):
        out = tmp_path / f"{name}.png"
        proc = paintbridge_cli(
            "run",
            "img2img",
            "--image",
            str(tmp_path / "in.png"),
            "--prompt",
            "a cat",
            "--models",
            str(models_dir),
            "--model",
            "tiny-sd15",
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
    bad = paintbridge_cli(
        "run",
        "img2img",
        "--image",
        str(tmp_path / "in.png"),
        "--models",
        str(models_dir),
        "--reference",
        f"{tmp_path / 'ref.png'}:colour",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert bad.returncode != 0 and "colour" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stderr.startswith("paintbridge run: "), bad.stderr


# --- downloads -------------------------------------------------------------------------------------------------------


def test_models_pull_installs_the_reference_preset_where_the_registry_reads_it(tmp_path):
    """`paintbridge models pull sd15-ipadapter` against the hub stand-in (serving tiny files under the real names):
    the adapters land in ipadapter/, the encoder in clip_vision/, and the registry recognises them."""
    import os

    from server.downloads import Catalogue
    from tests.hubstandin import Hub

    catalogue = Catalogue.load()
    built = factory.reference_models("ipa-sd15-plus")
    face = factory.reference_models("ipa-sd15-face")
    content = {
        "sd15-ipadapter-plus": (built / "ipadapter" / "ip-adapter-plus_tiny_sd15.safetensors").read_bytes(),
        "sd15-ipadapter-plus-face": (face / "ipadapter" / "ip-adapter-plus-face_tiny_sd15.safetensors").read_bytes(),
        "clip-vision-vit-h": (built / "clip_vision" / "CLIP-tiny-vit-a.safetensors").read_bytes(),
    }
    models = tmp_path / "models"
    with Hub() as hub:
        for f in catalogue.presets["sd15-ipadapter"].files:
            hub.files[(f.repo, f.file)] = content[f.id]
        out = subprocess.run(
            [sys.executable, "-m", "server", "models", "pull", "sd15-ipadapter", "--models", str(models)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, **hub.env},
        )
    assert out.returncode == 0, out.stderr
    assert (models / "ipadapter" / "ip-adapter-plus_sd15.safetensors").read_bytes() == content["sd15-ipadapter-plus"]
    registry = ModelRegistry([models])
    plus = registry.get("ip-adapter-plus_sd15", "ipadapter")
    assert plus.arch == "sd15" and not plus.info["face"]
    assert registry.get("ip-adapter-plus-face_sd15", "ipadapter").info["face"]
    encoder = registry.find("CLIP-ViT-H-14-laion2B-s32B-b79K", "clip_vision")
    # the stand-in served a tiny encoder under the ViT-H name: recognised, and told it lacks a config of its size
    assert encoder is not None and "config.json" in encoder.problem


def test_reference_arguments_parse_from_the_right(tmp_path):
    from server.runjob import parse_reference

    odd = tmp_path / "a:b.png"  # a colon in the file name, as in C:\\ paths
    Image.fromarray(picture(1, 8, 6)[..., :3]).save(odd)
    ref = parse_reference(f"{odd}:composition:0.5")
    assert (ref.type, ref.strength, ref.image.width, ref.image.height) == ("composition", 0.5, 8, 6)
    assert parse_reference(str(odd)).type == "content" and parse_reference(f"{odd}:face").strength == 1.0
    for bad, text in (
        (f"{odd}:style:3", "outside 0-2"),
        (f"{odd}:style:lots", "not a number"),
        (str(tmp_path / "none.png"), "no such file"),
    ):
        with pytest.raises(SystemExit, match=text):
            parse_reference(bad)
