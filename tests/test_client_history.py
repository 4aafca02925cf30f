"""client/history.py: the results history both editors keep inside the document (bounds, lossless pixels, corrupt
data, reuse settings, apply again through client.results)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from client import docdata, history as ch, results as cres
from client.settings import Settings
from protocol import BGRA8, RGBA8, ResultLayer, convert_pixels


def gradient(w: int, h: int) -> bytes:
    return b"".join(
        bytes(((x * 255) // max(1, w - 1), (y * 255) // max(1, h - 1), (x * y) % 256, 255))
        for y in range(h)
        for x in range(w)
    )


def layer(w=40, h=30, x=5, y=6, seed=7, data=None, fmt=RGBA8, name="a cat (seed 7)") -> ResultLayer:
    return ResultLayer(
        name=name,
        x=x,
        y=y,
        width=w,
        height=h,
        format=fmt,
        data=data or os.urandom(w * h * 4),
        seed=seed,
        info={"engine": "diffusers"},
    )


def job(**changes) -> Settings:
    return Settings(
        mode="inpaint", model="tiny-sd15", prompt="a cat", negative_prompt="blurry", steps=3, cfg=5.0, seed=-1, batch=2
    ).replace(**changes)


@given(st.integers(1, 17), st.integers(1, 9), st.data())
@hsettings(max_examples=60, deadline=None)
def test_pixels_round_trip_exactly(w, h, data):
    raw = data.draw(st.binary(min_size=w * h * 4, max_size=w * h * 4))
    assert ch.decode_pixels(ch.encode_pixels(raw, w, 4), w, 4, len(raw)) == raw


def test_the_row_filter_makes_smooth_images_smaller_than_plain_zlib():
    import zlib

    raw = gradient(256, 192)
    assert len(ch.encode_pixels(raw, 256, 4)) < len(zlib.compress(raw, ch.LEVEL)) / 2


def test_damaged_pixels_raise_a_clear_error():
    packed = ch.encode_pixels(os.urandom(64), 4, 4)
    with pytest.raises(docdata.DocumentDataError, match="damaged"):
        ch.decode_pixels(packed[:-3], 4, 4, 64)
    with pytest.raises(docdata.DocumentDataError, match="more than the 60 bytes"):
        ch.decode_pixels(packed, 4, 4, 60)
    with pytest.raises(docdata.DocumentDataError, match="holds 64 bytes, not the 68"):
        ch.decode_pixels(packed, 4, 4, 68)


def test_thumbnail_keeps_the_aspect_and_is_rgba8():
    raw = convert_pixels(gradient(300, 150), RGBA8, BGRA8)
    w, h, small = ch.thumbnail(raw, 300, 150, BGRA8)
    assert (w, h) == (96, 48) and len(small) == 96 * 48 * 4
    full = gradient(300, 150)
    pixel = lambda x, y: full[(y * 300 + x) * 4 : (y * 300 + x) * 4 + 4]  # noqa: E731
    assert small[:4] == pixel(1, 1)  # sampled at the cell centres, back in rgba8 order
    assert small[-4:] == pixel(298, 148)
    assert ch.thumbnail(gradient(10, 5), 10, 5, RGBA8)[:2] == (10, 5)  # small images are not enlarged


def test_an_entry_round_trips_with_every_field():
    layers = [layer(seed=7), layer(seed=8, name="a cat (seed 8)")]
    entry = ch.entry_from_result(job(), layers, [l.name for l in layers], {"steps": 3, "sampler": "Euler a"})
    back = ch.Entry.from_bytes(entry.to_bytes())
    assert (back.id, back.mode, back.model, back.prompt) == (entry.id, "inpaint", "tiny-sd15", "a cat")
    assert back.params == {"steps": 3, "sampler": "Euler a"} and back.seeds == [7, 8]
    assert [l.data for l in back.layers] == [bytes(l.data) for l in layers]
    assert [(l.x, l.y, l.width, l.height, l.format, l.name) for l in back.layers] == [
        (5, 6, 40, 30, RGBA8, "a cat (seed 7)"),
        (5, 6, 40, 30, RGBA8, "a cat (seed 8)"),
    ]
    assert back.thumbnail_rgba()[:2] == (40, 30)
    assert "negative: blurry" in back.describe() and "seeds: 7, 8" in back.describe()
    assert "steps: 3" in back.describe() and "sampler: Euler a" in back.describe()
    quiet = ch.entry_from_result(job(), layers, ["a", "b"], {"cfg": None, "sampler": "", "extend": {"left": 0}})
    assert not any(word in quiet.describe() for word in ("cfg", "sampler", "extend"))
    assert "history_limit_mb" not in back.settings


def test_reuse_settings_gives_the_job_back_with_the_chosen_seed():
    s = job(seed=-1, history_limit_mb=5)
    entry = ch.Entry.from_bytes(ch.entry_from_result(s, [layer(seed=7), layer(seed=8)], ["a", "b"], {}).to_bytes())
    again = entry.reuse_settings(1, current=Settings(history_limit_mb=9))
    assert again == s.replace(seed=8, history_limit_mb=9)
    classical = ch.entry_from_result(job(model="classical"), [layer(seed=0)], ["c"], {})
    classical.layers[0].info = {"engine": "classical"}
    assert classical.reuse_settings(0).seed == -1  # the built-in engine has no seed: stays random


def test_apply_again_places_the_same_pixels_through_client_results():
    original = layer(fmt=BGRA8)
    entry = ch.Entry.from_bytes(ch.entry_from_result(job(), [original], ["x"], {}).to_bytes())
    stored = entry.layers[0]
    assert cres.box_of(stored) == cres.box_of(original)
    assert cres.pixels_in(stored, BGRA8) == bytes(original.data)
    assert cres.pixels_in(stored, RGBA8) == convert_pixels(original.data, BGRA8, RGBA8)
    assert cres.layer_names("inpaint", "a cat", [stored]) == ["a cat (seed 7)"]


def decomposition(count: int = 3, group: str = "a house (seed 9)"):
    """A decomposition's result: ``count`` RGBA layers of one group, bottom first, each with its own alpha."""
    layers = []
    for i in range(count):
        data = bytearray(os.urandom(24 * 16 * 4))
        data[3::4] = bytes((x * 11 + i * 40) % 256 for x in range(24 * 16))
        names = {0: "Layer 1 (bottom)", count - 1: f"Layer {count} (top)"}
        name = names.get(i, f"Layer {i + 1}")
        layers.append(ResultLayer(name, 8, 4, 24, 16, RGBA8, bytes(data), 9, {"engine": "diffusers"}, group=group))
    return layers


def test_a_decomposition_applies_again_as_its_whole_group_in_order_with_alpha():
    layers = decomposition() + [layer(name="loose")]
    entry = ch.Entry.from_bytes(
        ch.entry_from_result(job(mode="decompose"), layers, [l.name for l in layers], {}).to_bytes()
    )
    for pick in (0, 1, 2, -1):  # any layer of the group brings the group back, bottom first
        chosen = entry.applied(pick)
        assert cres.groups(chosen)[0] == cres.Group("a house (seed 9)", (0, 1, 2))
        assert [s.name for s in chosen[:3]] == ["Layer 1 (bottom)", "Layer 2", "Layer 3 (top)"]
        assert [cres.pixels_in(s, RGBA8) for s in chosen[:3]] == [l.data for l in layers[:3]]  # alpha kept
    assert [s.name for s in entry.applied(3)] == ["loose"] and cres.groups(entry.applied(3)) == []
    assert len(entry.applied(-1)) == 4
    with pytest.raises(IndexError):
        entry.applied(4)
    # an entry kept before groups were kept reads as before: each layer on its own
    old = ch.entry_from_result(job(mode="decompose"), [layer(), layer()], ["a", "b"], {})
    assert [s.group for s in ch.Entry.from_bytes(old.to_bytes()).layers] == ["", ""]
    assert [s.name for s in old.applied(1)] == ["b"]


def test_the_byte_bound_drops_the_oldest_entries_first():
    entries = [ch.entry_from_result(job(prompt=f"n{i}"), [layer()], ["x"], {}) for i in range(5)]
    one = entries[0].stored_bytes
    hist = ch.History(limit_bytes=int(one * 3.5))
    dropped = [d.prompt for e in entries for d in hist.add(e)]
    assert dropped == ["n0", "n1"] and [e.prompt for e in hist.entries] == ["n2", "n3", "n4"]
    assert hist.stored_bytes <= hist.limit_bytes
    assert [e.prompt for e in hist.set_limit(int(one * 1.5))] == ["n2", "n3"]
    too_big = ch.entry_from_result(job(), [layer(w=200, h=200)], ["x"], {})
    assert hist.add(too_big)[-1] is too_big and too_big not in hist.entries
    capped = ch.History(max_entries=2)
    for e in entries:
        capped.add(e)
    assert [e.prompt for e in capped.entries] == ["n3", "n4"]


def test_delete_and_get():
    hist = ch.History()
    a, b = (ch.entry_from_result(job(prompt=p), [layer()], ["x"], {}) for p in "ab")
    hist.add(a), hist.add(b)
    assert hist.get(b.id) is b
    hist.delete(a.id)
    assert hist.entries == [b]
    with pytest.raises(KeyError, match=a.id):
        hist.get(a.id)


class Doc:
    """A document's stored data, as the adapters keep it (docdata blobs)."""

    def __init__(self) -> None:
        self.blob = None
        self.saves = 0

    def load(self):
        return None if self.blob is None else docdata.unpack(ch.KEY, self.blob)

    def save(self, data):
        self.saves += 1
        self.blob = None if data is None else docdata.pack(ch.KEY, data)


def test_document_history_survives_reopening_and_stays_bounded():
    doc = Doc()
    dh = ch.DocumentHistory(doc.load, doc.save)
    first = dh.record(job(), [layer(seed=1)], ["one"], {"steps": 3})
    second = dh.record(job(prompt="a dog"), [layer(seed=2, w=8, h=8)], ["two"], {})
    assert doc.saves == 2
    again = ch.DocumentHistory(doc.load, doc.save)
    assert [e.id for e in again.entries] == [first.id, second.id] and not again.problem
    assert again.get(first.id).layers[0].data == first.layers[0].data
    again.delete(first.id)
    assert [e.id for e in ch.DocumentHistory(doc.load, doc.save).entries] == [second.id]
    small = ch.DocumentHistory(doc.load, doc.save, limit=10)  # a smaller limit trims what was stored
    assert small.entries == [] and doc.blob is None


@pytest.mark.parametrize(
    "blob",
    [docdata.pack(ch.KEY, b"garbage"), b"not ours at all", docdata.pack(ch.KEY, docdata.pack_map({"format": b"9"}))],
)
def test_unreadable_history_starts_empty_with_a_message_and_is_replaced_only_on_a_new_result(blob):
    doc = Doc()
    doc.blob = blob
    dh = ch.DocumentHistory(doc.load, doc.save)
    assert dh.entries == [] and "cannot be read" in dh.problem and doc.saves == 0 and doc.blob == blob
    dh.record(job(), [layer()], ["x"], {})
    assert len(ch.DocumentHistory(doc.load, doc.save).entries) == 1


def test_a_damaged_entry_inside_a_good_container_is_reported():
    entry = ch.entry_from_result(job(), [layer()], ["x"], {})
    parts = docdata.unpack_map(entry.to_bytes())
    parts["meta"] = b'{"id": 1}'
    good = ch.entry_from_result(job(), [layer()], ["y"], {})
    blob = docdata.pack_map({"format": b"1", "entry/x": docdata.pack_map(parts), f"entry/{good.id}": good.to_bytes()})
    with pytest.raises(docdata.DocumentDataError, match="history entry 'x' is damaged"):
        ch.Entry.from_bytes(docdata.pack_map(parts), "x")
    read = ch.History.from_bytes(blob)  # the damaged entry does not hide the good one
    assert [e.id for e in read.entries] == [good.id] and len(read.damaged) == 1
    assert "history entry 'x' is damaged" in read.damaged[0]


def test_history_limit_mb_is_a_stored_setting():
    s = Settings(history_limit_mb=12)
    assert Settings.from_dict(s.to_dict()).history_limit_mb == 12
    assert ch.limit_bytes(s) == 12_000_000 and ch.limit_bytes(None) == ch.DEFAULT_LIMIT_MB * 1_000_000


def test_results_with_more_pixels_than_kept_at_most_are_not_encoded(monkeypatch):
    doc = Doc()
    dh = ch.DocumentHistory(doc.load, doc.save)
    monkeypatch.setattr(ch, "MAX_RAW_BYTES", 40 * 30 * 4 - 1)
    assert dh.record(job(), [layer()], ["x"], {}) is None and dh.entries == [] and doc.saves == 0
    monkeypatch.setattr(ch, "MAX_RAW_BYTES", 40 * 30 * 4)
    assert dh.record(job(), [layer()], ["x"], {}) is not None and len(dh.entries) == 1
