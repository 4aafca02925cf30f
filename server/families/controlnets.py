"""ControlNets of Flux.1 (dev/schnell), SD3/SD3.5, Qwen-Image and Z-Image: which one a control layer uses, its config,
and loading it.

diffusers runs them with ``FluxControlNetPipeline`` / ``FluxControlNetImg2ImgPipeline`` / ``FluxControlNetInpaint
Pipeline`` and ``StableDiffusion3ControlNetPipeline`` (text-to-image only: diffusers has no SD3 ControlNet img2img or
inpaint pipeline for regular ControlNets). Flux.1 Fill and Kontext have no ControlNet pipeline. One control layer per
job. A diffusers folder loads as it is; a single file with diffusers key names (a renamed
``diffusion_pytorch_model.safetensors``) gets its config from its tensor shapes and the checkpoint's transformer
(``config_from_shapes``), so no config travels with it. Z-Image's union ControlNet (alibaba-pai, one file) runs
with ``ZImageControlNetPipeline`` and borrows the checkpoint's transformer embedders and refiners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from ..core import Control
from ..models.identify import DIFFUSERS, file_shapes
from ..models.identify_dit import controlnet as detect_controlnet
from ..models.loading import check_no_meta
from ..models import zimage
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import specs

# Union ControlNets (InstantX / Shakker-Labs FLUX.1-dev-ControlNet-Union): control_mode per control type, as their
# model cards number them (canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6); edge-like types use canny.
FLUX_UNION_MODES = {"canny": 0, "lineart": 0, "softedge": 0, "scribble": 0, "tile": 1, "depth": 2, "pose": 4}
# Which modes run with a ControlNet, per base family.
CONTROL_MODES = {
    specs.FLUX: ("generate", "img2img", "inpaint", "outpaint"),
    specs.SD3: ("generate",),
    specs.qwen.QWEN: ("generate",),
    specs.ZIMAGE: ("generate", "inpaint", "outpaint"),
}
MODEL_CLASSES = {
    specs.FLUX: "FluxControlNetModel",
    specs.SD3: "SD3ControlNetModel",
    specs.qwen.QWEN: "QwenImageControlNetModel",
    specs.ZIMAGE: "ZImageControlNetModel",
}
# Qwen-Image's union ControlNet (InstantX) reads the control type off the picture: no mode to pass
QWEN_UNION_TYPES = ("canny", "lineart", "softedge", "scribble", "depth", "pose")
# Z-Image's pipelines run the ControlNet at every step: no step range
NO_STEP_RANGE = (specs.ZIMAGE,)
# Z-Image's ControlNet inpaint repaints the selection from noise, steered by the picture around it: the ControlNet
# reads the control latents, the mask and the masked picture's latents (2.x releases: 16 + 1 + 16 channels)
ZIMAGE_INPAINT_CHANNELS = 33


@dataclass(frozen=True)
class ControlPlan:
    """The ControlNet a job's control layer runs with (``mode``: the union control mode, None for single-type)."""

    control: Control
    entry: ModelEntry
    mode: Optional[int] = None


def _installed(registry: ModelRegistry, family: str) -> List[ModelEntry]:
    return [e for e in registry.entries("controlnet") if e.problem is None and e.arch == family]


def select(
    controls: List[Control], checkpoint: ModelEntry, job_mode: str, registry: ModelRegistry
) -> Optional[ControlPlan]:
    """The ControlNet for a job's control layers (None without any); a clear ``unsupported``/``model_not_found``
    naming the family, the mode or what is installed otherwise."""
    if not controls:
        return None
    family = checkpoint.arch
    name = specs.VARIANT_NAMES.get(checkpoint.info.get("variant", ""), arch_name(family))
    if family not in CONTROL_MODES:
        raise ProtocolError(
            UNSUPPORTED,
            f"checkpoint '{checkpoint.name}' is {name}, which takes no ControlNet "
            "(diffusers has no ControlNet pipeline for it): use a Flux.1 dev/schnell checkpoint, or "
            "leave out the control layers",
            field="controls",
        )
    if job_mode not in CONTROL_MODES[family]:
        raise ProtocolError(
            UNSUPPORTED,
            f"{arch_name(family)} ControlNets run with "
            f"{', '.join(CONTROL_MODES[family])} only, not '{job_mode}' (diffusers has no such "
            "pipeline): leave out the control layers or generate",
            field="controls",
        )
    if len(controls) > 1:
        raise ProtocolError(
            UNSUPPORTED,
            f"{arch_name(family)} jobs take one control layer; this one has {len(controls)}",
            field="controls",
        )
    control = controls[0]
    if family in NO_STEP_RANGE and (control.start, control.end) != (0.0, 1.0):
        raise ProtocolError(
            UNSUPPORTED,
            f"{arch_name(family)} ControlNets steer every step: leave the control layer's start at 0 and end at 1",
            field="controls[0].start",
        )
    field = "controls[0].model"
    if control.model:
        advice = f": pick a {arch_name(family)} ControlNet"
        entry = registry.get_fitting(control.model, "controlnet", checkpoint, "ControlNet", field, name, advice)
    else:
        installed = _installed(registry, family)
        typed = [
            e for e in installed if not e.info.get("union") and control.type in (e.info.get("control_types") or [])
        ]
        union = [e for e in installed if e.info.get("union") and control.type in union_types(family)]
        if not typed and not union:
            have = ", ".join(e.name for e in installed) or "none is installed"
            raise ProtocolError(
                MODEL_NOT_FOUND,
                f"no {arch_name(family)} ControlNet for control type "
                f"'{control.type}' (checkpoint '{checkpoint.name}'): none has '{control.type}' in its "
                f"name and no union ControlNet knows it; {arch_name(family)} ControlNets: {have}",
                field=field,
            )
        entry = (typed or union)[0]
    mode = None
    if entry.info.get("union"):
        if control.type not in union_types(family):
            raise ProtocolError(
                UNSUPPORTED,
                f"union ControlNet '{entry.name}' has no '{control.type}' mode (it knows "
                f"{', '.join(union_types(family))})",
                field=field,
            )
        mode = FLUX_UNION_MODES[control.type] if family == specs.FLUX else None
    if (
        family == specs.ZIMAGE
        and job_mode != "generate"
        and entry.info.get("control_in_dim") != ZIMAGE_INPAINT_CHANNELS
    ):
        raise ProtocolError(
            UNSUPPORTED,
            f"Z-Image ControlNet '{entry.name}' reads {entry.info.get('control_in_dim')} control channels and cannot "
            f"{job_mode}: the 2.0 and 2.1 union releases can (the first one generates only)",
            field=field,
        )
    return ControlPlan(control, entry, mode)


def repaints_fully(plan: Optional[ControlPlan], kind: str) -> bool:
    """Whether ``plan``'s ControlNet pipeline for ``kind`` takes no strength and repaints the selection from noise
    (Z-Image's ControlNet inpaint): the job runs at strength 1, whatever its pre-fill asked for."""
    return plan is not None and plan.entry.arch == specs.ZIMAGE and kind == "inpaint"


def union_types(family: str) -> tuple:
    """The control types a union ControlNet of ``family`` serves."""
    if family == specs.ZIMAGE:
        return zimage.CONTROL_TYPES
    return QWEN_UNION_TYPES if family == specs.qwen.QWEN else tuple(FLUX_UNION_MODES)


def config_from_shapes(family: str, info: dict, transformer_config: dict) -> dict:
    """The ``FluxControlNetModel``/``SD3ControlNetModel``/``ZImageControlNetModel`` config of a single ControlNet file,
    from what recognition read off its tensors (``models.identify_dit.controlnet``) and, for what shapes cannot tell
    (rotary axes, sample size, heads, layer places), the checkpoint's transformer config."""
    t = transformer_config
    if family == specs.ZIMAGE:
        return _zimage_config(info, t)
    if family == specs.FLUX:
        heads = info["hidden"] // info["head_dim"]
        return {
            "patch_size": 1,
            "in_channels": info["in_channels"],
            "num_layers": info["layers"],
            "num_single_layers": info["single_layers"],
            "attention_head_dim": info["head_dim"],
            "num_attention_heads": heads,
            "joint_attention_dim": info["joint_attention_dim"],
            "pooled_projection_dim": info["pooled_projection_dim"],
            "guidance_embeds": info["guidance"],
            "axes_dims_rope": list(t.get("axes_dims_rope", (16, 56, 56))),
            "num_mode": info["num_mode"],
            "conditioning_embedding_channels": info["conditioning_channels"],
        }
    head_dim = info.get("head_dim") or t.get("attention_head_dim", 64)
    base_in = int(t.get("in_channels", 16))
    use_pos = bool(info["use_pos_embed"])
    return {
        "sample_size": t.get("sample_size", 128),
        "patch_size": info["patch"],
        "in_channels": base_in,
        "num_layers": info["layers"],
        "attention_head_dim": head_dim,
        "num_attention_heads": info["hidden"] // head_dim,
        "joint_attention_dim": info["joint_attention_dim"] or t.get("joint_attention_dim", 4096),
        "caption_projection_dim": info["caption_projection_dim"] or info["hidden"],
        "pooled_projection_dim": info["pooled_projection_dim"] or t.get("pooled_projection_dim", 2048),
        "out_channels": t.get("out_channels", 16),
        "pos_embed_max_size": info["pos_embed_max_size"] or t.get("pos_embed_max_size", 96),
        "extra_conditioning_channels": info["in_channels"] - base_in,
        "dual_attention_layers": tuple(info["dual_attention_layers"]),
        "qk_norm": "rms_norm" if info["qk_norm"] else None,
        "pos_embed_type": "sincos" if use_pos else None,
        # InstantX-style SD3 ControlNets carry their own position embedding and zero the pooled text; Stability's
        # SD3.5 large ControlNets do neither
        "use_pos_embed": use_pos,
        "force_zeros_for_pooled_projection": use_pos,
    }


def _zimage_config(info: dict, t: dict) -> dict:
    """A ``ZImageControlNetModel`` config: its control layers sit evenly over the transformer's layers (the first
    release every 5th of 30, 2.x every 2nd), the refiner hints go to the first noise-refiner layers; heads and norms
    are the transformer's."""
    if info["layers"] > int(t["n_layers"]):
        raise ValueError(f"it has {info['layers']} control layers for a transformer of {t['n_layers']} layers")
    step = int(t["n_layers"]) // info["layers"]
    refiner = {"blocks": None, "none": "control_layers", "control": "control_noise_refiner"}[info["refiner"]]
    return {
        "control_layers_places": [i * step for i in range(info["layers"])],
        "control_refiner_layers_places": list(range(int(t["n_refiner_layers"]))),
        "control_in_dim": info["control_in_dim"],
        "add_control_noise_refiner": refiner,
        "all_patch_size": [p for p, _ in info["patches"]],
        "all_f_patch_size": [f for _, f in info["patches"]],
        "dim": info["hidden"],
        "n_refiner_layers": info["refiner_layers"] or int(t["n_refiner_layers"]),
        "n_heads": t["n_heads"],
        "n_kv_heads": t["n_kv_heads"],
        "norm_eps": t.get("norm_eps", 1e-5),
        "qk_norm": t.get("qk_norm", True),
    }


def _zimage_state(info: dict, state: dict) -> dict:
    """A 2.x file's control noise refiner runs only when its input projection was trained (2.1); 2.0 ships it zeroed
    and runs its control layers over the noise instead, so its refiner tensors are left out (as diffusers does)."""
    before = state.get("control_noise_refiner.0.before_proj.weight")
    if info["refiner"] == "control" and (before is None or not bool(before.any())):
        info["refiner"] = "none"
        return {k: v for k, v in state.items() if not k.startswith("control_noise_refiner.")}
    return state


def _width(family: str, tcfg: dict) -> int:
    if family == specs.ZIMAGE:
        return int(tcfg["dim"])
    return tcfg["num_attention_heads"] * tcfg["attention_head_dim"]


def load(entry: ModelEntry, checkpoint: ModelEntry, transformer, dtype):
    """The ControlNet module of ``entry`` for ``checkpoint`` (on the CPU, in ``dtype``); ``unsupported`` when its width
    does not fit the checkpoint's transformer (e.g. an SD3.5 large ControlNet on SD3.5 medium)."""
    import diffusers
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    family = entry.arch
    cls = getattr(diffusers, MODEL_CLASSES[family])
    tcfg = dict(transformer.config)
    width = _width(family, tcfg)
    if entry.info.get("hidden") and entry.info["hidden"] != width:
        raise ProtocolError(
            UNSUPPORTED,
            f"ControlNet '{entry.name}' is for a {entry.info['hidden']}-wide "
            f"{arch_name(family)} transformer; checkpoint '{checkpoint.name}' is {width} wide (e.g. an "
            "SD3.5 large ControlNet on SD3.5 medium): pick one made for this checkpoint",
            field="controls[0].model",
        )
    try:
        if entry.format == DIFFUSERS:
            model = cls.from_pretrained(str(entry.path), torch_dtype=dtype, local_files_only=True)
        else:
            info = entry.info if "layers" in entry.info else detect_controlnet(file_shapes(entry.path, True)).info
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(str(entry.path)).items()}
            if family == specs.ZIMAGE:
                info = dict(info)
                state = _zimage_state(info, state)
            with init_empty_weights():
                model = cls.from_config(config_from_shapes(family, info, tcfg))
            model.load_state_dict(state, strict=True, assign=True)
            if family == specs.ZIMAGE:
                model = cls.from_transformer(model, transformer)
    except ProtocolError:
        raise
    except Exception as err:  # loader errors vary; the user needs the model name and the reason
        raise ProtocolError(
            UNSUPPORTED,
            f"cannot load ControlNet '{entry.name}' ({arch_name(family)}): {err}",
            field="controls[0].model",
        ) from err
    check_no_meta(entry, model)
    return model.to(dtype).eval()
