"""Reading a weights file's tensors without running any code from it.

``.safetensors`` with safetensors after ``headers`` has validated the header, ``.pth``/``.pt``/``.ckpt``/``.bin`` through
``pickles`` (``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers and refuses any other
Python object). TorchScript files are refused (they carry code). Used for upscalers, inpainters and annotator networks.
"""

from __future__ import annotations

from pathlib import Path

from protocol.errors import ProtocolError

from . import headers, pickles

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


def read_state_dict(path: Path, what: str = "upscaler") -> dict:
    """The tensors of a weights file, without running any code from it; ``what`` names the file in errors
    ("upscaler", "soft-edge annotator", ...)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            headers.safetensors_header(path)
        except headers.HeaderError as err:
            raise ProtocolError("unsupported", f"{what} file {path}: {err}") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ProtocolError(
                "unsupported", f"{what} file {path} is not a readable .safetensors file: {err}"
            ) from err
    if suffix in PICKLE_SUFFIXES:
        try:
            data = pickles.load_weights_only(path, what)
        except pickles.PickleRefused as err:
            raise ProtocolError("unsupported", str(err)) from None
        if not isinstance(data, dict):
            raise ProtocolError("unsupported", f"{what} file {path} holds a {type(data).__name__}, not a state dict")
        return data
    raise ProtocolError(
        "unsupported",
        f"{what} file {path} has the suffix {suffix!r}; it must be one of {', '.join(WEIGHT_SUFFIXES)}",
    )
