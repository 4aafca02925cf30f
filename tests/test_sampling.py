"""Samplers × schedules, batch count, VAE choice, CLIP skip and the SDXL refiner (issue 13), through the real websocket
server on tiny random-weight models at 64 px, offline; and the sampler table itself against real diffusers classes."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from PIL import Image

from protocol import Limits
from protocol.client import JobFailed
from protocol.errors import ProtocolError
from protocol.messages import Params
from protocol.sampling import ALIASES, NEEDS, SAMPLER_TABLE, SCHEDULES, SAMPLERS, resolve
from server.diffusion import samplers

MODELS = ("sd15", "sdxl", "sdxl-refiner", "sdxl-refiner-file", "vae-file", "vae-folder")
W, H = 64, 64


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


# --- the table -------------------------------------------------------------------------------------------------------

SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    skip_prk_steps=True,
    timestep_spacing="leading",
)


@pytest.mark.parametrize("schedule", ("",) + tuple(SCHEDULES))
@pytest.mark.parametrize("sampler", tuple(SAMPLER_TABLE))
def test_every_pair_builds_a_real_scheduler_or_is_refused_by_name(sampler, schedule):
    """Every listed pair builds the named diffusers class with the schedule's options set and makes 10 timesteps;
    every other pair is refused by the protocol and by the server, naming both."""
    allowed = not schedule or schedule in SAMPLER_TABLE[sampler].schedules
    if not allowed:
        with pytest.raises(ProtocolError) as err:
            Params.parse_map({"sampler": sampler, "scheduler": schedule}, "params", Limits())
        assert err.value.field == "params.scheduler"
        assert f"'{sampler}'" in str(err.value) and f"'{schedule}'" in str(err.value)
        with pytest.raises(ProtocolError) as err:
            samplers.make_scheduler(sampler, SD15_SCHEDULER, schedule=schedule)
        assert f"'{sampler}'" in str(err.value) and f"'{schedule}'" in str(err.value)
        return
    needs = [NEEDS[n] for n in (sampler, schedule) if n in NEEDS and not installed(NEEDS[n])]
    if needs:
        with pytest.raises(ProtocolError, match=f"needs the Python package {needs[0]}"):
            samplers.make_scheduler(sampler, SD15_SCHEDULER, schedule=schedule)
        assert (
            sampler not in samplers.capabilities()["samplers"] or schedule not in samplers.capabilities()["schedulers"]
        )
        return
    Params.parse_map({"sampler": sampler, "scheduler": schedule}, "params", Limits())
    sched = samplers.make_scheduler(sampler, SD15_SCHEDULER, schedule=schedule)
    assert type(sched).__name__ == SAMPLER_TABLE[sampler].scheduler_class
    for key, value in {**SAMPLER_TABLE[sampler].options, **SCHEDULES.get(schedule, {})}.items():
        assert sched.config[key] == value, (key, sched.config[key])
    sched.set_timesteps(10)
    assert len(sched.timesteps) >= 10


def test_schedules_change_the_timesteps_or_sigmas():
    base = samplers.make_scheduler("Euler", SD15_SCHEDULER)
    base.set_timesteps(10)
    for schedule in ("Karras", "Exponential", "Normal", "Simple"):
        other = samplers.make_scheduler("Euler", SD15_SCHEDULER, schedule=schedule)
        other.set_timesteps(10)
        assert not torch.allclose(base.sigmas, other.sigmas), schedule


def test_old_combined_names_keep_their_scheduler():
    old = samplers.make_scheduler("DPM++ 2M Karras", SD15_SCHEDULER)
    new = samplers.make_scheduler("DPM++ 2M", SD15_SCHEDULER, schedule="Karras")
    assert type(old) is type(new) and dict(old.config) == dict(new.config) and old.config.use_karras_sigmas
    sde = samplers.make_scheduler("DPM++ SDE Karras", SD15_SCHEDULER)
    assert sde.config.algorithm_type == "sde-dpmsolver++" and sde.config.use_karras_sigmas
    assert resolve("DPM++ 2M Karras", "Karras") == ("DPM++ 2M", "Karras")
    with pytest.raises(ValueError, match=re.escape("'DPM++ 2M Karras' already sets the schedule 'Karras'")):
        resolve("DPM++ 2M Karras", "Exponential")
    assert set(ALIASES) < set(SAMPLERS)


def test_no_sampler_means_the_default_with_the_jobs_schedule():
    assert samplers.choose("", "") == ("DPM++ 2M", "Karras")
    assert samplers.choose("", "Exponential") == ("DPM++ 2M", "Exponential")


# --- through the server ----------------------------------------------------------------------------------------------


def picture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (H, W, 4), dtype=np.uint8)
    img[..., 3] = 255
    return img


def job(mode: str = "generate", model: str = "tiny-sd15", **params) -> dict:
    msg = {
        "mode": mode,
        "model": model,
        "prompt": "a red apple",
        "negative_prompt": "",
        "params": {"steps": 4, "seed": 7, "width": W, "height": H, **params},
    }
    if mode != "generate":
        img = picture()
        msg["image"] = {"width": W, "height": H, "format": "rgba8", "data": img.tobytes()}
    return msg


def pixels(result) -> list:
    return [np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4) for layer in result.layers]


def test_welcome_lists_samplers_schedules_vaes_and_refiners(client):
    caps = client.welcome.capabilities
    assert "DPM++ 2M SDE" in caps["samplers"] and "DPM++ 2M Karras" in caps["samplers"]
    assert "Karras" in caps["schedulers"] and "SGM Uniform" in caps["schedulers"]
    assert caps["sampler_schedules"]["DDIM"] == ["Normal", "Simple", "SGM Uniform"]
    assert ("LMS" in caps["samplers"]) == installed("scipy")
    assert sorted(caps["vaes"]) == ["tiny-vae-diffusers", "tiny-vae-ft-mse"]
    assert caps["refiners"] == ["tiny-sdxl-refiner", "tiny-sdxl-refiner-file"]
    kinds = {m["name"]: m["kind"] for m in client.welcome.models}
    assert kinds["tiny-sdxl-refiner"] == "refiner" and kinds["tiny-vae-ft-mse"] == "vae"


def test_sampler_and_schedule_change_the_pixels_and_the_same_pair_repeats(client):
    a = pixels(client.run(job(sampler="Euler", scheduler="Karras"), timeout=120))[0]
    again = client.run(job(sampler="Euler", scheduler="Karras"), timeout=120)
    b = pixels(client.run(job(sampler="Euler", scheduler="Normal"), timeout=120))[0]
    c = pixels(client.run(job(sampler="DPM++ 2M SDE", scheduler="Karras"), timeout=120))[0]
    assert np.array_equal(a, pixels(again)[0])
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    info = again.layers[0].info
    assert (info["sampler"], info["scheduler"]) == ("Euler", "Karras")


def test_old_combined_name_gives_the_same_pixels_as_the_pair(client):
    old = client.run(job(sampler="DPM++ 2M Karras"), timeout=120)
    new = client.run(job(sampler="DPM++ 2M", scheduler="Karras"), timeout=120)
    assert np.array_equal(pixels(old)[0], pixels(new)[0])
    assert (old.layers[0].info["sampler"], old.layers[0].info["scheduler"]) == ("DPM++ 2M", "Karras")


def test_an_impossible_pair_is_refused_naming_both(client):
    with pytest.raises(JobFailed) as err:
        client.run(job(sampler="DDIM", scheduler="Karras"), timeout=60)
    assert err.value.code == "bad_request" and "'DDIM'" in str(err.value) and "'Karras'" in str(err.value)


def test_batch_count_times_batch_size_each_seed_reproduces_alone(client):
    progress = []
    result = client.run(
        job(batch=2, batch_count=3, seed=100),
        timeout=240,
        on_event=lambda m: m.type == "progress" and progress.append((m.step, m.total)),
    )
    seeds = [layer.seed for layer in result.layers]
    assert seeds == [100, 101, 102, 103, 104, 105]
    assert [layer.name for layer in result.layers][-1] == "generate 6/6 (105)"
    assert all(layer.info["images"] == 6 and layer.info["batch_count"] == 3 for layer in result.layers)
    assert progress[-1] == (12, 12) and [s for s, _ in progress] == sorted(s for s, _ in progress)
    images = pixels(result)
    for i in (
        0,
        3,
        5,
    ):  # one pipeline call per batch: the same image up to rounding (batched kernels round differently)
        alone = pixels(client.run(job(seed=seeds[i]), timeout=120))[0]
        assert np.abs(alone.astype(int) - images[i].astype(int)).mean() < 1.0, seeds[i]
    assert not np.array_equal(images[0], images[1])


def test_batch_count_of_single_images_reproduces_each_seed_exactly(client):
    result = client.run(job(batch_count=2, seed=2**32 - 1), timeout=240)
    assert [layer.seed for layer in result.layers] == [2**32 - 1, 0]
    for layer, image in zip(result.layers, pixels(result)):
        assert np.array_equal(pixels(client.run(job(seed=layer.seed), timeout=120))[0], image)


@pytest.mark.parametrize("vae", ["tiny-vae-ft-mse", "tiny-vae-diffusers"])
def test_a_chosen_vae_changes_the_decode_and_is_reported(client, vae):
    own = client.run(job(), timeout=120)
    chosen = client.run(job(vae=vae), timeout=120)
    assert not np.array_equal(pixels(own)[0], pixels(chosen)[0])
    assert chosen.layers[0].info["vae"] == vae and own.layers[0].info["vae"] == "default"
    back = client.run(job(), timeout=120)  # the checkpoint's own VAE again
    assert np.array_equal(pixels(own)[0], pixels(back)[0])
    img2img = client.run(job("img2img", vae=vae, strength=0.5), timeout=120)  # encodes with it too
    assert not np.array_equal(pixels(img2img)[0], pixels(client.run(job("img2img", strength=0.5), timeout=120))[0])


def test_the_two_vae_layouts_hold_the_same_weights(client):
    a = client.run(job(vae="tiny-vae-ft-mse"), timeout=120)
    b = client.run(job(vae="tiny-vae-diffusers"), timeout=120)
    assert np.array_equal(pixels(a)[0], pixels(b)[0])


def test_an_unknown_vae_is_refused_naming_the_installed_ones(client):
    with pytest.raises(JobFailed) as err:
        client.run(job(vae="nope"), timeout=60)
    assert err.value.code == "model_not_found" and "tiny-vae-ft-mse" in str(err.value)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_clip_skip_changes_the_output(client, model):
    none = pixels(client.run(job(model=model), timeout=120))[0]
    one = pixels(client.run(job(model=model, clip_skip=1), timeout=120))[0]
    two = client.run(job(model=model, clip_skip=2), timeout=120)
    assert np.array_equal(none, one)  # painters' 1 = no skip
    assert not np.array_equal(none, pixels(two)[0]) and two.layers[0].info["clip_skip"] == 2


def test_clip_skip_past_the_encoder_is_refused(client):
    with pytest.raises(JobFailed) as err:
        client.run(job(clip_skip=9), timeout=60)
    assert err.value.code == "unsupported" and "clip_skip" in str(err.value)


def test_the_refiner_takes_the_last_steps_and_is_reported(client, server):
    progress = []
    base = client.run(job(model="tiny-sdxl", steps=10), timeout=120)
    refined = client.run(
        job(model="tiny-sdxl", steps=10, refiner="tiny-sdxl-refiner", refiner_start=0.6),
        on_event=lambda m: m.type == "progress" and progress.append((m.step, m.total)),
        timeout=240,
    )
    info = refined.layers[0].info
    assert info["refiner"] == "tiny-sdxl-refiner" and info["refiner_start"] == 0.6
    assert not np.array_equal(pixels(base)[0], pixels(refined)[0])
    assert progress[-1][0] == progress[-1][1] and progress[-1][1] >= 10
    engine = server.server.router.diffusion
    assert engine.loaded.entry.name == "tiny-sdxl" and engine.parts.refiner is not None
    img2img = client.run(
        job("img2img", model="tiny-sdxl", steps=10, strength=0.7, refiner="tiny-sdxl-refiner"), timeout=240
    )
    assert img2img.layers[0].info["refiner"] == "tiny-sdxl-refiner"


def test_the_refiner_after_an_inpaint_keeps_the_pixels_outside_the_mask(client):
    msg = job("inpaint", model="tiny-sdxl", steps=6, grow=0, feather=0, refiner="tiny-sdxl-refiner", refiner_start=0.5)
    mask = np.zeros((H, W), np.uint8)
    mask[16:48, 16:48] = 255
    msg["mask"] = {"width": W, "height": H, "format": "gray8", "data": mask.tobytes()}
    result = client.run(msg, timeout=240)
    rgba, image = pixels(result)[0], picture()
    assert np.array_equal(rgba[mask == 0][:, :3], image[mask == 0][:, :3]) and (rgba[mask == 0][:, 3] == 0).all()
    assert not np.array_equal(rgba[mask > 0][:, :3], image[mask > 0][:, :3])
    assert result.layers[0].info["refiner"] == "tiny-sdxl-refiner"


def test_a_single_file_refiner_gives_the_pixels_of_its_diffusers_folder(client):
    folder = client.run(job(model="tiny-sdxl", steps=6, refiner="tiny-sdxl-refiner"), timeout=240)
    single = client.run(job(model="tiny-sdxl", steps=6, refiner="tiny-sdxl-refiner-file"), timeout=240)
    assert np.array_equal(pixels(folder)[0], pixels(single)[0])
    assert single.layers[0].info["refiner"] == "tiny-sdxl-refiner-file"


def test_the_refiner_is_refused_after_sd15_and_alone(client):
    with pytest.raises(JobFailed) as err:
        client.run(job(model="tiny-sd15", refiner="tiny-sdxl-refiner"), timeout=60)
    assert err.value.code == "unsupported" and "SDXL" in str(err.value)
    with pytest.raises(JobFailed) as err:
        client.run(job(model="tiny-sdxl-refiner"), timeout=60)
    assert "refiner" in str(err.value)


# --- command line ----------------------------------------------------------------------------------------------------


def test_paintbridge_run_takes_sampler_schedule_batch_count_vae_clip_skip_and_refiner(
    models_dir, tmp_path, paintbridge_cli
):
    out = tmp_path / "out.png"
    proc = paintbridge_cli(
        "run",
        "generate",
        "--width",
        "64",
        "--height",
        "64",
        "--prompt",
        "apple",
        "--models",
        str(models_dir),
        "--model",
        "tiny-sdxl",
        "--steps",
        "4",
        "--seed",
        "5",
        "--sampler",
        "Euler a",
        "--scheduler",
        "SGM Uniform",
        "--batch",
        "1",
        "--batch-count",
        "2",
        "--vae",
        "tiny-vae-ft-mse",
        "--clip-skip",
        "2",
        "--refiner",
        "tiny-sdxl-refiner",
        "--refiner-start",
        "0.5",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed 5" in proc.stdout and "seed 6" in proc.stdout
    first, second = (np.asarray(Image.open(tmp_path / f"out-{i}.png")) for i in (1, 2))
    assert first.shape == (64, 64, 4) and not np.array_equal(first, second)
    refused = paintbridge_cli(
        "run",
        "generate",
        "--width",
        "64",
        "--height",
        "64",
        "--models",
        str(models_dir),
        "--model",
        "tiny-sd15",
        "--sampler",
        "DDIM",
        "--scheduler",
        "Karras",
        "--out",
        str(out),
    )
    assert refused.returncode != 0 and "'DDIM'" in refused.stderr and "'Karras'" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stderr.startswith("paintbridge run: "), refused.stderr
