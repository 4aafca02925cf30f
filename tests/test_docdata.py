"""client/docdata.py: the stored form of Paintbridge data inside a document (both editors)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings, strategies as st

from client import docdata
from client.docdata import DocumentDataError


@given(st.binary(max_size=4096), st.sampled_from(["history", "regions", "a.b-c_1"]))
@settings(max_examples=60, deadline=None)
def test_pack_unpack_round_trip_is_exact(data, key):
    assert docdata.unpack(key, docdata.pack(key, data)) == data


def test_the_header_names_format_key_and_checksum():
    blob = docdata.pack("history", b"abc")
    assert blob.startswith(docdata.MAGIC)
    assert b"history" in blob[:20]
    assert blob.endswith(b"abc")
    assert zlib.crc32(b"abc").to_bytes(4, "little") in blob


@pytest.mark.parametrize(
    "blob, words",
    [
        (b"", "not written by Paintbridge"),
        (b"GIMP comment text", "not written by Paintbridge"),
        (docdata.pack("history", b"x" * 100)[:-1], "damaged"),
        (docdata.pack("history", b"x" * 100) + b"!", "damaged"),
        (docdata.pack("history", b"x" * 100)[:12], "cut short"),
        (docdata.pack("regions", b"x"), "labelled 'regions'"),
    ],
)
def test_foreign_short_or_damaged_data_raises_a_clear_error(blob, words):
    with pytest.raises(DocumentDataError, match=words) as err:
        docdata.unpack("history", blob)
    assert "'history'" in str(err.value)


def test_a_flipped_byte_is_caught_by_the_checksum():
    blob = bytearray(docdata.pack("history", bytes(range(256))))
    blob[-10] ^= 0x40
    with pytest.raises(DocumentDataError, match="checksum"):
        docdata.unpack("history", bytes(blob))


def test_a_newer_format_asks_for_an_update():
    blob = bytearray(docdata.pack("history", b"x"))
    blob[4] = docdata.VERSION + 1
    with pytest.raises(DocumentDataError, match="update Paintbridge"):
        docdata.unpack("history", bytes(blob))


def test_size_limit_is_checked_on_both_sides():
    with pytest.raises(DocumentDataError, match="at most 10"):
        docdata.pack("history", b"x" * 11, limit=10)
    with pytest.raises(DocumentDataError, match="more than 10"):
        docdata.unpack("history", docdata.pack("history", b"x" * 11), limit=10)


@pytest.mark.parametrize("key", ["", "a/b", "x" * 65, "naïve", "two words"])
def test_unusable_keys_are_refused(key):
    with pytest.raises(DocumentDataError, match="not a usable document data key"):
        docdata.pack(key, b"")


@given(st.dictionaries(st.text(max_size=20), st.binary(max_size=300), max_size=8))
@settings(max_examples=60, deadline=None)
def test_map_round_trip_keeps_keys_values_and_order(items):
    back = docdata.unpack_map(docdata.pack_map(items))
    assert back == items and list(back) == list(items)


def test_a_cut_map_raises():
    blob = docdata.pack_map({"a": b"123", "b": b"4567"})
    for cut in (0, 3, 10, len(blob) - 1):
        with pytest.raises(DocumentDataError, match="cut short"):
            docdata.unpack_map(blob[:cut])
    with pytest.raises(DocumentDataError, match="stray bytes"):
        docdata.unpack_map(blob + b"z")
