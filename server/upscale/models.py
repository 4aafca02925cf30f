"""Upscaler models (ESRGAN, RealESRGAN, UltraSharp, SwinIR, HAT, OmniSR, ...) loaded safely through spandrel.

spandrel recognises the architecture from the state dict; the file is read by ``models.weights.read_state_dict``,
never unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from protocol.errors import ProtocolError

from ..models.cache import LastLoaded
from ..models.weights import read_state_dict


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
        raise ProtocolError(
            "unsupported", f"{path.name} looks like an upscaler but its weights don't fit: {err}"
        ) from err
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


# The most recently used upscaler stays loaded.
upscalers: LastLoaded = LastLoaded(load_upscaler)


def run_model(model, rgb: np.ndarray) -> np.ndarray:
    """Run an upscaler on one H x W x 3 uint8 tile; returns (H*scale) x (W*scale) x 3 uint8."""
    param = next(model.model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(param.device)
    x = x.permute(2, 0, 1).unsqueeze(0).to(param.dtype) / 255.0
    y = model(x)
    out = (y[0].permute(1, 2, 0).float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return out.cpu().numpy()
