"""The one way Paintbridge reads a PyTorch pickle (``.pth``/``.pt``/``.ckpt``/``.bin``): ``torch.load`` with
``weights_only=True``.

That loader rebuilds only tensors and plain containers (dicts, lists, tuples, numbers, strings); any other global a
pickle names, such as ``os.system`` in a ``__reduce__`` payload, is refused before it is called, so no code from the
file runs. Older torch releases had a hole in it (CVE-2025-32434, fixed in torch 2.6), so with an older torch pickles
are refused outright. Declared storage sizes are not trusted either: storages are read from the file (zip archives
are memory-mapped where asked), never filled from a size the pickle claims.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from .headers import HeaderError, regular_size

SAFE_TORCH = "2.6"  # the first release whose weights_only loader has no known code-execution hole


class PickleRefused(ValueError):
    """A pickle that is not read: it holds more than tensors, is damaged, or this torch cannot read it safely."""


def load_weights_only(path: Path, what: str = "model", mmap: bool = False):
    """The object a PyTorch pickle holds, rebuilt by torch's weights-only loader; ``what`` names the file's role in
    messages ("upscaler", "IP-Adapter", ...). ``mmap`` maps the storages of zip-format files instead of reading them
    (older, non-zip files are then read normally)."""
    import torch

    try:
        regular_size(path)
    except HeaderError as err:
        raise PickleRefused(str(err)) from None
    if torch.__version__ < SAFE_TORCH:
        raise PickleRefused(
            f"{what} file {path.name} is a pickle, and torch {torch.__version__} cannot read pickles "
            f"safely (CVE-2025-32434, fixed in torch {SAFE_TORCH}): update torch, or use a "
            ".safetensors version of this model"
        )
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not mmap or "mmap" not in str(err):
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except pickle.UnpicklingError as err:
        raise PickleRefused(
            f"{what} file {path.name} holds Python objects besides tensors (or is a TorchScript program); Paintbridge "
            f"reads pickles weights only and does not unpickle such files. Use a .safetensors version of this model. "
            f"({_reason(err)})"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch reports damaged files with many error types
        raise PickleRefused(
            f"{what} file {path.name} cannot be read as a PyTorch state dict: {type(err).__name__}: {str(err)[:300]}"
        ) from None


def _reason(err: Exception) -> str:
    """The line of torch's refusal that names what the pickle wanted (its advice to disable the check is dropped)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "unsupported" in line.lower() or "WeightsUnpickler error" in line]
    return (named or [type(err).__name__])[0][:200]
