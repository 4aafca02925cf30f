"""v-prediction and zero-terminal-SNR SD checkpoints (Illustrious / NoobAI-XL v-pred and the like), recognised from
what their files say, and the scheduler settings they run with.

Signs, strongest first: the marker tensors ComfyUI reads (``v_pred``, and ``ztsnr`` for zero terminal SNR), the
safetensors metadata (``modelspec.prediction_type``), a diffusers folder's scheduler config. A v-prediction model run as
an epsilon model gives grey mush, so a sign is enough; zero terminal SNR comes with v-prediction in every such release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from . import fewstep

V_PREDICTION = "v_prediction"
METADATA_KEYS = ("modelspec.prediction_type", "prediction_type")
V_VALUES = ("v", "v_prediction", "v-prediction", "vpred", "v_pred")


def detect(path: Path, shapes: Optional[dict]) -> Optional[dict]:
    """``{"type": "v_prediction", "zero_snr": bool, "from": where it was read}`` for a v-prediction checkpoint file
    or diffusers folder, None for an epsilon one."""
    if path.is_dir():
        try:
            config = json.loads((path / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if config.get("prediction_type") != V_PREDICTION:
            return None
        return {
            "type": V_PREDICTION,
            "zero_snr": bool(config.get("rescale_betas_zero_snr")),
            "from": "scheduler config",
        }
    if shapes and "v_pred" in shapes:
        return {"type": V_PREDICTION, "zero_snr": True, "from": "v_pred tensor"}
    meta = fewstep.metadata(path)
    if any(meta.get(k, "").strip().lower() in V_VALUES for k in METADATA_KEYS):
        return {"type": V_PREDICTION, "zero_snr": True, "from": "metadata"}
    return None


def scheduler_config(config: dict, prediction: Optional[dict]) -> dict:
    """A checkpoint's scheduler config with what a v-prediction model needs: its prediction type, betas rescaled to
    zero terminal SNR, and trailing timesteps (the first step then starts from pure noise)."""
    if not prediction:
        return config
    extra = {"prediction_type": V_PREDICTION, "timestep_spacing": "trailing"}
    if prediction.get("zero_snr", True):
        extra["rescale_betas_zero_snr"] = True
    return {**config, **extra}
