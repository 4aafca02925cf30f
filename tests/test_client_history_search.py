"""client/history_search.py: finding kept results by prompt, model, seed, mode and date (both editors' search)."""

from __future__ import annotations

import time

import pytest

from client import history as ch
from client import history_search as hs


def entry(
    prompt: str,
    mode: str = "generate",
    model: str = "tiny-sd15",
    seeds=(7,),
    when: str = "2025-12-07 14:05",
    negative: str = "",
) -> ch.Entry:
    stamp = time.mktime(time.strptime(when, "%Y-%m-%d %H:%M"))
    layers = [ch.StoredLayer(f"r{s}", 0, 0, 1, 1, s, "rgba8", ch.encode_pixels(bytes(4), 1, 4)) for s in seeds]
    return ch.Entry(f"id{prompt[:3]}{seeds[0]}", stamp, mode, model, prompt, {"negative_prompt": negative}, {}, layers)


CAT = entry("A red cat on a Sofa", "inpaint", "tiny-sd15", (1234, 1235), "2025-12-07 14:05", negative="blurry")
DOG = entry("a dog in the rain", "generate", "flux-dev", (42,), "2025-11-30 09:10")
TILE = entry("seamless brick wall", "upscale", "", (9,), "2025-12-08 23:59")
ALL = [CAT, DOG, TILE]


def found(query: str):
    return [e.prompt for e in hs.search(ALL, query)]


def test_a_word_of_the_prompt_finds_its_entry_in_any_case():
    assert found("cat") == [CAT.prompt]
    assert found("SOFA") == [CAT.prompt]
    assert found("rain dog") == [DOG.prompt]  # every word must match, in any order
    assert found("cat rain") == []


def test_an_empty_query_keeps_every_entry_in_order():
    assert found("") == [e.prompt for e in ALL] and found("   ") == [e.prompt for e in ALL]


def test_quoted_words_match_as_a_phrase():
    assert found('"red cat"') == [CAT.prompt]
    assert found('"cat red"') == []


def test_fields_model_mode_seed_and_negative():
    assert found("model:flux") == [DOG.prompt]
    assert found("flux") == [DOG.prompt]  # a plain word also looks at the model
    assert found("model:default") == [TILE.prompt]  # no model: the server's default
    assert found("mode:inpaint") == [CAT.prompt]
    assert found("upscale") == [TILE.prompt]
    assert found("seed:1235") == [CAT.prompt]  # any of an entry's seeds
    assert found("seed:123") == []  # seeds match exactly
    assert found("42") == [DOG.prompt]
    assert found("negative:blurry") == [CAT.prompt]
    assert found("prompt:blurry") == []


def test_dates_by_prefix_and_range():
    assert found("date:2025-12") == [CAT.prompt, TILE.prompt]
    assert found("2025-11-30") == [DOG.prompt]
    assert found('date:"2025-12-08 23"') == [TILE.prompt]
    assert found("date:>2025-12-07") == [CAT.prompt, TILE.prompt]
    assert found("date:<2025-12-07") == [DOG.prompt]
    assert found("14:05") == [CAT.prompt]
    today = entry("made today", when=time.strftime("%Y-%m-%d %H:%M"))
    assert [e.prompt for e in hs.search(ALL + [today], "date:today")] == ["made today"]


def test_an_unknown_field_is_a_plain_word():
    ratio = entry("poster 16:9 format")
    assert [e.prompt for e in hs.search(ALL + [ratio], "16:9")] == ["poster 16:9 format"]


@pytest.mark.parametrize(
    "query, says", [("seed:abc", "whole number"), ("date:yesterday", "2026-12-07"), ("date:>12-2026", "date:>")]
)
def test_a_query_that_cannot_be_read_names_what_is_wrong(query, says):
    with pytest.raises(hs.SearchError, match=says):
        hs.search(ALL, query)


def test_matches_agrees_with_search():
    assert hs.matches(CAT, "cat seed:1234") and not hs.matches(DOG, "cat")
