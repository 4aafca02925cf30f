"""Upscaler models (ESRGAN, RealESRGAN, UltraSharp, SwinIR, HAT, OmniSR, ...) loaded safely through spandrel.

spandrel recognises the architecture from the state dict. The file itself is read here, never unpickled: ``.safetensors``
with safetensors, ``.pth``/``.pt``/``.ckpt``/``.bin`` with ``torch.load(weights_only=True)``, which only rebuilds
tensors and plain containers and refuses any other Python object. TorchScript files are refused (they carry code).
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from protocol.errors import ProtocolError

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
UPSCALER_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


def read_state_dict(path: Path, what: str = "upscaler") -> dict:
    """The tensors of a weights file, without running any code from it; ``what`` names the file in errors
    ("upscaler", "soft-edge annotator", ...)."""
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
        f"{what} file {path} has the suffix {suffix!r}; it must be one of {', '.join(UPSCALER_SUFFIXES)}",
    )


def load_upscaler(path: Path, device: str = "cpu"):
    """A spandrel ImageModelDescriptor for the upscaler file at ``path``, in eval mode on ``device``.

    Raises ProtocolError("unsupported") when spandrel does not know the architecture or it is not an RGB image model.
    """
    from spandrel import ImageModelDescriptor, MAIN_REGISTRY, UnsupportedModelError, canonicalize_state_dict

    state = canonicalize_state_dict(read_state_dict(path))
    try:
        model = MAIN_REGISTRY.load(state)
    except UnsupportedModelError as err:
        raise ProtocolError(
            "unsupported",
            f"{path.name} is not an upscaler architecture Paintbridge knows (ESRGAN, RealESRGAN, SwinIR, HAT, OmniSR, ...)",
        ) from err
    except (KeyError, RuntimeError, ValueError) as err:
        raise ProtocolError("unsupported", f"{path.name} looks like an upscaler but its weights don't fit: {err}") from err
    if not isinstance(model, ImageModelDescriptor):
        raise ProtocolError("unsupported", f"{path.name} is a {model.purpose} model, not an upscaler")
    if model.input_channels != 3 or model.output_channels != 3:
        raise ProtocolError(
            "unsupported",
            f"{path.name} works on {model.input_channels}-channel images; Paintbridge upscales RGB (3-channel) images",
        )
    dev = torch.device(device)
    model.to(dev).eval()
    if dev.type == "cuda" and model.supports_half:
        model.half()
    return model


class UpscalerCache:
    """Keeps the most recently used upscaler loaded (keyed by file, size and modification time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Tuple] = None
        self._model = None

    def get(self, path: Path, device: str = "cpu"):
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, device)
        with self._lock:
            if self._key != key:
                self._model, self._key = None, None
                self._model = load_upscaler(path, key[3])
                self._key = key
            return self._model


def run_model(model, rgb: np.ndarray) -> np.ndarray:
    """Run an upscaler on one H x W x 3 uint8 tile; returns (H*scale) x (W*scale) x 3 uint8."""
    param = next(model.model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(param.device)
    x = x.permute(2, 0, 1).unsqueeze(0).to(param.dtype) / 255.0
    y = model(x)
    out = (y[0].permute(1, 2, 0).float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return out.cpu().numpy()
