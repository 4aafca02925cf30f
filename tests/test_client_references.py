"""client core, reference images (issue 15): settings keep an ordered list of references, ``capture`` reads each
reference layer over the context box, ``build_job`` sends them as typed parts the server accepts."""

from __future__ import annotations

import json

import pytest

from client.errors import JobInputError
from client.jobs import ReferenceSource, build_job, capture, reference_sources
from client.regions import opacity
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
    assert stored["references"][0] == {
        "layer": "photo",
        "type": "style",
        "strength": 0.6,
        "start": 0.0,
        "end": 0.5,
        "region": "",
    }
    assert Settings.from_dict(stored).references == settings.references
    odd = Settings.from_dict(
        {
            "references": [
                {"layer": "a", "type": "colour", "strength": 9, "start": 0.8, "end": 0.2},
                {"type": "style"},
                "x",
            ]
        }
    )
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
    with pytest.raises(JobInputError, match="reference 1: field 'type' must be one of style, composition"):
        job_for(Settings(mode="inpaint"), d, [ReferenceSource("photo", "colour")])
    with pytest.raises(JobInputError, match="field 'references' has 9 entries, over the limit of 8"):
        job_for(Settings(mode="inpaint"), d, [ReferenceSource("photo")] * 9)


def region_doc() -> MemoryDocument:
    """The document plus a region layer: opaque over the ellipse's left half, empty elsewhere, and an empty one."""
    d = doc()
    left = bytearray(W * H * 4)
    for y in range(H):
        for x in range(W // 2):
            left[(y * W + x) * 4 : (y * W + x) * 4 + 4] = bytes((200, 10, 10, 255 if x < 30 else 128))
    d.layers.update({"sky-region": bytes(left), "empty-region": bytes(W * H * 4)})
    return d


def test_a_reference_bound_to_a_region_is_masked_by_that_regions_opacity():
    d = region_doc()
    settings = Settings(
        mode="inpaint",
        references=(ReferenceSetting("photo", "style", region="id-sky"), ReferenceSetting("photo", "content")),
    )
    regions = {"id-sky": "sky-region", "id-none": "empty-region"}
    sources = reference_sources(settings, lambda name: name if name in d.layers else None, regions.get)
    assert sources[0].mask_layer == "sky-region" and sources[1].mask_layer is None
    job = job_for(settings, d, sources)
    box = context_box(d.selection_bounds(), W, H)
    bound, free = job.references
    expected = opacity(Reader(d, RGBA8).read_layer("sky-region", box), RGBA8)
    assert bound.mask is not None and bound.mask.format == "gray8" and bound.mask.data == expected
    assert {0, 128, 255} >= set(bound.mask.data) and len(set(bound.mask.data)) > 1
    assert free.mask is None
    stored = Settings.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert stored.references[0].region == "id-sky"


def test_a_reference_whose_region_is_empty_or_gone_is_left_out_or_named():
    d = region_doc()
    settings = Settings(
        mode="inpaint", references=(ReferenceSetting("photo", region="id-none"), ReferenceSetting("photo", "style"))
    )
    regions = {"id-none": "empty-region"}
    sources = reference_sources(settings, lambda name: name if name in d.layers else None, regions.get)
    job = job_for(settings, d, sources)
    assert [r.type for r in job.references] == ["style"]
    with pytest.raises(JobInputError, match="region the reference 'photo' belongs to is no longer in the document"):
        reference_sources(
            Settings(references=(ReferenceSetting("photo", region="id-gone"),)), lambda name: name, regions.get
        )
    with pytest.raises(JobInputError, match="no longer in the document"):
        reference_sources(Settings(references=(ReferenceSetting("photo", region="id-none"),)), lambda name: name)
