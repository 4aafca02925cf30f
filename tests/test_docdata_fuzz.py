"""Every reader of Paintbridge data kept in documents, fed hostile bytes: only ``DocumentDataError`` (never another
exception, never unbounded memory), and a damaged part never hides the readable rest.

Readers: ``docdata.unpack``/``unpack_map``/``inflate`` (the container of every key), ``history.History.from_bytes``
and its entries' pixels and thumbnails, ``regions.RegionList.from_bytes`` (Krita's document regions),
``regions.binding_from_bytes`` (GIMP's region on a layer), and ``Settings.from_dict`` of a history entry's job
settings (the reference and control slots a document carries). The zlib-bomb test measures the reading process's
peak memory in a subprocess of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import docdata
from client import history as ch
from client.docdata import DocumentDataError
from client.regions import RegionBinding, RegionList, binding_from_bytes, binding_to_bytes
from client.settings import Settings
from protocol import RGBA8, ResultLayer

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)


def _entry(seed: int = 1, w: int = 6, h: int = 5) -> ch.Entry:
    data = bytes((i * 7 + seed) % 256 for i in range(w * h * 4))
    return ch.entry_from_result(Settings(prompt="a cat"), [_layer(w, h, data, seed)], [f"cat {seed}"], {"steps": 3})


def _layer(w: int, h: int, data: bytes, seed: int) -> ResultLayer:
    return ResultLayer(name="r", x=1, y=2, width=w, height=h, format=RGBA8, data=data, seed=seed, info={})


GOOD = ch.History()
GOOD.entries = [_entry(1), _entry(2)]
GOOD_BLOB = GOOD.to_bytes()


def _mutations():
    """A valid history blob with bytes replaced, inserted or removed somewhere."""
    position = st.integers(0, len(GOOD_BLOB))
    replace = st.tuples(position, st.binary(min_size=1, max_size=8)).map(
        lambda t: GOOD_BLOB[: t[0]] + t[1] + GOOD_BLOB[t[0] + len(t[1]) :]
    )
    insert = st.tuples(position, st.binary(min_size=1, max_size=8)).map(
        lambda t: GOOD_BLOB[: t[0]] + t[1] + GOOD_BLOB[t[0] :]
    )
    cut = st.tuples(position, st.integers(1, 16)).map(lambda t: GOOD_BLOB[: t[0]] + GOOD_BLOB[t[0] + t[1] :])
    return replace | insert | cut


def _read_everything(history: ch.History) -> None:
    """What the panels do with a history that was read: list, describe, reuse, apply (pixels) and show thumbnails."""
    for entry in history.entries:
        entry.title(), entry.describe(), entry.reuse_settings()
        for index, layer in enumerate(entry.layers):
            assert len(layer.data) == layer.width * layer.height * 4
            w, h, rgba = entry.thumbnail_rgba(index)
            assert len(rgba) == w * h * 4


@FUZZ
@given(st.binary(max_size=200) | _mutations())
def test_the_history_reader_answers_only_document_data_errors(blob):
    try:
        history = ch.History.from_bytes(blob)
    except DocumentDataError as err:
        assert str(err)
        return
    _read_everything(history)  # what was read is whole: no part of it raises later
    assert all(isinstance(reason, str) and reason for reason in history.damaged)


@FUZZ
@given(_mutations())
def test_opening_a_document_with_a_damaged_history_is_never_fatal(blob):
    stored = docdata.pack(ch.KEY, blob)
    saved = []
    kept = ch.DocumentHistory(lambda: docdata.unpack(ch.KEY, stored), saved.append)
    _read_everything(kept.history)
    assert kept.problem or len(kept.entries) == 2  # nothing is left out without a word


@FUZZ
@given(
    json_values,
    st.dictionaries(st.sampled_from(["meta", "layer/0", "thumb/0", "layer/1"]), st.binary(max_size=40), max_size=4),
)
def test_an_entry_with_any_meta_and_parts_is_read_whole_or_refused(meta, parts):
    raw = dict(parts, meta=json.dumps(meta).encode())
    try:
        entry = ch.Entry.from_bytes(docdata.pack_map(raw), "x")
    except DocumentDataError as err:
        assert str(err)
        return
    history = ch.History()
    history.entries = [entry]
    _read_everything(history)


@FUZZ
@given(json_values)
def test_stored_job_settings_with_any_values_give_usable_settings(value):
    """A history entry's settings (with its reference and control slots) as a document may carry them."""
    for data in (
        value,
        {"references": value},
        {"controls": value, "mode": value, "strength": value, "seed": value},
        {"references": [value, {"layer": "x", "strength": value, "start": value, "end": value}]},
    ):
        out = Settings.from_dict(data)
        assert Settings.from_dict(json.loads(json.dumps(out.to_dict()))) == out


@FUZZ
@given(
    st.binary(max_size=120)
    | json_values.map(lambda v: json.dumps(v).encode())
    | json_values.map(lambda v: json.dumps({"format": 1, "regions": v}).encode())
    | st.lists(json_values, max_size=4).map(lambda v: json.dumps({"format": 1, "regions": v}).encode())
)
def test_the_region_readers_answer_only_document_data_errors(blob):
    try:
        regions = RegionList.from_bytes(blob)
        assert len(regions) <= 16 and all(0.0 <= b.strength <= 1.0 for b in regions.items)
    except DocumentDataError as err:
        assert "region prompts kept in this document" in str(err)
    try:
        binding = binding_from_bytes(blob, "L")
        assert binding is None or 0.0 <= binding.strength <= 1.0
    except DocumentDataError as err:
        assert "region prompt kept on layer 'L'" in str(err)


def test_a_damaged_region_does_not_hide_the_others():
    good = RegionList([RegionBinding("a", "a red car"), RegionBinding("b", "a lake")])
    raw = json.loads(good.to_bytes())
    raw["regions"].insert(1, {"prompt": "no layer"})
    raw["regions"].append({"layer": "c", "strength": "strong"})
    read = RegionList.from_bytes(json.dumps(raw).encode())
    assert [b.layer for b in read.items] == ["a", "b"] and len(read.damaged) == 2
    assert "region 2 is damaged" in read.damaged[0] and "strength 'strong'" in read.damaged[1]
    assert binding_from_bytes(binding_to_bytes(good.items[0]), "a") == good.items[0]
    with pytest.raises(DocumentDataError, match="not in a format"):
        RegionList.from_bytes(b'{"format": "1", "regions": []}')
    with pytest.raises(DocumentDataError, match="newer than this plugin"):
        RegionList.from_bytes(b'{"format": 9, "regions": []}')
    with pytest.raises(DocumentDataError, match="damaged"):
        RegionList.from_bytes(b"[" * 100_000)  # nested beyond the parser's recursion limit


@FUZZ
@given(st.binary(max_size=64), st.integers(-1, 1 << 40))
def test_inflate_never_produces_more_than_the_declared_size(packed, size):
    try:
        out = docdata.inflate(packed, size, "the part")
    except DocumentDataError as err:
        assert str(err).startswith("the part")
        return
    assert len(out) == size


@FUZZ
@given(st.binary(max_size=200), st.text(min_size=1, max_size=8, alphabet="abcxyz"))
def test_the_container_readers_answer_only_document_data_errors(blob, key):
    for read in (lambda: docdata.unpack(key, blob), lambda: docdata.unpack_map(blob)):
        try:
            read()
        except DocumentDataError as err:
            assert str(err)


# --- zlib bombs: small in the document, 1 GiB once inflated ----------------------------------------------------------

BOMB_SCRIPT = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    from client import docdata, history as ch
    from docbombs import bomb_history

    blob, good, bad = bomb_history()
    stored = docdata.pack(ch.KEY, blob)
    del blob
    errors = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    kept = ch.DocumentHistory(lambda: docdata.unpack(ch.KEY, stored), lambda data: None)  # what a panel does
    for read in (lambda: bad.thumbnail_rgba(0), lambda: bad.layers[1].data,
                 lambda: ch.Entry.from_bytes(bad.to_bytes(), bad.id)):
        try:
            read()
        except docdata.DocumentDataError as err:
            errors.append(str(err))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    print(json.dumps({"stored": len(stored), "entries": [e.id for e in kept.entries], "good": good.id,
                      "problem": kept.problem, "errors": errors, "peak": peak, "rss_growth": rss_growth}))
""")


@pytest.fixture(scope="module")
def bomb_report():
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests.parent), str(tests)]))
    done = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT], capture_output=True, text=True, timeout=300, env=env, cwd=tests.parent
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_history_whose_thumbnail_and_layer_inflate_to_1_gib_is_refused_in_bounded_memory(bomb_report):
    report = bomb_report
    assert report["stored"] < 4 << 20  # the bombs are small in the document
    assert report["peak"] < 64 << 20 and report["rss_growth"] < 64 << 20, report
    thumb, layer, entry = report["errors"]
    assert thumb.startswith("the thumbnail of") and "more than the 16384 bytes it declares" in thumb
    assert layer.startswith("the pixels of") and "more than the 16384 bytes it declares" in layer
    assert "the thumbnail of result 1 of history entry" in entry


def test_the_bomb_entry_is_left_out_named_and_the_good_entry_stays(bomb_report):
    assert bomb_report["entries"] == [bomb_report["good"]]
    problem = bomb_report["problem"]
    assert "1 result of the history stored in this image is damaged and left out" in problem
    assert "the thumbnail of result 1 of history entry" in problem and "decompresses to more than" in problem
