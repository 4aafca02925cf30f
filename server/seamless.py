"""Seamless (tileable) results: pictures whose right edge continues into their left edge and bottom into top.

- ``circular(*modules)``: every 2-D convolution of the modules pads circularly (wraps around) for the duration of a
  job, then pads as before. The SD1.5/SDXL UNet and VAE are convolutional and their attention has no positions, so
  with wrapped convolutions the whole network sees the picture as a torus. The pipelines are kept warm and shared by
  every job: the padding is always put back, also when the job fails.
- ``LatentRoller``: Flux/SD3 transformers work on patches with absolute positions (no convolution to wrap); their VAE
  is made circular and the latents are rolled by a random offset between steps and rolled back after the last, so
  every patch boundary, the picture's edges included, is denoised with its neighbours across it as often as any other.
- ``wrap_pad`` / ``fold``: pixel-space work (Lanczos, upscale models, tiled refine) on a picture padded with its own
  opposite edges, then cropped with the two copies of each edge band cross-faded, so the result wraps too.
- ``seam_check``: how the wrapped seam compares with the picture's inner neighbouring pixels.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from protocol.messages import TILEABLE_MODES as MODES  # noqa: F401 - the modes that make a whole picture

from .imageops import resize as plain_resize

CIRCULAR = "circular"


@contextlib.contextmanager
def circular(*modules) -> Iterator[int]:
    """Wrap-around padding in every ``torch.nn.Conv2d`` of ``modules`` (None entries are skipped) while the block runs;
    each convolution's own padding mode comes back afterwards. Yields how many convolutions were changed."""
    import torch

    changed: List[Tuple[object, str]] = []
    seen = set()
    try:
        for module in modules:
            if module is None:
                continue
            for conv in module.modules():
                if isinstance(conv, torch.nn.Conv2d) and id(conv) not in seen:
                    seen.add(id(conv))
                    if conv.padding_mode != CIRCULAR and any(conv.padding if isinstance(conv.padding, tuple) else ()):
                        changed.append((conv, conv.padding_mode))
                        conv.padding_mode = CIRCULAR
        yield len(changed)
    finally:
        for conv, mode in changed:
            conv.padding_mode = mode


class LatentRoller:
    """Rolls a flow model's latents between steps (``step``) and back after the last one; offsets come from ``seed``.

    ``unpack``/``pack`` turn the pipeline's latents into (batch, channels, height, width) and back (Flux packs 2 x 2
    patches into tokens; SD3 latents are already 4-D: identity)."""

    def __init__(self, seed: int, unpack: Callable = lambda t: t, pack: Callable = lambda t: t) -> None:
        self.rng = np.random.default_rng(seed)
        self.unpack, self.pack = unpack, pack
        self.offset = (0, 0)

    def step(self, latents, last: bool):
        """The latents for the next step: rolled by a fresh random offset, or back to where they started (``last``)."""
        full = self.unpack(latents)
        h, w = int(full.shape[-2]), int(full.shape[-1])
        if last:
            dy, dx = -self.offset[0], -self.offset[1]
        else:
            dy, dx = int(self.rng.integers(h)), int(self.rng.integers(w))
        self.offset = ((self.offset[0] + dy) % h, (self.offset[1] + dx) % w)
        return self.pack(full.roll((dy, dx), (-2, -1)))

    def unrolled(self, latents):
        """``latents`` rolled back to the picture's own place (for previews), in the pipeline's layout."""
        if self.offset == (0, 0):
            return latents
        return self.pack(self.unpack(latents).roll((-self.offset[0], -self.offset[1]), (-2, -1)))


def wrap_pad(image: np.ndarray, mx: int, my: int) -> np.ndarray:
    """``image`` (H x W or H x W x C) with ``mx`` columns of its right edge before its left edge and of its left after
    its right, likewise ``my`` rows (a margin larger than the picture repeats it)."""
    pad = [(my, my), (mx, mx)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="wrap")


def _fold_axis(padded: np.ndarray, margin: int, size: int, axis: int) -> np.ndarray:
    """The ``size`` pixels after ``margin`` along ``axis``, their bands near both ends cross-faded with the other copy
    of the same pixels in the margins, half and half at the seam (float32)."""
    a = np.moveaxis(padded.astype(np.float32), axis, 0)
    out = a[margin : margin + size].copy()
    band = min(margin, a.shape[0] - margin - size, size // 2)
    for k in range(band):
        weight = 0.5 * (band - k - 0.5) / band  # k pixels from the seam: 0.5 at the seam down to 0 at the band's end
        # the first pixels and their copy after the inner part; the last pixels and their copy in the left margin
        out[k] = (1 - weight) * out[k] + weight * a[margin + size + k]
        out[size - 1 - k] = (1 - weight) * out[size - 1 - k] + weight * a[margin - 1 - k]
    return np.moveaxis(out, 0, axis)


def fold(padded: np.ndarray, mx: int, my: int, width: int, height: int) -> np.ndarray:
    """The ``width`` x ``height`` picture inside ``padded`` (margins ``mx``, ``my``), made to wrap: each edge band is
    cross-faded with its other copy in the opposite margin (uint8 in, uint8 out)."""
    out = _fold_axis(padded, mx, width, axis=1)
    out = _fold_axis(out, my, height, axis=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def aligned_margin(size: int, target: int, wanted: int) -> int:
    """A wrap margin of at least ``wanted`` pixels for a picture of ``size`` scaled to ``target``, chosen so that it
    scales to a whole number of pixels (the padded picture then scales by exactly ``target / size``); ``wanted`` when
    that would take more than four times as many."""
    step = size // math.gcd(size, target)
    aligned = -(-max(1, wanted) // step) * step
    return aligned if aligned <= max(4 * wanted, 16) else max(1, wanted)


def wrapped(
    scale: Callable[[np.ndarray, int, int], np.ndarray], image: np.ndarray, width: int, height: int, reach: int = 8
) -> np.ndarray:
    """``scale(picture, w, h)`` (a resize, an upscale model) of a picture that wraps: run on the picture padded with
    ``reach`` or more pixels of its opposite edges, then cropped back and ``fold``-ed, so the result wraps too."""
    h, w = image.shape[:2]
    mx, my = aligned_margin(w, width, reach), aligned_margin(h, height, reach)
    ox, oy = int(round(mx * width / w)), int(round(my * height / h))
    big = scale(wrap_pad(image, mx, my), width + 2 * ox, height + 2 * oy)
    return fold(big, ox, oy, width, height)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``imageops.resize`` of a picture that wraps: its neighbours across each edge are its opposite edge."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    reach = max(8, 2 * int(math.ceil(max(w / width, h / height))))  # Lanczos reads 4 pixels, area averaging a cell
    return wrapped(plain_resize, image, width, height, reach)


def upscale_latents(latents, height: int, width: int):
    """Latents [B, C, h, w] interpolated bilinearly (as ``F.interpolate(..., align_corners=False)``) to
    ``height`` x ``width``, their neighbours across each edge being the opposite edge."""
    import torch

    out = latents.float()
    for axis, size in ((-2, height), (-1, width)):
        n = out.shape[axis]
        pos = (torch.arange(size, dtype=torch.float32) + 0.5) * n / size - 0.5
        low = torch.floor(pos)
        frac = (pos - low).to(out.dtype)
        i0 = low.long() % n
        i1 = (i0 + 1) % n
        shape = [1] * out.dim()
        shape[axis] = size
        frac = frac.view(shape)
        out = out.index_select(axis, i0) * (1 - frac) + out.index_select(axis, i1) * frac
    return out.to(latents.dtype)


def margin_for(scale: float, reach: int) -> int:
    """Source pixels of wrap margin so that ``reach`` output pixels (a kernel's, a tile overlap's) fit inside it."""
    return max(4, int(math.ceil(reach / max(scale, 1e-6))))


def seam_check(image: np.ndarray) -> Dict[str, float]:
    """How continuous the wrapped seams of ``image`` (H x W or H x W x C) are, per axis ("x": last column to first,
    "y": last row to first): the mean absolute difference across the seam over the mean of the inner neighbouring
    pixels' (``*_ratio``: 1 = as continuous as the inside), and the correlation of the pixels across the seam beside
    the mean inner neighbouring correlation (``*_correlation``, ``*_inner_correlation``): a frame that only looks
    smooth (both edges flat and alike) has a low correlation across the seam."""
    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[..., None]
    out: Dict[str, float] = {}
    for name, a in (("x", img), ("y", img.transpose(1, 0, 2))):
        inner = float(np.abs(np.diff(a, axis=1)).mean())
        seam = float(np.abs(a[:, -1] - a[:, 0]).mean())
        out[f"{name}_ratio"] = seam / inner if inner > 0 else (0.0 if seam == 0 else math.inf)
        out[f"{name}_correlation"] = _correlation(a[:, -1], a[:, 0])
        out[f"{name}_inner_correlation"] = float(
            np.mean([_correlation(a[:, k], a[:, k + 1]) for k in range(a.shape[1] - 1)])
        )
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def continuous(report: Dict[str, float], tolerance: float = 0.0) -> Optional[str]:
    """None when both seams of a ``seam_check`` report are continuous — no larger a difference than the inner
    neighbouring pixels' (within ``tolerance``) and a correlation across the seam no lower than theirs (within
    ``tolerance``) —, else which seam is not and why."""
    for axis in ("x", "y"):
        ratio, corr, inner = (
            report[f"{axis}_ratio"],
            report[f"{axis}_correlation"],
            report[f"{axis}_inner_correlation"],
        )
        if ratio > 1 + tolerance:
            return f"the {axis} seam differs {ratio:.2f}x as much as the inner neighbouring pixels"
        if corr < inner - tolerance:
            return f"the {axis} seam's correlation {corr:.2f} is below the inner neighbouring pixels' {inner:.2f}"
    return None
