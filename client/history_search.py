"""Searching a document's kept results (``client.history`` entries) by prompt, model, seed, mode and date.

One query language for both editors' search fields: words separated by spaces, each must match (case-insensitive);
``"quoted words"`` match as one phrase. A plain word matches anywhere in the prompt, the negative prompt, the model,
the mode, a seed or the date (``2026-12-07 14:05``, local time). A word may name its field:

- ``prompt:cat`` / ``negative:blurry`` / ``model:sdxl`` / ``mode:inpaint``: part of that field;
- ``seed:1234``: one of the entry's seeds exactly;
- ``date:2026-12`` (a prefix of ``YYYY-MM-DD HH:MM``), ``date:>2026-12-01``, ``date:<2026-12-08`` (on or after /
  before that day), and ``date:today``.

An empty query matches everything. Pure Python (both editors' interpreters run it).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

FIELDS = ("prompt", "negative", "model", "mode", "seed", "date")
_TOKEN = re.compile(r'(?:(\w+):)?(?:"([^"]*)"?|(\S+))')
_DAY = re.compile(r"\d{4}(-\d{2}){0,2}")


class SearchError(ValueError):
    """A query that cannot mean anything (an unknown field, a seed that is not a number, a date that is not one)."""


@dataclass(frozen=True)
class Term:
    """One word of a query: the field it names ("" for any) and the text, lower case."""

    field: str
    text: str


def parse(query: str) -> Tuple[Term, ...]:
    """The terms of ``query``; ``SearchError`` naming the word that cannot be read."""
    terms = []
    for match in _TOKEN.finditer(query or ""):
        name, phrase, word = match.group(1), match.group(2), match.group(3)
        text = (phrase if phrase is not None else word or "").strip().lower()
        field = (name or "").lower()
        if name and field not in FIELDS:  # "a:b" with an unknown field is a plain word (e.g. a ratio "16:9")
            text, field = f"{name.lower()}:{text}", ""
        if not text:
            continue
        if field == "seed" and not text.isdigit():
            raise SearchError(f"seed:{text} — a seed is a whole number, e.g. seed:1234")
        if field == "date":
            _check_date(text)
        terms.append(Term(field, " ".join(text.split())))
    return tuple(terms)


def _check_date(text: str) -> None:
    bound = text[:1] in "<>"
    day = text[1:] if bound else text
    if day == "today":
        return
    if not (_DAY.fullmatch(day) if bound else re.fullmatch(r"[\d: -]+", day)):
        raise SearchError(
            f"date:{text} — write a day as 2026-12-07 (or a prefix: 2026-12), before it as "
            "date:<2026-12-07, from it on as date:>2026-12-07, or date:today"
        )


def _when(entry) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(entry.time)))


def _text(entry, field: str) -> str:
    if field == "prompt":
        return " ".join(str(entry.prompt).split()).lower()
    if field == "negative":
        return " ".join(str((entry.settings or {}).get("negative_prompt") or "").split()).lower()
    if field == "model":
        return str(entry.model or "default").lower()
    if field == "mode":
        return str(entry.mode).lower()
    raise KeyError(field)


def _date_matches(entry, text: str, today: str) -> bool:
    when = _when(entry)
    if text[:1] in "<>":
        day = today if text[1:] == "today" else text[1:]
        return when[: len(day)] >= day if text[0] == ">" else when[: len(day)] < day
    return when.startswith(today if text == "today" else text)


def term_matches(entry, term: Term, today: Optional[str] = None) -> bool:
    """Whether one term matches ``entry`` (a ``client.history.Entry``)."""
    today = today or time.strftime("%Y-%m-%d")
    if term.field == "seed":
        return int(term.text) in entry.seeds
    if term.field == "date":
        return _date_matches(entry, term.text, today)
    if term.field:
        return term.text in _text(entry, term.field)
    if any(term.text in _text(entry, f) for f in ("prompt", "negative", "model", "mode")):
        return True
    if term.text.isdigit() and int(term.text) in entry.seeds:
        return True
    return _when(entry).startswith(term.text) or term.text in _when(entry).split(" ")


def matches(entry, query: str) -> bool:
    """Whether ``entry`` matches every term of ``query`` (``SearchError`` for a query that cannot be read)."""
    terms = parse(query)
    today = time.strftime("%Y-%m-%d")
    return all(term_matches(entry, t, today) for t in terms)


def search(entries: Iterable, query: str) -> List:
    """The entries (in their order) that match ``query``; all of them for an empty query."""
    terms = parse(query)
    today = time.strftime("%Y-%m-%d")
    return [e for e in entries if all(term_matches(e, t, today) for t in terms)]
