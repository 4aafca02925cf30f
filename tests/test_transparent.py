"""Transparent layers (LayerDiffuse): its files recognised by their tensors, its weights on the tiny SD1.5 and SDXL
UNets for one job (and gone after), the transparent decoder in the published module layout, and generate jobs with
``params.transparent`` through the real websocket server returning layers with real alpha."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from protocol import ImagePayload, Job, Params, ProtocolError
from protocol.client import Client, JobFailed

import factory
import tiny_layerdiffuse as tld


def _save(state: dict, path: Path) -> None:
    factory._save_file(state, path)


# --- files --------------------------------------------------------------------------------------------------------------


def test_layerdiffuse_files_are_recognised_by_their_tensors(tmp_path):
    import torch

    from server.models.registry import ModelRegistry

    folder = tld.install(tmp_path, "sd15")
    for f in tld.files("sdxl").glob("*.safetensors"):
        shutil.copyfile(f, folder / f.name)
    _save(
        {"diffusion_model.input_blocks.0.0.weight::diff::0": torch.zeros(1, 8, 3, 3)},
        folder / "layer_xl_transparent_conv.safetensors",
    )
    _save(
        {
            "hookers.layers.0.to_q_lora.0.down.weight": torch.zeros(4, 8),
            "hookers.layers.0.to_q_lora.1.down.weight": torch.zeros(4, 8),
        },
        folder / "layer_sd15_joint.safetensors",
    )
    (folder / "notes.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    found = {e.name: e for e in ModelRegistry([tmp_path]).entries("layerdiffuse")}
    roles = {name: (e.arch, e.info.get("role"), e.problem is None) for name, e in found.items()}
    assert roles["layer_sd15_transparent_attn"] == ("sd15", "attention", True)
    assert roles["layer_sd15_vae_transparent_decoder"] == ("sd15", "decoder", True)
    assert roles["layer_xl_transparent_attn"] == ("sdxl", "attention", True)
    assert roles["vae_transparent_decoder"] == ("sdxl", "decoder", True)
    assert roles["layer_sd15_vae_transparent_encoder"] == ("sd15", "encoder", True)
    assert roles["vae_transparent_encoder"] == ("sdxl", "encoder", True)
    assert "conv injection" in found["layer_xl_transparent_conv"].problem
    assert "2-frame" in found["layer_sd15_joint"].problem
    assert found["notes"].problem


def test_the_decoder_has_the_published_module_layout():
    import torch

    from server.diffusion import transparent_decoder

    with torch.device("meta"):  # the real size's layout and shapes, without 100 M random weights
        real = transparent_decoder.build((32, 32, 64, 128, 256, 512, 512)).state_dict()
    assert 100e6 < sum(v.numel() for v in real.values()) < 110e6  # ~208 MB in float16, as published
    shapes = {k: tuple(v.shape) for k, v in real.items()}
    assert shapes["latent_conv_in.weight"] == (64, 4, 1, 1) and shapes["conv_in.weight"] == (32, 3, 3, 3)
    assert shapes["conv_out.weight"] == (4, 32, 3, 3)
    assert shapes["down_blocks.6.attentions.1.to_out.0.weight"] == (512, 512)
    assert "down_blocks.3.attentions.0.to_q.weight" not in shapes and "up_blocks.0.attentions.2.to_q.weight" in shapes
    assert shapes["up_blocks.6.resnets.2.conv1.weight"] == (32, 64, 3, 3)
    assert shapes["mid_block.attentions.0.group_norm.weight"] == (512,)
    tiny = tld.decoder()
    assert set(tiny) == set(real), "the test decoder has exactly the real key names"


def test_the_decoder_loads_old_attention_names_and_gives_colour_and_alpha(tmp_path):
    import torch

    from server.diffusion import transparent_decoder

    state = tld.decoder()
    old = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v for k, v in state.items()}
    _save(old, tmp_path / "decoder.safetensors")
    model = transparent_decoder.load(tmp_path / "decoder.safetensors")
    pixels, latent = torch.rand(1, 3, 64, 64), torch.randn(1, 4, 8, 8)
    rgb, alpha = transparent_decoder.decode(model, pixels, latent, augment=False)
    assert rgb.shape == (1, 64, 64, 3) and alpha.shape == (1, 64, 64)
    assert 0 <= alpha.min() and alpha.max() <= 1 and alpha.std() > 0
    rgb, alpha = transparent_decoder.decode(model, torch.rand(1, 3, 40, 96), torch.randn(1, 4, 5, 12))
    assert rgb.shape == (1, 40, 96, 3) and alpha.shape == (1, 40, 96), "any size in multiples of 8 px"


# --- weights on the UNet ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_the_attention_weights_change_the_unet_for_the_job_only(arch):
    import torch

    from server.diffusion import layer_attention

    pipe = factory.build_sd15() if arch == "sd15" else factory.build_sdxl()
    unet = pipe.unet
    state = tld.sd15_attention(unet) if arch == "sd15" else tld.sdxl_attention(unet)
    if arch == "sdxl":  # the tests' own conversion and the server's agree on every patched weight
        names = dict(unet.named_parameters())
        assert all(layer_attention.diffusers_key(k.split("::")[0][len("diffusion_model.") :]) in names for k in state)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    extra = {}
    if arch == "sdxl":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=g), "time_ids": torch.zeros(1, 6)}
    with torch.no_grad():
        before = unet(sample, 10, context, **extra).sample
        with layer_attention.applied(unet, layer_attention.prepare(unet, arch, state)):
            during = unet(sample, 10, context, **extra).sample
        after = unet(sample, 10, context, **extra).sample
    assert (during - before).abs().max() > 1e-4, "the weights take part"
    assert torch.equal(before, after), "and are gone after the job"
    other = "sdxl" if arch == "sd15" else "sd15"  # the other family's file does not fit: said, nothing changed
    wrong = (
        tld.sdxl_attention(factory.build_sdxl().unet)
        if other == "sdxl"
        else tld.sd15_attention(factory.build_sd15().unet)
    )
    with pytest.raises(ValueError, match="fit|units|not a LayerDiffuse"):
        layer_attention.prepare(unet, arch, wrong)
    with torch.no_grad():
        assert torch.equal(unet(sample, 10, context, **extra).sample, before)


# --- through the server ------------------------------------------------------------------------------------------------

W, H = 96, 64  # not multiples of the decoder's 64 px both ways


def generate(job_id: str, transparent: bool, selection: bool = False, model: str = "", seed: int = 5) -> Job:
    params = Params(steps=2, seed=seed, width=W, height=H, transparent=transparent, grow=0, feather=0)
    if not selection:
        return Job(job_id, "generate", model=model, prompt="a glass bottle", params=params)
    image = np.full((H, W, 4), 200, np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[8:56, 16:48] = 255
    return Job(
        job_id,
        "generate",
        model=model,
        prompt="a glass bottle",
        params=params,
        image=ImagePayload(W, H, "rgba8", image.tobytes()),
        mask=ImagePayload(W, H, "gray8", mask.tobytes()),
    )


def alpha_of(result) -> np.ndarray:
    (layer,) = result.layers
    return np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)[..., 3]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_transparent_generate_returns_a_layer_with_real_alpha(arch, start_server, tmp_path):
    models = factory.make_models_dir(tmp_path / "models", (arch,))
    tld.install(models, arch)
    server = start_server(model_dirs=[models])
    with Client(server.url, "transparent-test") as client:
        plain = client.run(generate("p1", False))
        result = client.run(generate("t1", True))
        again = client.run(generate("p2", False))
        inside = client.run(generate("t2", True, selection=True))
    alpha = alpha_of(result)
    assert alpha.std() > 0 and len(np.unique(alpha)) > 2, "the decoder's alpha, not a constant"
    assert result.layers[0].info["transparent"]["decoder"].endswith("decoder")
    assert (alpha_of(plain) == 255).all()
    assert plain.layers[0].data == again.layers[0].data, "the UNet is as it was after a transparent job"
    sel = alpha_of(inside)
    assert (sel[:8] == 0).all() and (sel[:, :16] == 0).all() and (sel[:, 48:] == 0).all(), (
        "nothing outside the selection"
    )
    assert sel[8:56, 16:48].std() > 0


def test_colour_is_carried_into_the_transparent_parts():
    from server.diffusion.transparent_encoder import extend_colour

    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[:, :16] = (255, 0, 0, 255)  # red and opaque on the left, nothing on the right
    rgba[:, 16:24, 3] = 128
    rgba[:, 16:24, 1] = 255  # half-transparent green between
    out = extend_colour(rgba)
    assert np.allclose(out[:, :16], (1, 0, 0), atol=1e-6), "opaque colour stays as it is"
    assert (out[:, 30:, 0] > 0.5).all() and (out[:, 30:, 2] < 0.05).all(), "the transparent side takes the colours"
    assert np.isfinite(out).all() and extend_colour(np.zeros((8, 8, 4), np.uint8)).max() == 0


@pytest.mark.parametrize("arch", ["sd15"])
def test_img2img_of_a_transparent_layer_keeps_real_alpha(arch, start_server, tmp_path):
    models = factory.make_models_dir(tmp_path / "models", (arch,))
    tld.install(models, arch)
    server = start_server(model_dirs=[models])
    yy, xx = np.mgrid[0:H, 0:W]
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 40, 160, 220
    rgba[..., 3] = np.where((xx - 48) ** 2 + (yy - 32) ** 2 < 20**2, 255, 0)  # an opaque disc on nothing
    job = Job(
        "i1",
        "img2img",
        prompt="a glass ball",
        image=ImagePayload(W, H, "rgba8", rgba.tobytes()),
        params=Params(steps=2, seed=4, strength=0.5, transparent=True),
    )
    with Client(server.url, "transparent-test") as client:
        result = client.run(job)
    alpha = alpha_of(result)
    assert alpha.std() > 0 and len(np.unique(alpha)) > 2
    assert result.layers[0].info["transparent"]["decoder"].endswith("decoder")


def test_transparent_jobs_say_what_is_missing_or_not_possible(start_server, tmp_path):
    models = factory.make_models_dir(tmp_path / "models", ("sd15",))
    server = start_server(model_dirs=[models])
    with Client(server.url, "transparent-test") as client:
        with pytest.raises(JobFailed) as info:
            client.run(generate("t1", True))
        assert info.value.code == "model_not_found" and "paintbridge models pull layerdiffuse-sd15" in str(info.value)
        assert "layer_sd15_transparent_attn.safetensors" in str(info.value)
        image = ImagePayload(64, 64, "rgba8", bytes(64 * 64 * 4))
        with pytest.raises(ProtocolError) as refused:  # refused as the job is built, as the server refuses it parsed
            Job("t2", "upscale", image=image, params=Params(transparent=True))
        assert refused.value.code == "bad_request" and refused.value.field == "params.transparent"
        with pytest.raises(JobFailed) as info:
            client.run(Job("t3", "generate", model="classical", params=Params(width=64, height=64, transparent=True)))
        assert info.value.field in ("params.transparent", "mode", "model")
        assert client.run(generate("p1", False)).layers  # the server keeps serving
    for f in (models / "layer_model").glob("*") if (models / "layer_model").exists() else ():
        f.unlink()
    tld.install(models, "sd15")
    (models / "layer_model" / "layer_sd15_vae_transparent_encoder.safetensors").unlink()
    server = start_server(model_dirs=[models])
    with Client(server.url, "transparent-test") as client:
        assert client.run(generate("t4", True)).layers, "generate needs no encoder"
        with pytest.raises(JobFailed) as info:
            client.run(Job("t5", "img2img", image=image, params=Params(steps=2, transparent=True)))
        assert info.value.code == "model_not_found"
        assert "layer_sd15_vae_transparent_encoder.safetensors" in str(info.value)


def test_the_catalogue_pulls_the_files_where_the_registry_finds_them():
    from server.downloads import Catalogue
    from server.models import layerdiffuse as ld

    catalogue = Catalogue.load()
    for arch in ld.FAMILIES:
        preset = catalogue.presets[ld.PRESETS[arch]]
        targets = {f.target for f in preset.files}
        assert targets == {f"layer_model/{ld.FILES[(arch, role)]}" for role in (ld.ATTENTION, ld.DECODER, ld.ENCODER)}
        assert all(f.kind == ld.KIND and f.family == arch and f.licence and f.modes for f in preset.files)


def test_sdxl_patches_as_low_rank_pairs_with_alpha_or_whole_differences():
    import torch

    from server.diffusion.layer_attention import sdxl_deltas

    key = "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"
    up, down = torch.randn(6, 2), torch.randn(2, 5)
    whole = torch.randn(6, 5)
    deltas = sdxl_deltas(
        {
            f"{key}::lora::0": up,
            f"{key}::lora::1": down,
            f"{key}::lora::2": torch.tensor(1.0),
            key.replace("attn1", "attn2") + "::diff::0": whole,
        }
    )
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert torch.allclose(deltas[name], up @ down / 2) and torch.equal(deltas[name.replace("attn1", "attn2")], whole)
    with pytest.raises(ValueError, match="lacks its up or down"):
        sdxl_deltas({f"{key}::lora::0": up})
