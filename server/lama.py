"""The LaMa-class fill (fill "lama"): a large-mask inpainting network (LaMa, Suvorov et al. 2022) from the models
folder's ``inpaint/`` (or ``lama/``) folder, loaded through spandrel.

The weights file is read by ``models.weights.read_state_dict`` (safetensors, or ``torch.load(weights_only=True)``),
never unpickled; torch is imported only when a job asks for this fill. ``paintbridge models pull lama`` downloads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from .models.cache import LastLoaded
from .models.registry import KIND_FOLDERS, ModelEntry, ModelRegistry
from .models.weights import read_state_dict

KIND = "inpainter"
PULL = "lama"  # the catalogue's id for the weights
MULTIPLE = 8  # the network's input size must be a multiple of this


def entry(registry: ModelRegistry) -> ModelEntry:
    """The installed LaMa-class inpainter (the first by name); ``model_not_found`` naming the pull when none is."""
    usable = [e for e in registry.entries(KIND) if e.problem is None]
    if not usable:
        where = " or ".join(str(d / KIND_FOLDERS[KIND][0]) for d in registry.dirs) or "the models folder"
        raise ProtocolError(
            MODEL_NOT_FOUND,
            f"fill 'lama' needs LaMa weights, and none are installed in {where}: "
            f"run 'paintbridge models pull {PULL}' (or pull it from the plugin's model list), "
            "or choose the fill 'patch'",
            field="params.fill",
        )
    return usable[0]


def load(path: Path, device: str = "cpu"):
    """A spandrel MaskedImageModelDescriptor for the LaMa file at ``path``, in eval mode on ``device``."""
    import torch
    from spandrel import MAIN_REGISTRY, MaskedImageModelDescriptor, UnsupportedModelError, canonicalize_state_dict

    state = canonicalize_state_dict(read_state_dict(path, "inpainter"))
    if "model.1.bn_l.running_mean" in state:  # saved from the generator itself: spandrel expects it as ".model"
        state = {f"model.{k}": v for k, v in state.items()}
    try:
        model = MAIN_REGISTRY.load(state)
    except UnsupportedModelError as err:
        raise ProtocolError(UNSUPPORTED, f"{path.name} is not an inpainting network Paintbridge knows (LaMa)") from err
    except (KeyError, RuntimeError, ValueError) as err:
        raise ProtocolError(UNSUPPORTED, f"{path.name} looks like LaMa but its weights don't fit: {err}") from err
    if not isinstance(model, MaskedImageModelDescriptor) or model.input_channels != 3:
        raise ProtocolError(UNSUPPORTED, f"{path.name} is a {model.purpose} model, not an RGB inpainting network")
    model.to(torch.device(device)).eval()
    return model


# The most recently used inpainter stays loaded.
inpainters: LastLoaded = LastLoaded(load)


def run(model, rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The H x W x 3 uint8 ``rgb`` with ``hole`` (H x W, non-zero = fill) filled by ``model``; the input is padded
    (reflected) to a multiple of ``MULTIPLE`` px and cropped back."""
    import torch
    import torch.nn.functional as F

    h, w = hole.shape
    param = next(model.model.parameters())
    image = torch.from_numpy(np.ascontiguousarray(rgb)).to(param.device).permute(2, 0, 1)[None].float() / 255.0
    mask = torch.from_numpy((np.asarray(hole) > 0).astype(np.float32)).to(param.device)[None, None]
    pad_h, pad_w = -h % MULTIPLE, -w % MULTIPLE
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    mask = F.pad(mask, (0, pad_w, 0, pad_h), mode=mode)
    with torch.inference_mode():
        out = model(image.to(param.dtype), mask.to(param.dtype))
    out = (out[0, :, :h, :w].float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
    return out.cpu().numpy()


def fill_method(fill: str, registry: ModelRegistry, device: Callable[[], str] = lambda: "cpu"):
    """What ``imageops`` fills with for the fill named ``fill``: the name itself, or for "lama" the network's fill
    function (loaded on first use; ``model_not_found`` naming the pull when its weights are not installed)."""
    return filler(registry, device()) if fill == "lama" else fill


def filler(registry: ModelRegistry, device: str = "cpu") -> Callable[[np.ndarray, np.ndarray, Callable], np.ndarray]:
    """The fill function (``imageops.Filler``) of the installed LaMa network, loaded on first use."""
    model = inpainters.get(entry(registry).path, device)
    return lambda rgb, hole, check: run(model, rgb, hole)
