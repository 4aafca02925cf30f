"""What makes the engine fast, checked by what it does (never by timing): one VAE encode per inpaint and none when
only the seed changes, cached prompt embeddings, one pipeline call per batch, bf16 close to fp32, tiny-VAE previews,
few-step presets, and a server that starts without torch. Tiny random-weight models at 64 px."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

import factory
from server import device as devices, inpaintplan
from server.config import ServerConfig
from server.core import Job, JobContext, Params
from server.diffusion import cache, tiny_vae
from server.diffusion.engine import DiffusionEngine
from server.models import fewstep
from server.models.registry import ModelRegistry
from server.router import Router

REPO = Path(__file__).resolve().parent.parent
S = 64
FP32_BF16 = ("float32", "bfloat16")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return factory.make_models_dir(tmp_path_factory.mktemp("models"), ("sd15", "sd15-inpaint"))


def picture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (S, S, 4), dtype=np.uint8)
    img[..., 3] = 255
    return img


def square() -> np.ndarray:
    mask = np.zeros((S, S), np.uint8)
    mask[16:48, 16:48] = 255
    return mask


def make_job(mode: str = "inpaint", model: str = "tiny-sd15", **params) -> Job:
    prompt = params.pop("prompt", "a red apple")
    return Job(
        id="j",
        mode=mode,
        model=model,
        prompt=prompt,
        negative_prompt="",
        image=picture(),
        mask=square() if mode == "inpaint" else None,
        params=Params(**{"steps": 3, **params}),
    )


class Calls:
    """Counts forward calls of a module (a real forward hook on the loaded model)."""

    def __init__(self, module) -> None:
        self.n = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, *_) -> None:
        self.n += 1

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


@pytest.fixture(scope="module")
def engine(models_dir) -> DiffusionEngine:
    return DiffusionEngine(ModelRegistry([models_dir]), device="cpu")


@pytest.fixture(scope="module")
def by_dtype(models_dir) -> Dict[str, DiffusionEngine]:
    """A float32 and a bfloat16 engine for the precision tests: each loads its checkpoint once for all of them."""
    return {dtype: DiffusionEngine(ModelRegistry([models_dir]), device="cpu", dtype=dtype) for dtype in FP32_BF16}


# --- encodes and caches ----------------------------------------------------------------------------------------------


def test_stock_diffusers_encodes_twice_the_engine_once_and_not_at_all_when_only_the_seed_changes(engine):
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    engine.run(make_job(seed=1), JobContext())  # loads the checkpoint
    pipe = engine.loaded.pipe
    encodes, texts = Calls(pipe.vae.encoder), Calls(pipe.text_encoder)
    stock = StableDiffusionInpaintPipeline.from_pipe(pipe, dtype=pipe.unet.dtype)
    stock(
        prompt="a red apple",
        image=Image.fromarray(picture()[..., :3]),
        mask_image=Image.fromarray(square()),
        num_inference_steps=2,
        height=S,
        width=S,
        output_type="np",
    )
    assert encodes.take() == 2, "stock inpainting with a 4-channel UNet encodes the image and the masked image"
    texts.take()

    engine.run(make_job(seed=2, prompt="a green pear"), JobContext())  # a new prompt, the same image: cached latents
    assert (encodes.take(), texts.take()) == (0, 1)  # prompt and negative prompt in one text-encoder batch
    engine.run(make_job(seed=3, prompt="a green pear"), JobContext())  # generate again: nothing prepared anew
    assert (encodes.take(), texts.take()) == (0, 0)
    other = make_job(seed=3)
    other.image = picture(seed=5)
    engine.run(other, JobContext())
    assert encodes.take() == 1, "a new image is encoded once"
    assert (
        engine.caches["latents"].hits >= 2 and engine.caches["prompts"].hits >= 1 and engine.caches["masks"].hits >= 1
    )
    encodes.handle.remove()
    texts.handle.remove()


def test_an_inpainting_unet_gets_the_masked_image_encoded_too(engine):
    engine.run(make_job(model="tiny-sd15-inpaint", seed=1), JobContext())
    encodes = Calls(engine.loaded.pipe.vae.encoder)
    job = make_job(model="tiny-sd15-inpaint", seed=1)
    job.image = picture(seed=9)
    engine.run(job, JobContext())
    engine.run(dataclass_copy(job, params=dataclass_copy(job.params, seed=2)), JobContext())
    assert encodes.take() == 2, "image and masked image, each once"
    encodes.handle.remove()


def dataclass_copy(value, **changes):
    import dataclasses

    return dataclasses.replace(value, **changes)


def test_the_cache_keeps_within_its_budget_and_drops_the_oldest():
    c = cache.BoundedCache("t", budget_bytes=3000)
    for i in range(5):
        assert c.get(i, lambda i=i: np.full(1000, i, np.uint8))[0] == i
    assert len(c) == 3 and c.bytes == 3000 and c.misses == 5
    assert c.get(4, lambda: None)[0] == 4 and c.hits == 1
    assert c.get("big", lambda: np.zeros(5000, np.uint8)).nbytes == 5000 and len(c) == 3
    assert cache.digest(np.zeros(3)) != cache.digest(np.zeros(4)) and cache.digest(None) == cache.digest(None)


# --- "generate again": what a job sent again with only a new seed does not redo --------------------------------------


def test_a_job_sent_again_gets_bit_exact_pixels_from_the_cached_latents(models_dir):
    """The same job again hits the latents cache and gives the pixels it gives with the cache emptied (same seed)."""
    eng = DiffusionEngine(ModelRegistry([models_dir]), device="cpu")
    latents = eng.caches["latents"]
    first = eng.run(make_job(seed=4), JobContext())[0].rgba
    assert (latents.misses, latents.hits) == (1, 0)
    encodes = Calls(eng.loaded.pipe.vae.encoder)
    again = eng.run(make_job(seed=4), JobContext())[0].rgba
    assert (latents.misses, latents.hits, encodes.take()) == (1, 1, 0)
    eng.inputs.clear()
    fresh = eng.run(make_job(seed=4), JobContext())[0].rgba
    assert (latents.misses, encodes.take()) == (2, 1)
    assert np.array_equal(first, again) and np.array_equal(again, fresh)
    encodes.handle.remove()


def test_a_changed_pixel_mask_or_model_misses_the_latents_cache_and_it_stays_in_its_budget(models_dir):
    eng = DiffusionEngine(ModelRegistry([models_dir]), device="cpu")
    latents = eng.caches["latents"]
    job = make_job(model="tiny-sd15-inpaint", seed=1)  # 9 channels: the image and the masked image are encoded
    eng.run(job, JobContext())
    assert (latents.misses, latents.hits) == (2, 0)
    one_pixel = dataclass_copy(job, image=job.image.copy())
    one_pixel.image[0, 0, 0] ^= 1
    eng.run(one_pixel, JobContext())
    assert (latents.misses, latents.hits) == (4, 0), "one pixel changes both latents"
    moved = dataclass_copy(job, mask=np.roll(job.mask, 8, axis=1))
    eng.run(moved, JobContext())
    assert (latents.misses, latents.hits) == (5, 1), "a moved mask: the image's latents hit, the masked image's miss"
    eng.run(make_job(seed=1), JobContext())  # another checkpoint: the caches go with the one unloaded
    assert (latents.misses, len(latents)) == (6, 1)
    eng.run(job, JobContext())
    assert latents.misses == 8, "back on the first checkpoint, its latents are encoded anew"
    one = latents.bytes // len(latents)
    latents.budget = 2 * one
    for seed in range(3):
        eng.inputs.encode_latents(eng.loaded, picture(seed=20 + seed)[..., :3])
    assert len(latents) <= 2 and latents.bytes <= latents.budget


def plain_inpaint(image=None, mask=None, prompt: str = "a red apple", **params) -> Job:
    """An inpaint job on tiny-sd15 forced onto the plain path, whose hole is pre-filled before the engine runs."""
    return Job(
        id="j",
        mode="inpaint",
        model="tiny-sd15",
        prompt=prompt,
        image=picture() if image is None else image,
        mask=square() if mask is None else mask,
        params=Params(**{"steps": 2, "inpaint_method": "plain", **params}),
    )


def test_a_job_sent_again_takes_its_prefill_from_the_cache_and_what_the_fill_depends_on_misses_it(models_dir):
    registry = ModelRegistry([models_dir])
    entry = registry.get("tiny-sd15", "checkpoint")
    prefills = inpaintplan.prefill_cache()
    first, info = inpaintplan.plan(plain_inpaint(seed=1), entry, registry, prefills=prefills)
    again, _ = inpaintplan.plan(plain_inpaint(seed=2, prompt="x"), entry, registry, prefills=prefills)
    assert info["prefill"] == "patch" and (prefills.misses, prefills.hits) == (1, 1)
    uncached, _ = inpaintplan.plan(plain_inpaint(seed=2), entry, registry)
    assert np.array_equal(first.image, again.image) and np.array_equal(again.image, uncached.image)
    assert not np.array_equal(first.image, picture()), "the hole was filled"
    translucent = picture()
    translucent[..., 3] = 128  # the fill reads colours only: a hit, with the job's own alpha
    kept, _ = inpaintplan.plan(plain_inpaint(image=translucent), entry, registry, prefills=prefills)
    assert prefills.hits == 2 and (kept.image[..., 3] == 128).all()
    assert np.array_equal(kept.image[..., :3], first.image[..., :3])
    one_pixel = picture()
    one_pixel[0, 0, 0] ^= 1
    for job in (
        plain_inpaint(image=one_pixel),
        plain_inpaint(mask=np.roll(square(), 4, axis=0)),
        plain_inpaint(grow=9),
    ):
        inpaintplan.plan(job, entry, registry, prefills=prefills)
    assert (prefills.misses, prefills.hits) == (4, 2)
    small = cache.BoundedCache("prefills", 2 * S * S * 3)
    for seed in range(4):
        inpaintplan.plan(plain_inpaint(image=picture(seed=30 + seed)), entry, registry, prefills=small)
    assert len(small) == 2 and small.bytes <= small.budget


def test_the_router_fills_a_hole_once_for_a_job_sent_again_with_the_same_pixels(models_dir):
    router = Router(ServerConfig(model_dirs=[models_dir]))
    first = router.run(plain_inpaint(seed=3), JobContext())[0]
    again = router.run(plain_inpaint(seed=3), JobContext())[0]
    assert (router.prefills.misses, router.prefills.hits) == (1, 1)
    assert first.info["inpaint"]["prefill"] == "patch" and np.array_equal(first.rgba, again.rgba)


# --- batch and precision ---------------------------------------------------------------------------------------------


def test_a_batch_is_one_pipeline_call_and_each_seed_reproduces_alone(engine):
    job = make_job("img2img", seed=7, batch=3, sampler="Euler a", strength=1.0)
    engine.run(job, JobContext())
    unet = Calls(engine.loaded.pipe.unet)
    batch = engine.run(job, JobContext())
    assert unet.take() == 3, "one UNet call per step for the whole batch"
    unet.handle.remove()
    alone = engine.run(dataclass_copy(job, params=dataclass_copy(job.params, seed=8, batch=1)), JobContext())[0]
    assert [layer.seed for layer in batch] == [7, 8, 9]
    same = np.abs(batch[1].rgba.astype(int) - alone.rgba.astype(int))[..., :3].mean()
    other = np.abs(batch[0].rgba.astype(int) - alone.rgba.astype(int))[..., :3].mean()
    assert same < 1.0 and other > 10 * max(same, 0.1), (same, other)


def test_bf16_stays_close_to_fp32_for_the_same_seed(by_dtype):
    results = {}
    for dtype in FP32_BF16:
        eng = by_dtype[dtype]
        for seed in (5, 6):
            results[dtype, seed] = eng.run(make_job("inpaint", seed=seed, steps=4), JobContext())[0].rgba.astype(int)
        assert eng.device_description().endswith(dtype)
    precision = np.abs(results["float32", 5] - results["bfloat16", 5])[..., :3].mean()
    seed = np.abs(results["float32", 5] - results["float32", 6])[..., :3].mean()
    assert precision < 3 and precision < seed / 5, (precision, seed)


def test_bf16_on_a_cpu_keeps_unet_and_vae_channels_last_and_gives_the_default_layouts_pixels(by_dtype):
    def layout_of(module) -> str:
        weight = module.conv_in.weight
        return "channels_last" if weight.is_contiguous(memory_format=torch.channels_last) else "default"

    eng = by_dtype["bfloat16"]
    job = make_job("inpaint", seed=5, steps=4)
    fast = eng.run(job, JobContext())[0].rgba.astype(int)
    pipe = eng.loaded.pipe
    assert layout_of(pipe.unet) == layout_of(pipe.vae.decoder) == layout_of(pipe.vae.encoder) == "channels_last"
    for module in (pipe.unet, pipe.vae):  # torch's default layout, as before: the same job again
        module.to(memory_format=torch.contiguous_format)
    eng.inputs.clear()
    default = eng.run(job, JobContext())[0].rgba.astype(int)
    other_seed = eng.run(make_job("inpaint", seed=6, steps=4), JobContext())[0].rgba.astype(int)
    layout = np.abs(fast - default)[..., :3].mean()
    seed = np.abs(default - other_seed)[..., :3].mean()
    eng.unload()  # its modules' layout was changed here: a later job loads the checkpoint afresh
    assert layout < 3 and layout < seed / 5, (layout, seed)
    fp32 = by_dtype["float32"]
    fp32.run(job, JobContext())
    assert layout_of(fp32.loaded.pipe.unet) == layout_of(fp32.loaded.pipe.vae.decoder) == "default"


def test_bf16_on_a_cpu_puts_a_jobs_vae_and_controlnet_in_channels_last_too_with_the_default_layouts_pixels(
    tmp_path,
):
    from server.core import Control

    models = factory.make_models_dir(tmp_path / "models", ("sd15", "cn-sd15-canny", "vae-file"))
    edges = np.zeros((S, S, 3), np.uint8)
    edges[::6] = 255

    def job(seed: int) -> Job:
        out = make_job("img2img", seed=seed, strength=0.8, vae="tiny-vae-ft-mse")
        out.controls = [Control("canny", edges, model="control_tiny_sd15_canny")]
        return out

    def layouts(eng) -> set:
        parts = [eng.parts.vae[1].encoder, eng.parts.vae[1].decoder, *eng.parts.controlnets.values()]
        return {"cl" if m.conv_in.weight.is_contiguous(memory_format=torch.channels_last) else "nchw" for m in parts}

    eng = DiffusionEngine(ModelRegistry([models]), device="cpu", dtype="bfloat16")
    fast = eng.run(job(5), JobContext())[0].rgba.astype(int)
    assert len(eng.parts.controlnets) == 1 and layouts(eng) == {"cl"}
    for module in (eng.parts.vae[1], *eng.parts.controlnets.values()):  # torch's default layout, as before
        module.to(memory_format=torch.contiguous_format)
    eng.inputs.clear()
    default = eng.run(job(5), JobContext())[0].rgba.astype(int)
    other_seed = eng.run(job(6), JobContext())[0].rgba.astype(int)
    layout, seed = np.abs(fast - default)[..., :3].mean(), np.abs(default - other_seed)[..., :3].mean()
    assert layout < 3 and layout < seed / 5, (layout, seed)
    fp32 = DiffusionEngine(ModelRegistry([models]), device="cpu", dtype="float32")
    fp32.run(job(5), JobContext())
    assert layouts(fp32) == {"nchw"}


def test_the_cpu_attention_processor_gives_diffusers_output_and_is_installed_on_load(by_dtype):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from server.diffusion.attention import ContiguousHeadsAttention

    pipe = factory.build_sd15()
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    outputs = []
    with torch.inference_mode():
        for processor in (AttnProcessor2_0(), ContiguousHeadsAttention()):
            pipe.unet.set_attn_processor(processor)
            pipe.vae.set_attn_processor(processor)  # the VAE's attention (group norm, residual) takes the fallback
            outputs.append((pipe.unet(latents, 500, encoder_hidden_states=text).sample, pipe.vae(image).sample))
    for ours, theirs in zip(outputs[1], outputs[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    eng = by_dtype["float32"]
    eng.run(make_job("inpaint", seed=5), JobContext())
    processors = eng.loaded.pipe.unet.attn_processors.values()
    assert processors and all(isinstance(p, ContiguousHeadsAttention) for p in processors)


def test_the_default_precision_is_the_calibrated_one_and_is_named_before_torch_is_needed():
    chosen = devices.calibration.calibrated("cpu")["chosen"]
    if not torch.cuda.is_available():
        kind, dtype = devices.plan()
        dev, dt = devices.choose()
        assert (kind, dtype) == (dev.type, str(dt).replace("torch.", ""))
        assert dtype == chosen[devices.UNET]
        assert devices.plan(family=devices.DIT)[1] == chosen[devices.DIT]
        assert devices.describe_plan() == devices.describe(dev, dt)
        assert devices.describe_plan(dtype="float32").endswith("float32")


# --- tiny VAE --------------------------------------------------------------------------------------------------------


def build_taesd(path: Path, channels: int = 16) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(channels,) * 4, decoder_block_out_channels=(channels,) * 4
    ).save_pretrained(str(path), safe_serialization=True)


def test_previews_come_from_a_tiny_vae_in_vae_approx(models_dir, tmp_path):
    build_taesd(tmp_path / "vae_approx" / "taesd")
    eng = DiffusionEngine(ModelRegistry([models_dir, tmp_path]), device="cpu")
    previews = []
    ctx = JobContext(lambda step, total, preview: previews.append(preview))
    job = make_job(seed=1)
    job.previews = True
    (layer,) = eng.run(job, ctx)
    assert eng.parts.tiny_vae("sd15") is not None and eng.parts.tiny_vae("sdxl") is None
    assert previews and all(p.shape == (S, S, 3) and p.dtype == np.uint8 for p in previews)
    expected = tiny_vae.preview(eng.parts.tiny_vae("sd15"), torch.zeros(1, 4, 8, 8))
    assert expected.shape == (S, S, 3)
    job.live = True  # a live frame is decoded by the tiny VAE
    (fast,) = eng.run(job, JobContext())
    assert fast.info.get("decoder") == "tiny" and "decoder" not in layer.info
    assert not np.array_equal(fast.rgba, layer.rgba)


def test_an_original_taesd_decoder_file_loads_as_the_diffusers_model(tmp_path):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = AutoencoderTiny().eval()
    original = {}  # madebyollin's layout: a clamp at index 0, so every layer index is one higher
    for key, value in reference.decoder.state_dict().items():
        index, rest = key[len("layers.") :].split(".", 1)
        original[f"{int(index) + 1}.{rest}"] = value.contiguous()
    (tmp_path / "vae_approx").mkdir()
    save_file(original, str(tmp_path / "vae_approx" / "taesdxl_decoder.safetensors"))
    found = tiny_vae.find([tmp_path], "sdxl")
    assert (
        found is not None and found.name == "taesdxl_decoder.safetensors" and tiny_vae.find([tmp_path], "sd15") is None
    )
    loaded = tiny_vae.load(found, "cpu", torch.float32)
    latents = torch.randn(1, 4, 8, 8)
    assert torch.allclose(tiny_vae.decode(loaded, latents), tiny_vae.decode(reference, latents))


# --- few-step models -------------------------------------------------------------------------------------------------


def test_few_step_models_are_recognised_by_config_metadata_or_name(tmp_path):
    assert fewstep.detect(Path("sdxl_lightning_4step_lora.safetensors"))["family"] == "lightning"
    assert fewstep.detect(Path("sdxl_lightning_2step_unet.safetensors"))["steps"] == 2
    hyper = fewstep.detect(Path("Hyper-SDXL-8steps-CFG-lora.safetensors"))
    assert (hyper["family"], hyper["steps"], hyper["cfg"], hyper["sampler"]) == ("hyper", 8, fewstep.HYPER_CFG, "DDIM")
    assert fewstep.detect(Path("sd_xl_turbo_1.0_fp16.safetensors"))["sampler"] == "Euler a"
    assert fewstep.detect(Path("loras/lcm-lora-sdv1-5/pytorch_lora_weights.safetensors"))["family"] == "lcm"
    assert fewstep.detect(Path("dreamshaper_8.safetensors")) is None
    assert fewstep.detect(Path("clcm_photo.safetensors")) is None  # "lcm" only as a word
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "style.safetensors"), {"ss_output_name": "LCM_LoRA_sdxl"})
    assert fewstep.detect(tmp_path / "style.safetensors")["family"] == "lcm"
    folder = tmp_path / "dreamshaper-v7"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text(json.dumps({"time_cond_proj_dim": 256}))
    assert fewstep.detect(folder)["family"] == "lcm"
    assert fewstep.detect(tmp_path / "x.safetensors", {"model.diffusion_model.time_embed.cond_proj.weight": (1,)})


def test_a_few_step_checkpoint_is_listed_with_its_preset_and_jobs_use_it(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "tiny-sd15-lightning-2step").symlink_to(
        factory.checkpoint_folder("sd15"), target_is_directory=True
    )
    registry = ModelRegistry([tmp_path])
    (entry,) = registry.listing()
    assert entry["few_step"] == "lightning" and entry["preset"] == {"steps": 2, "cfg": 1.0, "sampler": "Euler"}
    eng = DiffusionEngine(registry, device="cpu")
    (layer,) = eng.run(make_job("img2img", "tiny-sd15-lightning-2step", seed=1, steps=20), JobContext())
    assert (layer.info["sampler"], layer.info["steps"], layer.info["cfg"]) == ("Euler", 2, 1.0)
    assert layer.info["few_step"] == "lightning"
    (chosen,) = eng.run(
        make_job("img2img", "tiny-sd15-lightning-2step", seed=1, steps=5, sampler="DDIM", cfg=3.0), JobContext()
    )
    assert (chosen.info["sampler"], chosen.info["steps"], chosen.info["cfg"]) == ("DDIM", 5, 3.0)


# --- start-up --------------------------------------------------------------------------------------------------------


def test_the_server_and_a_classical_job_import_neither_torch_nor_diffusers(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from protocol.client import Client
        from server.app import ServerThread
        from server.config import ServerConfig

        img = np.full((48, 64, 4), 200, np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 10:40] = 255
        pay = lambda a, f: {{"width": a.shape[1], "height": a.shape[0], "format": f, "data": a.tobytes()}}
        with ServerThread(ServerConfig(port=0, model_dirs=[{str(tmp_path)!r}])) as server:
            with Client(server.url, "t") as client:
                device = client.welcome.device
                result = client.run({{"mode": "inpaint", "model": "classical", "image": pay(img, "rgba8"),
                                      "mask": pay(mask, "gray8")}}, timeout=60)
        heavy = [m for m in ("torch", "diffusers", "transformers", "safetensors") if m in sys.modules]
        print(device, "|", len(result.layers), "|", heavy)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    device, layers, heavy = proc.stdout.strip().splitlines()[-1].split(" | ")
    assert layers == "1" and heavy == "[]"
    assert device == devices.describe_plan(None, os.environ.get("PAINTBRIDGE_DTYPE"))  # the suite pins float32


def test_gpu_check_runs_in_its_cpu_smoke_mode(benchmark_main):
    said = benchmark_main("gpu_check.py", "--cpu-smoke", "--reps", "1")
    for line in ("inpaint sd15", "generate sdxl", "live 1-step", "batch 4 vs 4 singles"):
        assert line in said, said


# --- decoding only where the result can change -----------------------------------------------------------------------


def test_the_decoded_box_holds_the_mask_and_a_margin_and_large_masks_decode_everything():
    from types import SimpleNamespace

    from server.diffusion import latents

    config = SimpleNamespace(latents_mean=None, shift_factor=None)
    soft = np.zeros((1000, 1000), np.uint8)
    soft[400:600, 380:620] = 255  # a 200 x 240 px mask in a 1000 px context processed at 512
    x0, y0, x1, y1 = latents.decode_box(soft, 512, 512, 8, config)
    assert all(v % 8 == 0 for v in (x0, y0, x1, y1))
    assert x0 <= 380 * 512 / 1000 - latents.DECODE_MARGIN and x1 >= 620 * 512 / 1000 + latents.DECODE_MARGIN
    assert y0 <= 400 * 512 / 1000 - latents.DECODE_MARGIN and y1 >= 600 * 512 / 1000 + latents.DECODE_MARGIN
    soft[100:900, 100:900] = 255
    assert latents.decode_box(soft, 512, 512, 8, config) is None
    assert latents.decode_box(np.zeros((64, 64), np.uint8), 512, 512, 8, config) is None


def test_decode_into_decodes_the_box_and_keeps_the_init_image_elsewhere(engine):
    from server.diffusion import latents

    engine.run(make_job(seed=1), JobContext())
    vae = engine.loaded.pipe.vae
    init = picture(seed=3)[..., :3]
    lat = torch.randn(2, 4, 8, 8, dtype=vae.dtype)
    out = latents.decode_into(vae, lat, (16, 24, 48, 56), init, 8)
    assert out.shape == (2, S, S, 3) and out.dtype == np.float32
    outside = np.ones((S, S), bool)
    outside[24:56, 16:48] = False
    assert np.array_equal(out[1][outside], init[outside].astype(np.float32) / 255)
    with torch.inference_mode():
        part = vae.decode(lat[:, :, 3:7, 2:6] / vae.config.scaling_factor).sample
    expected = ((part.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.allclose(out[:, 24:56, 16:48], expected)


def test_the_phase_table_sorts_ops_by_kind_and_counts_the_cpu_attention_kernels_flops():
    import importlib.util

    path = list(sys.path)
    spec = importlib.util.spec_from_file_location("benchmarks_phases", REPO / "benchmarks" / "phases.py")
    phases = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(phases)
    finally:
        sys.path[:] = path
    kinds = {
        "aten::addmm": "GEMM (linear)",
        "aten.mm": "GEMM (linear)",
        "aten::mkldnn_convolution": "conv",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "aten::native_group_norm": "group/layer norm",
        "aten::_softmax": "softmax",
        "aten::silu_": "SiLU/GELU",
        "aten::upsample_nearest2d": "resample",
        "aten::copy_": "copies, layout",
        "aten::t": "views, allocation",
        "aten::add": "other elementwise",
        "aten::tanh": "other elementwise",
    }
    assert {name: phases.op_kind(name) for name in kinds} == kinds
    q = torch.randn(1, 2, 64, 8, dtype=torch.bfloat16)
    with phases.flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == 4 * 2 * 64 * 64 * 8  # two matmuls of 64 x 64 x 8 per head
    # wall-clock and CPU-time rates, each against the peak measured the same way (2 threads: CPU time / 2)
    result = {"dtype": "bfloat16", "peaks": {"bfloat16": 100.0}, "cpu_peaks": {"bfloat16": 200.0}, "threads": 2}
    result.update(phases=[("text encode", 0.5, 25 * 10**9, 0.5)], total=0.5)
    row = next(line for line in phases.table(result).splitlines() if line.startswith("text encode"))
    assert row.split()[2:] == ["25.0", "0.50", "50.0", "50%", "0.50", "100.0", "50%"]
    # the job runs with the server's threads (waiting passive, server/tuning.py) unless a policy is already set
    probe = "import os, sys; sys.path.insert(0, 'benchmarks'); import phases; print(os.environ['OMP_WAIT_POLICY'])"
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env.update({"OMP_WAIT_POLICY": given} if given else {})
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.stdout.strip() == expected, out.stderr
