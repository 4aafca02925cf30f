"""Reading a weights file's tensors without running any code from it.

``.safetensors`` with safetensors, ``.pth``/``.pt``/``.ckpt``/``.bin`` with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers and refuses any other Python object. TorchScript files are refused (they carry
code). Used for upscalers and annotator networks.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from protocol.errors import ProtocolError

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


def read_state_dict(path: Path, what: str = "upscaler") -> dict:
    """The tensors of a weights file, without running any code from it; ``what`` names the file in errors
    ("upscaler", "soft-edge annotator", ...)."""
    import torch

    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ProtocolError("unsupported", f"{what} file {path} is not a readable .safetensors file: {err}") from err
    if suffix in PICKLE_SUFFIXES:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ProtocolError(
                "unsupported",
                f"{what} file {path} holds Python objects besides tensors (or is a TorchScript program); "
                f"Paintbridge does not unpickle such files. Use a .safetensors version of this model. ({err})",
            ) from err
        except (RuntimeError, EOFError, OSError) as err:
            raise ProtocolError("unsupported",
                              f"{what} file {path} cannot be read as a PyTorch state dict: {err}") from err
        if not isinstance(data, dict):
            raise ProtocolError("unsupported", f"{what} file {path} holds a {type(data).__name__}, not a state dict")
        return data
    raise ProtocolError(
        "unsupported",
        f"{what} file {path} has the suffix {suffix!r}; it must be one of {', '.join(WEIGHT_SUFFIXES)}",
    )
