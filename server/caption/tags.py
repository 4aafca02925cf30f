"""A caption sentence as comma-separated tags: the phrases between its linking words, without articles."""

from __future__ import annotations

import re
from typing import List

# Words that join phrases: the caption is cut at each of them.
_JOINERS = frozenset(
    """
about above across after against along among and around as at before behind below beneath beside between beyond but
by down during for from in inside into near next of off on onto or out outside over past through to toward towards
under underneath up upon while with within without
""".split()
)
# Words that open or pad a phrase without naming anything.
_FILLERS = frozenset(
    """
a an the this that these those its their his her some there is are was were be being been it which who has have
""".split()
)
_WORD = re.compile(r"[\w'-]+", re.UNICODE)


def caption_tags(sentence: str, limit: int = 24) -> List[str]:
    """The phrases of ``sentence`` as tags, in order, each once (``"a cat sitting on a red sofa"`` → ``["cat
    sitting", "red sofa"]``); at most ``limit``."""
    tags: List[str] = []
    phrase: List[str] = []

    def close() -> None:
        words = [w for w in phrase if w not in _FILLERS]
        tag = " ".join(words)
        if tag and tag not in tags:
            tags.append(tag)
        phrase.clear()

    for piece in re.split(r"[,;.:!?]", sentence.lower()):
        for word in _WORD.findall(piece):
            if word in _JOINERS:
                close()
            else:
                phrase.append(word)
        close()
    return tags[:limit]


def as_tags(sentence: str) -> str:
    """``caption_tags`` joined as a prompt (``"cat sitting, red sofa"``)."""
    return ", ".join(caption_tags(sentence))
