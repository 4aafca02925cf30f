"""The same document and selection give the same job (box, mask, params, pixels) through both editors' paths.

Both adapters make a job with the same two client-core calls, ``client.jobs.capture`` (reading through the adapter's
``DocumentReader``) and ``client.jobs.build_job``; they differ in how settings are entered and in pixel order. The
GIMP half goes through the plug-in's own translation of procedure arguments (``gimp_plugin.values``) and an rgba8
reader; the Krita half through a ``Settings`` as the Krita panel fills it and a bgra8 reader (Krita's native order).
Real-host tests compare what the two hosts read back (tests/test_gimp_host.py, tests/test_krita_host.py).
"""

from __future__ import annotations

import pytest

from client.errors import JobInputError
from client.jobs import ControlSource, build_job, capture
from client.settings import Defaults, Settings, model_entry
from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
from gimp_plugin import arguments, values
from protocol.images import BGRA8, RGBA8, convert_pixels
from protocol.messages import Limits, Welcome, parse_client_message

W, H = 120, 96
WELCOME = {
    "type": "welcome",
    "protocol": "1.1",
    "server_version": "t",
    "models": [
        {"name": "tiny", "kind": "checkpoint", "arch": "sd15", "family": "sd15"},
        {
            "name": "kontext",
            "kind": "checkpoint",
            "arch": "flux-kontext",
            "family": "flux-kontext",
            "variant": "kontext",
            "edit": True,
        },
    ],
    "defaults": {
        "modes": {"img2img": {"strength": 0.7}},
        "families": {
            "sd15": {"steps": 25, "cfg": 7.0, "sampler": "DPM++ 2M Karras", "resolution": 512},
            "flux-kontext": {"steps": 28, "cfg": 2.5, "sampler": "Euler", "resolution": 1024},
        },
    },
}

# (mode, the GIMP procedure's argument values, the Krita panel's settings): the same choices in both editors
CASES = [
    (
        "generate",
        {"prompt": "a house", "seed": 3, "batch": 2},
        Settings(mode="generate", prompt="a house", seed=3, batch=2),
    ),
    (
        "inpaint",
        {"prompt": "a lake", "model": "tiny", "grow": 0, "feather": 0},
        Settings(mode="inpaint", prompt="a lake", model="tiny", grow=0, feather=0, strength=1.0),
    ),
    (
        "img2img",
        {"prompt": "oil", "strength": 0.7, "control-layer": "sketch", "control-type": "canny", "control-strength": 0.5},
        Settings(mode="img2img", prompt="oil"),
    ),
    ("outpaint", {"extend": 32, "extend-left": True, "extend-right": False}, Settings(mode="outpaint", extend_left=32)),
    ("upscale", {"scale": 2.0, "upscaler": "", "refine": 0.0}, Settings(mode="upscale", scale=2.0)),
    ("preprocess", {"preprocessor": "canny"}, Settings(mode="preprocess", preprocessor="canny")),
    (
        "edit",
        {"prompt": "make it red", "model": "kontext", "seed": 4},
        Settings(mode="edit", prompt="make it red", model="kontext", seed=4),
    ),
]
KRITA_CONTROLS = {"img2img": [ControlSource("sketch", "canny", 0.5)]}


def document(selected: bool) -> MemoryDocument:
    sel = ellipse_mask(W, H, 50, 44, 22, 16, soft=8) if selected else bytes(W * H)
    return MemoryDocument(W, H, gradient(W, H), sel, {"sketch": gradient(W, H)[::-1]})


def gimp_job(mode: str, changes: dict, doc: MemoryDocument):
    spec = arguments.BY_MODE[mode]
    vals = dict(spec.defaults(), **changes)
    s = values.settings_from_values(spec, vals)
    inputs = capture(s, doc.selection_bounds(), W, H, Reader(doc, RGBA8), values.control_sources(vals))
    return build_job(
        s,
        inputs,
        Defaults.from_welcome(Welcome.from_wire(WELCOME)),
        model_entry(WELCOME["models"], s.model),
        job_id="gimp-1",
    )


def krita_job(mode: str, s: Settings, doc: MemoryDocument):
    inputs = capture(s, doc.selection_bounds(), W, H, Reader(doc, BGRA8), KRITA_CONTROLS.get(mode, ()))
    return build_job(
        s,
        inputs,
        Defaults.from_welcome(Welcome.from_wire(WELCOME)),
        model_entry(WELCOME["models"], s.model),
        job_id="krita-1",
    )


def comparable(typed) -> dict:
    """The job's wire map with pixels in one order and the id and pixel-format fields left out."""
    job = typed.to_wire()
    out = {k: v for k, v in job.items() if k not in ("id", "result_format")}
    for key in ("image",):
        if key in out and out[key]["format"] == BGRA8:
            out[key] = dict(out[key], format=RGBA8, data=convert_pixels(out[key]["data"], BGRA8, RGBA8))
    out["controls"] = [
        dict(
            c,
            image=dict(c["image"], format=RGBA8, data=convert_pixels(c["image"]["data"], c["image"]["format"], RGBA8)),
        )
        for c in job["controls"]
    ]
    return out


RUNS = [(case, selected) for case in CASES for selected in (True, False) if case[0] != "inpaint" or selected]


@pytest.mark.parametrize("case, selected", RUNS, ids=[f"{c[0]}-{'selection' if sel else 'canvas'}" for c, sel in RUNS])
def test_both_editors_send_the_same_job(case, selected):
    mode, gimp_values, krita_settings = case
    doc = document(selected)
    gimp, krita = gimp_job(mode, gimp_values, doc), krita_job(mode, krita_settings, doc)
    assert comparable(gimp) == comparable(krita)
    assert gimp.result_format == RGBA8 and krita.result_format == BGRA8
    assert parse_client_message(gimp.to_wire(), Limits()) == gimp
    assert parse_client_message(krita.to_wire(), Limits()) == krita


def test_both_refuse_inpaint_without_a_selection():
    doc = document(False)
    with pytest.raises(JobInputError, match="Inpaint needs a selection"):
        gimp_job("inpaint", CASES[1][1], doc)
    with pytest.raises(JobInputError, match="Inpaint needs a selection"):
        krita_job("inpaint", CASES[1][2], doc)


def test_generate_into_a_soft_selection_sends_the_soft_mask_for_the_server_to_composite():
    doc = document(True)
    job = gimp_job("generate", CASES[0][1], doc)
    assert job.mask.format == "gray8" and any(0 < v < 255 for v in job.mask.data)
    assert job.image is not None and job.params.steps == 25 and job.params.cfg == 7.0


def test_upscale_of_a_selection_reads_its_bounds_in_both():
    doc = document(True)
    sel = doc.selection_bounds()
    for job in (gimp_job("upscale", CASES[4][1], doc), krita_job("upscale", CASES[4][2], doc)):
        assert (job.x, job.y, job.image.width, job.image.height) == (sel.x, sel.y, sel.width, sel.height)
