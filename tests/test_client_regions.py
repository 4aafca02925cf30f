"""Regions in the client core (issue 15): a document's region list and its stored form, and each bound layer's
opacity read over the job's box into the job, the same way for both pixel orders (Krita bgra8, GIMP rgba8)."""

from __future__ import annotations

import pytest

from client import docdata
from client.errors import JobInputError
from client.jobs import RegionSource, build_job, capture
from client.regions import MAX_REGIONS, RegionBinding, RegionList, opacity
from client.settings import Settings
from clientdoc import MemoryDocument, Reader, gradient
from protocol.geometry import Box
from protocol.images import BGRA8, RGBA8
from protocol.messages import Job

W, H = 64, 48


def layer_with_alpha(alpha_of) -> bytes:
    """An rgba8 canvas-sized layer: red, with alpha ``alpha_of(x, y)``."""
    return bytes(v for y in range(H) for x in range(W) for v in (255, 0, 0, alpha_of(x, y)))


def document() -> MemoryDocument:
    sel = bytes(255 if 8 <= x < 56 and 8 <= y < 40 else 0 for y in range(H) for x in range(W))
    layers = {
        "left": layer_with_alpha(lambda x, y: 255 if x < 32 else 0),
        "soft": layer_with_alpha(lambda x, y: 128),
        "empty": layer_with_alpha(lambda x, y: 0),
    }
    return MemoryDocument(W, H, gradient(W, H), sel, layers)


@pytest.mark.parametrize("fmt", [RGBA8, BGRA8])
def test_each_bound_layers_opacity_over_the_box_becomes_a_region(fmt):
    doc = document()
    settings = Settings(mode="inpaint", prompt="a street")
    sources = [
        RegionSource("left", "a red car", "blurry", 0.8),
        RegionSource("soft", "fog"),
        RegionSource("empty", "never sent"),
        RegionSource("left", "  "),
    ]
    inputs = capture(settings, doc.selection_bounds(), W, H, Reader(doc, fmt), regions=sources)
    assert len(inputs.regions) == 3  # the one without a prompt is not read
    box = inputs.box
    job = build_job(settings, inputs, job_id="j1")
    assert [r.prompt for r in job.regions] == ["a red car", "fog"]  # the empty layer is left out
    left = job.regions[0]
    assert (left.mask.width, left.mask.height, left.mask.format) == (box.width, box.height, "gray8")
    assert left.negative_prompt == "blurry" and left.strength == 0.8
    row = bytes(left.mask.data[: box.width])
    assert row == bytes(255 if box.x + i < 32 else 0 for i in range(box.width))
    assert set(job.regions[1].mask.data) == {128}
    parsed = Job.from_wire(dict(job.to_wire(), type="job"))  # what the server accepts
    assert len(parsed.regions) == 2


def test_modes_without_regions_read_none():
    doc = document()
    inputs = capture(
        Settings(mode="upscale"), Box(0, 0, 0, 0), W, H, Reader(doc, RGBA8), regions=[RegionSource("left", "car")]
    )
    assert inputs.regions == ()


def test_a_reader_with_read_opacity_is_asked_for_it():
    class ChannelReader(Reader):  # as GIMP's: a channel's value is its opacity
        def read_opacity(self, layer, box):
            self.reads.append(("opacity", box))
            return bytes([77]) * (box.width * box.height)

    doc = document()
    reader = ChannelReader(doc, RGBA8)
    inputs = capture(Settings(mode="generate"), Box(0, 0, 0, 0), W, H, reader, regions=[RegionSource("c", "sky")])
    assert ("opacity", inputs.box) in reader.reads and set(inputs.regions[0].mask.data) == {77}


def test_region_list_binds_moves_removes_and_survives_storage():
    regions = RegionList()
    assert regions.bind("id-a", "a red car", name="Car") == 0
    assert regions.bind("id-b", "a lake", strength=3.0) == 1
    assert regions.items[1].strength == 1.0  # clamped
    assert regions.bind("id-a", "a blue car") == 0 and len(regions) == 2  # rebinding keeps the place
    assert regions.move(1, -1) == 0 and [b.layer for b in regions.items] == ["id-b", "id-a"]
    blob = docdata.pack("regions", regions.to_bytes())
    again = RegionList.from_bytes(docdata.unpack("regions", blob))
    assert again.items == regions.items
    again.keep_layers(["id-a"])
    assert [b.prompt for b in again.items] == ["a blue car"]
    again.remove(0)
    assert len(again) == 0
    assert len(RegionList.from_bytes(None)) == 0
    with pytest.raises(docdata.DocumentDataError, match="region prompts kept in this document are damaged"):
        RegionList.from_bytes(b"not json")
    full = RegionList([RegionBinding(str(i), "p") for i in range(MAX_REGIONS)])
    with pytest.raises(JobInputError, match=str(MAX_REGIONS)):
        full.bind("one-more", "p")


def test_opacity_reads_the_fourth_byte_of_either_order():
    assert opacity(bytes([1, 2, 3, 4, 5, 6, 7, 8]), RGBA8) == bytes([4, 8])
    assert opacity(bytes([1, 2, 3, 4]), BGRA8) == bytes([4])
    assert opacity(bytes([9, 9]), "gray8") == bytes([9, 9])
