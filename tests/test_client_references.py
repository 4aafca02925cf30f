"""client core, reference images (issue 15): settings keep an ordered list of references, ``capture`` reads each
reference layer over the context box, ``build_job`` sends them as typed parts the server accepts."""

from __future__ import annotations

import json

import pytest

from client.errors import JobInputError
from client.jobs import ReferenceSource, build_job, capture, reference_sources
from client.settings import ReferenceSetting, Settings
from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
from protocol.geometry import context_box
from protocol.images import BGRA8, RGBA8
from protocol.messages import Limits, parse_client_message

W, H = 96, 64


def doc() -> MemoryDocument:
    layers = {"photo": gradient(W, H)[::-1], "empty": bytes(W * H * 4)}
    return MemoryDocument(W, H, gradient(W, H), ellipse_mask(W, H, 40, 30, 16, 12), layers)


def job_for(settings: Settings, document: MemoryDocument, refs, fmt: str = RGBA8):
    inputs = capture(settings, document.selection_bounds(), W, H, Reader(document, fmt), (), refs)
    job = build_job(settings, inputs, job_id="j1")
    assert parse_client_message(job.to_wire(), Limits()) == job
    return job


def test_settings_keep_references_in_order_and_survive_storage():
    settings = Settings(references=(ReferenceSetting("photo", "style", 0.6, 0.0, 0.5), ReferenceSetting("face")))
    stored = json.loads(json.dumps(settings.to_dict()))
    assert stored["references"][0] == {"layer": "photo", "type": "style", "strength": 0.6, "start": 0.0, "end": 0.5}
    assert Settings.from_dict(stored).references == settings.references
    odd = Settings.from_dict({"references": [{"layer": "a", "type": "colour", "strength": 9, "start": 0.8,
                                              "end": 0.2}, {"type": "style"}, "x"]})
    assert odd.references == (ReferenceSetting("a", "content", 2.0, 0.2, 0.8),)
    assert Settings.from_dict({"references": "nonsense"}).references == ()


@pytest.mark.parametrize("fmt", [RGBA8, BGRA8])
def test_reference_layers_travel_at_the_context_box_in_the_job(fmt):
    d = doc()
    settings = Settings(mode="inpaint", references=(ReferenceSetting("photo", "composition", 0.7, 0.1, 0.9),))
    sources = reference_sources(settings, lambda name: name if name in d.layers else None)
    job = job_for(settings, d, sources, fmt)
    box = context_box(d.selection_bounds(), W, H)
    ref = job.references[0]
    assert (ref.type, ref.strength, ref.start, ref.end) == ("composition", 0.7, 0.1, 0.9)
    assert (ref.image.width, ref.image.height, ref.image.format) == (box.width, box.height, fmt)
    assert ref.image.data == Reader(d, fmt).read_layer("photo", box)


def test_modes_without_controls_send_no_references_and_problems_are_named():
    d = doc()
    up = job_for(Settings(mode="upscale"), d, [ReferenceSource("photo")])
    assert up.references == ()
    with pytest.raises(JobInputError, match="'gone' is not in the document"):
        reference_sources(Settings(references=(ReferenceSetting("gone"),)), lambda name: None)
    with pytest.raises(JobInputError, match="empty over the area"):
        job_for(Settings(mode="inpaint"), d, [ReferenceSource("empty")])
    with pytest.raises(JobInputError, match="unknown reference type"):
        job_for(Settings(mode="inpaint"), d, [ReferenceSource("photo", "colour")])
    with pytest.raises(JobInputError, match="at most 8"):
        job_for(Settings(mode="inpaint"), d, [ReferenceSource("photo")] * 9)
