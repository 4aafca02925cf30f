"""What the detectors share: a found box with its target and score, and the size bound on their weights files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from protocol.errors import UNSUPPORTED, ProtocolError

from ..models.headers import HeaderError, regular_size

# YuNet files are ~0.2 MB, MediaPipe's palm detector ~4 MB; OpenCV holds about 4x a network's file size while it
# parses it, so larger files are refused before OpenCV reads them
MAX_DETECTOR_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class Detection:
    """One found object: its box in the image's pixels and its score (0-1)."""

    target: str
    x: int
    y: int
    width: int
    height: int
    score: float


def checked_weights_size(path: Path, expected: str) -> int:
    """The size of a detector's weights file, refused (``unsupported``, naming the file) when it is not a regular
    file or is larger than any detector's (``expected`` says what such a file is, e.g. "a YuNet face detector is
    about 0.2 MB")."""
    try:
        size = regular_size(Path(path))
    except HeaderError as err:
        raise ProtocolError(UNSUPPORTED, str(err), field="params.detail") from None
    if size > MAX_DETECTOR_BYTES:
        raise ProtocolError(
            UNSUPPORTED,
            f"{Path(path).name} is {size / 1e6:.1f} MB; {expected} (at most {MAX_DETECTOR_BYTES >> 20} MB are read)",
            field="params.detail",
        )
    return size
