"""Sampling options in the client core (issue 13): what the server offers, read from ``welcome``; the job params they
become; the settings they are stored in."""

from __future__ import annotations

import pytest

from client import sampling
from client.errors import JobInputError
from client.jobs import build_params
from client.sampling import SamplingChoices, check_choice, fitting_scheduler, listed_choices, option_values
from client.settings import Defaults, Settings
from protocol.geometry import Box
from clientdoc import welcome
from protocol.messages import Limits, Params, Welcome
from protocol.sampling import SAMPLER_TABLE, SAMPLERS

MODELS = [
    {"name": "base", "kind": "checkpoint", "arch": "sdxl"},
    {"name": "ft-mse", "kind": "vae", "arch": None},
    {"name": "broken-vae", "kind": "vae", "problem": "not a VAE"},
    {"name": "xl-refiner", "kind": "refiner", "arch": "sdxl-refiner"},
]
WELCOME = {
    "type": "welcome",
    "protocol": "1.1",
    "server_version": "x",
    "models": MODELS,
    "capabilities": {
        "samplers": ["Euler", "DDIM", "DPM++ 2M Karras"],
        "schedulers": ["Karras", "Normal"],
        "sampler_schedules": {"Euler": ["Karras", "Normal"], "DDIM": ["Normal"]},
        "vaes": ["ft-mse"],
        "refiners": ["xl-refiner"],
    },
}
BOX = Box(0, 0, 64, 64)


def test_choices_come_from_the_welcome():
    c = SamplingChoices.from_welcome(Welcome.from_wire(WELCOME))
    assert c.samplers == ("Euler", "DDIM", "DPM++ 2M Karras") and c.vaes == ("ft-mse",)
    assert c.refiners == ("xl-refiner",)
    assert c.schedules_for("DDIM") == ("Normal",) and c.schedules_for("DPM++ 2M Karras") == ("Karras",)
    assert c.schedules_for("") == ("Karras", "Normal")
    assert Defaults.from_welcome(Welcome.from_wire(WELCOME)).sampling == c


def test_an_older_server_gets_the_protocol_table_and_the_listing():
    old = dict(WELCOME, capabilities={"samplers": ["Euler a", "DDIM"]})
    c = SamplingChoices.from_welcome(Welcome.from_wire(old))
    assert c.samplers == ("Euler a", "DDIM") and c.schedules_for("DDIM") == SAMPLER_TABLE["DDIM"].schedules
    assert c.vaes == ("ft-mse",) and c.refiners == ("xl-refiner",)  # usable entries of the listing
    assert SamplingChoices.from_welcome(welcome()).samplers == SAMPLERS


def test_option_values_offer_the_default_first_and_refuse_the_rest():
    c = SamplingChoices.from_welcome(Welcome.from_wire(WELCOME))
    assert option_values(c, MODELS, "scheduler", "Euler") == ["", "Karras", "Normal"]
    assert option_values(c, MODELS, "vae") == ["", "ft-mse"]
    assert dict(listed_choices(c, MODELS)) == {"vae": ["", "ft-mse"], "refiner": ["", "xl-refiner"]}
    check_choice(c, MODELS, Settings(sampler="DDIM"), "scheduler", "Normal")
    with pytest.raises(JobInputError, match="'Karras' is not available for scheduler"):
        check_choice(c, MODELS, Settings(sampler="DDIM"), "scheduler", "Karras")
    with pytest.raises(JobInputError, match="'broken-vae'"):
        check_choice(c, MODELS, Settings(), "vae", "broken-vae")
    assert fitting_scheduler(c, Settings(sampler="DDIM", scheduler="Karras")) == ""
    assert fitting_scheduler(c, Settings(sampler="Euler", scheduler="Karras")) == "Karras"
    with pytest.raises(KeyError):
        option_values(c, MODELS, "steps")


def test_params_carry_only_what_differs_from_the_defaults():
    plain = build_params(Settings(mode="generate"), BOX, False, False)
    fresh = Params()
    assert all(
        getattr(plain, k) == getattr(fresh, k)
        for k in ("scheduler", "batch_count", "vae", "clip_skip", "refiner", "refiner_start")
    )
    chosen = Settings(
        mode="generate",
        sampler="Euler",
        scheduler="Karras",
        batch_count=3,
        vae=" ft-mse ",
        clip_skip=2,
        refiner="xl-refiner",
        refiner_start=0.7,
    )
    params = build_params(chosen, BOX, False, False)
    assert {
        k: getattr(params, k)
        for k in ("sampler", "scheduler", "batch_count", "vae", "clip_skip", "refiner", "refiner_start")
    } == {
        "sampler": "Euler",
        "scheduler": "Karras",
        "batch_count": 3,
        "vae": "ft-mse",
        "clip_skip": 2,
        "refiner": "xl-refiner",
        "refiner_start": 0.7,
    }
    assert Params.parse_map(params.to_wire(), "params", Limits()) == params  # the server takes them as they are
    upscale = build_params(chosen.replace(mode="upscale"), BOX, True, False)
    assert (upscale.batch_count, upscale.vae, upscale.clip_skip, upscale.refiner) == (1, "", 0, "")


def test_impossible_pairs_and_refiner_starts_are_refused_before_sending():
    with pytest.raises(
        JobInputError,
        match="field 'scheduler' does not fit the sampler: sampler 'DDIM' cannot run with the schedule 'Karras'",
    ):
        build_params(Settings(mode="generate", sampler="DDIM", scheduler="Karras"), BOX, False, False)
    with pytest.raises(JobInputError, match="field 'refiner_start' \\(1.0\\) must be between 0 and 1"):
        build_params(Settings(mode="generate", refiner="xl-refiner", refiner_start=1.0), BOX, False, False)


def test_settings_keep_the_sampling_options():
    s = Settings(scheduler="Exponential", batch_count=4, vae="v", clip_skip=2, refiner="r", refiner_start=0.6)
    assert Settings.from_dict(s.to_dict()) == s
    bad = Settings.from_dict({"batch_count": "many", "refiner_start": "late", "clip_skip": 2})
    assert (bad.batch_count, bad.refiner_start, bad.clip_skip) == (1, 0.8, 2)
    assert sampling.SAMPLING_OPTIONS == ("sampler", "scheduler", "vae", "refiner")
