"""client core for the hires fix and the detailer (issue 13): settings → ``params.hires`` / ``params.detail``, the
``detail`` mode's read rule, and the stored settings round trip."""

from __future__ import annotations

import pytest

from client.errors import JobInputError
from client.jobs import build_job, capture
from client.modes import plan_read
from client.settings import Settings
from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
from protocol.geometry import Box, context_box
from protocol.images import RGBA8
from protocol.messages import Detail, Hires, Limits, parse_client_message

W, H = 96, 64


def doc(selected: bool = True) -> MemoryDocument:
    sel = ellipse_mask(W, H, 40, 30, 16, 12) if selected else bytes(W * H)
    return MemoryDocument(W, H, gradient(W, H), sel, {})


def job_for(settings: Settings, document: MemoryDocument):
    inputs = capture(settings, document.selection_bounds(), W, H, Reader(document, RGBA8))
    job = build_job(settings, inputs, job_id="j1")
    parsed = parse_client_message(job.to_wire(), Limits())
    assert parsed == job, "the server reads the same job"
    return parsed


def test_hires_travels_for_the_modes_that_sample_and_only_when_on():
    on = Settings(mode="generate", hires=True, hires_upscaler="lanczos", hires_strength=0.35, hires_steps=12)
    msg = job_for(on, doc(selected=False))
    assert msg.params.hires == Hires(enabled=True, upscaler="lanczos", strength=0.35, steps=12)
    assert job_for(on.replace(hires=False), doc(selected=False)).params.hires == Hires()
    assert job_for(on.replace(mode="upscale"), doc()).params.hires == Hires(), "upscale has its own refine"
    assert job_for(on.replace(mode="inpaint"), doc()).params.hires.enabled


def test_detail_mode_reads_the_context_box_of_the_selection_or_the_whole_canvas():
    d = doc()
    plan = plan_read("detail", d.selection_bounds(), W, H)
    assert plan.box == context_box(d.selection_bounds(), W, H) and plan.mask and plan.image
    whole = plan_read("detail", Box(0, 0, 0, 0), W, H)
    assert whole.box == Box(0, 0, W, H) and not whole.mask and whole.image
    msg = job_for(
        Settings(mode="detail", detail_prompt="a smiling face", detail_separate=True, batch=4), doc(selected=False)
    )
    assert msg.mode == "detail" and msg.mask is None and msg.image.width == W and msg.params.batch == 1
    assert msg.params.detail == Detail(enabled=False, prompt="a smiling face", separate=True)
    assert msg.params.strength is None, "the detailer has its own denoise"


def test_the_detailer_after_a_job_and_its_targets():
    msg = job_for(Settings(mode="img2img", detail=True, detail_targets="face, hand", detail_strength=0.3), doc())
    assert msg.params.detail.enabled and msg.params.detail.targets == ("face", "hand")
    assert msg.params.detail.strength == 0.3
    assert job_for(Settings(mode="img2img"), doc()).params.detail == Detail()
    with pytest.raises(JobInputError, match="field 'detail.targets\\[0\\]' must be one of face, hand, got 'feet'"):
        job_for(Settings(mode="detail", detail_targets="feet"), doc())


def test_settings_keep_hires_and_detail_through_storage():
    s = Settings(
        hires=True,
        hires_upscaler="4x-UltraSharp",
        hires_scale=1.5,
        detail=True,
        detail_separate=True,
        detail_padding=48,
    )
    assert Settings.from_dict(s.to_dict()) == s
    broken = Settings.from_dict({"hires": "yes", "detail_padding": 1.5, "detail_separate": 1})
    assert broken.hires is False and broken.detail_padding == 32 and broken.detail_separate is False
    assert Settings.from_dict({"mode": "detail"}).mode == "detail"


# --- GIMP: the procedures' arguments → the same settings ----------------------------------------------------------------


def test_gimp_detail_procedure_and_hires_arguments_make_the_settings():
    from gimp_plugin import argspec, arguments
    from gimp_plugin.values import settings_from_values

    spec = arguments.BY_MODE["detail"]
    assert spec.name == argspec.PREFIX + "detail" and "detail" not in {a.name for a in spec.args}
    values = dict(spec.defaults(), **{"detail-prompt": " a calm face ", "detail-separate": True, "steps": 6})
    s = settings_from_values(spec, values)
    assert s.mode == "detail" and s.detail_prompt == "a calm face" and s.detail_separate and s.steps == 6
    msg = job_for(s, doc())
    assert msg.mode == "detail" and msg.params.detail.prompt == "a calm face" and msg.params.detail.separate
    for mode in ("generate", "img2img", "inpaint", "outpaint"):
        gen = arguments.BY_MODE[mode]
        assert {"hires", "hires-upscaler", "detail", "detail-strength"} <= {a.name for a in gen.args}, mode
    gen = arguments.BY_MODE["generate"]
    s = settings_from_values(gen, dict(gen.defaults(), hires=True, **{"hires-upscaler": "", "hires-scale": 1.5}))
    assert s.hires and s.hires_upscaler == "latent" and s.hires_scale == 1.5 and not s.detail
    assert job_for(s, doc(selected=False)).params.hires == Hires(enabled=True, scale=1.5)


def test_hands_are_offered_only_where_the_listing_has_a_hand_detector():
    from client.jobs import offered_detail_targets

    checkpoint = {"name": "tiny", "kind": "checkpoint"}
    assert offered_detail_targets([checkpoint]) == ("face",), "faces always: a missing detector is named by the server"
    palm = {"name": "palm_detection_mediapipe_2023feb", "kind": "detector", "targets": ["hand"]}
    assert offered_detail_targets([checkpoint, palm]) == ("face", "hand")
    assert offered_detail_targets([{"name": "x", "kind": "checkpoint", "targets": ["hand"]}]) == ("face",)


def test_gimp_offers_hands_in_its_detail_targets_choice_only_with_a_hand_detector(tmp_path):
    import os

    from gimp_plugin import arguments, choices
    from gimp_plugin.values import settings_from_values

    palm = {"name": "palm_detection_tests", "kind": "detector", "targets": ["hand"]}
    assert choices.target_choices([]) == (("face", "Faces"),)
    assert [n for n, _ in choices.target_choices([palm])] == ["face", "hand", "face-hand"]
    entry = tmp_path / "paintbridge.py"
    entry.write_text("")
    profile = tmp_path / "profile"
    choices.record(profile, [{"name": "tiny", "kind": "checkpoint"}], entry)
    os.utime(entry, (1_000_000, 1_000_000))
    assert choices.record(profile, [{"name": "tiny", "kind": "checkpoint"}, palm], entry) is True
    assert entry.stat().st_mtime > 1_000_000, "a hand detector arrived: GIMP registers the choice again"
    assert choices.target_choices(choices.recorded(profile)) == choices.target_choices([palm])
    for mode in ("detail", "generate", "inpaint"):
        spec = arguments.BY_MODE[mode]
        assert {a.name: a.kind for a in spec.args}["detail-targets"] == "detail-targets"
        s = settings_from_values(spec, dict(spec.defaults(), **{"detail-targets": "face-hand"}))
        assert s.detail_targets == "face,hand"
        assert settings_from_values(spec, spec.defaults()).detail_targets == "face"
    s = settings_from_values(
        arguments.BY_MODE["detail"], dict(arguments.BY_MODE["detail"].defaults(), **{"detail-targets": "face-hand"})
    )
    assert job_for(s, doc()).params.detail.targets == ("face", "hand")
