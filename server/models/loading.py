"""Load checkpoints and ControlNets fully offline: single files with the config folders shipped in ``server/configs``
(or a ``<name>.config/`` folder beside the file), diffusers folders as they are.

Every load ends with a check that no parameter was left on the meta device: a checkpoint whose tensors do not fit
its architecture fails here with a clear error instead of producing NaN images later.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from protocol.errors import UNSUPPORTED, ProtocolError

from . import configcheck
from .identify import DIFFUSERS, PICKLE, SAFETENSORS, SDXL_CLIP_G, SD15_CLIP, SDXL_CLIP_L, UNET, file_shapes
from .registry import ModelEntry, arch_name
from .tensors import read_tensors
from .tokenizers import clip_tokenizer, folder_tokenizer, folder_tokenizers

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
log = logging.getLogger(__name__)


def config_dir_for(entry: ModelEntry) -> Path:
    """The weightless config folder a single-file model loads with (a user's ``<name>.config/`` is checked again:
    it may have changed since the models were listed)."""
    if entry.config_dir is not None:
        try:
            configcheck.check_folder(entry.config_dir)
        except configcheck.ConfigError as err:
            raise ProtocolError(
                UNSUPPORTED, f"{entry.kind} '{entry.name}' cannot be used: {err}", field="model"
            ) from None
        return entry.config_dir
    if entry.kind == "controlnet":
        return CONFIGS_DIR / f"controlnet-{entry.arch}"
    return CONFIGS_DIR / (entry.arch + ("-inpaint" if entry.inpaint else ""))


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _unfit(entry: ModelEntry, what: str, got, expected) -> ProtocolError:
    return ProtocolError(
        UNSUPPORTED,
        f"{entry.kind} '{entry.name}' was recognised as {arch_name(entry.arch)}"
        f"{' inpainting' if entry.inpaint else ''} but its tensors don't fit that architecture: {what} is {got}, "
        f"expected {expected}. The file may be damaged or a different model family.",
        field="model",
    )


def check_checkpoint_shapes(entry: ModelEntry, config: Path, allow_pickle: bool) -> None:
    """Compare a few telling tensor shapes of a single-file checkpoint with its config, before loading anything."""
    shapes = file_shapes(entry.path, allow_pickle)
    unet = _json(config / "unet" / "config.json")
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    want = (unet["block_out_channels"][0], unet["in_channels"])
    if conv_in is None or tuple(conv_in[:2]) != want:
        raise _unfit(entry, "the UNet's first convolution (out, in channels)", conv_in and tuple(conv_in[:2]), want)
    context = entry.info.get("context_dim")
    if context is not None and context != unet["cross_attention_dim"]:
        raise _unfit(entry, "the text-conditioning width", context, unet["cross_attention_dim"])
    encoders = [
        ("text_encoder", SD15_CLIP if entry.arch == "sd15" else SDXL_CLIP_L, "text_model.final_layer_norm.weight")
    ]
    if entry.arch == "sdxl":
        encoders.append(("text_encoder_2", SDXL_CLIP_G, "ln_final.weight"))
    for sub, prefix, key in encoders:
        hidden = _json(config / sub / "config.json")["hidden_size"]
        got = shapes.get(prefix + key) or shapes.get(prefix + key.replace("text_model.", ""))  # older SD1.x files
        if got is None:
            raise ProtocolError(
                UNSUPPORTED,
                f"checkpoint '{entry.name}' has no {sub.replace('_', ' ')} "
                f"({prefix}{key} is missing): it cannot be used on its own",
                field="model",
            )
        if got[0] != hidden:
            raise _unfit(entry, f"the {sub.replace('_', ' ')} width", got[0], hidden)


def empty_transformers_model(config: Path, default_class: str = ""):
    """The transformers model of ``config/config.json`` (its first ``architectures`` class, else ``default_class``)
    with its parameters on the meta device, to be filled with ``load_state_dict(..., assign=True)``."""
    import transformers
    from accelerate import init_empty_weights

    raw = _json(config / "config.json")
    cls = getattr(transformers, (raw.get("architectures") or [default_class])[0])
    with init_empty_weights(include_buffers=False):
        return cls(cls.config_class.from_json_file(str(config / "config.json")))


def check_no_meta(entry: ModelEntry, *modules) -> None:
    """Raise if any parameter stayed on the meta device (tensors missing from the file)."""
    for module in modules:
        if module is None:
            continue
        missing = [n for n, p in module.named_parameters() if p.is_meta]
        if missing:
            raise ProtocolError(
                UNSUPPORTED,
                f"{entry.kind} '{entry.name}' is missing {len(missing)} tensors of its {arch_name(entry.arch)} "
                f"architecture (e.g. {type(module).__name__}.{missing[0]}): it does not fit that architecture",
                field="model",
            )


def _tokenizers(config: Path, sdxl: bool) -> dict:
    """Tokenizers from the config folder when it has them, else the shipped real CLIP tokenizer."""
    out = {}
    for sub, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!"))[: 2 if sdxl else 1]:
        if (config / sub).is_dir() and any((config / sub).iterdir()):
            out[sub] = folder_tokenizer("CLIPTokenizer", config / sub)
        else:
            out[sub] = clip_tokenizer(pad)
    return out


def pipeline_class(entry: ModelEntry):
    """The diffusers pipeline class a checkpoint loads as (text-to-image, or inpaint for 9-channel models)."""
    import diffusers

    if entry.arch == "sdxl":
        return diffusers.StableDiffusionXLInpaintPipeline if entry.inpaint else diffusers.StableDiffusionXLPipeline
    return diffusers.StableDiffusionInpaintPipeline if entry.inpaint else diffusers.StableDiffusionPipeline


def _variant(folder: Path) -> Optional[str]:
    """ "fp16" when a diffusers folder holds only fp16-variant weights."""
    unet = folder / "unet"
    if (
        unet.is_dir()
        and not any(unet.glob("diffusion_pytorch_model.safetensors"))
        and any(unet.glob("diffusion_pytorch_model.fp16.*"))
    ):
        return "fp16"
    return None


WEIGHT_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")  # the parts of a pipeline that hold weights


def _weight_parts(entry: ModelEntry, config: Path, torch_dtype) -> dict:
    """A single-file checkpoint's networks, built by diffusers' own per-part converter from tensors read already cast
    (``tensors.read_tensors``): the file is never mapped whole beside its cast copy, which is what a pipeline's
    ``from_single_file`` does (the load's peak memory: 7.06 -> 5.03 GB for a real-size SD1.5 fp16 file loaded in fp32)."""
    import diffusers
    from diffusers.loaders.single_file import load_single_file_sub_model

    index = _json(config / "model_index.json")
    state = read_tensors(entry.path, torch_dtype)
    parts = {}
    for name in WEIGHT_PARTS:
        library, class_name = index.get(name) or (None, None)
        if library is None:
            continue
        parts[name] = load_single_file_sub_model(
            library_name=library,
            class_name=class_name,
            name=name,
            checkpoint=state,
            pipelines=diffusers.pipelines,
            is_pipeline_module=False,
            cached_model_config_path=str(config),
            torch_dtype=torch_dtype,
            local_files_only=True,
        )
    return parts


def load_checkpoint(entry: ModelEntry, torch_dtype, allow_pickle: bool = False):
    """A pipeline for ``entry``, offline, weights in ``torch_dtype`` on the CPU (the caller moves it)."""
    cls = pipeline_class(entry)
    extra = dict(dtype=torch_dtype, local_files_only=True)
    if entry.arch == "sd15":
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        if entry.format == DIFFUSERS:
            configcheck.check_folder(entry.path)
            variant = _variant(entry.path)
            pipe = cls.from_pretrained(str(entry.path), variant=variant, **folder_tokenizers(entry.path), **extra)
        else:
            if entry.format == PICKLE and not allow_pickle:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"'{entry.name}' is a pickle file; start the server with --allow-pickle to load it (weights only)",
                    field="model",
                )
            config = config_dir_for(entry)
            check_checkpoint_shapes(entry, config, allow_pickle)
            parts = _weight_parts(entry, config, torch_dtype) if entry.format == SAFETENSORS else {}
            pipe = cls.from_single_file(
                str(entry.path), config=str(config), **_tokenizers(config, entry.arch == "sdxl"), **parts, **extra
            )
    except ProtocolError:
        raise
    except Exception as err:  # loader errors vary; the user needs the model name and the reason
        raise ProtocolError(
            UNSUPPORTED, f"cannot load checkpoint '{entry.name}' ({arch_name(entry.arch)}): {err}", field="model"
        ) from err
    check_no_meta(entry, pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
    return pipe


def load_controlnet(entry: ModelEntry, torch_dtype, allow_pickle: bool = False, unet_config=None):
    """A ControlNetModel (or ControlNetUnionModel) for ``entry``, offline; ``unet_config`` (the checkpoint's UNet)
    completes the config of a single file that has none."""
    import diffusers

    cls = diffusers.ControlNetUnionModel if entry.info.get("union") else diffusers.ControlNetModel
    try:
        if entry.format == DIFFUSERS:
            configcheck.check_folder(entry.path)
            net = cls.from_pretrained(str(entry.path), dtype=torch_dtype, local_files_only=True)
        elif entry.info.get("layout") == "diffusers":
            net = _controlnet_from_diffusers_file(entry, cls, torch_dtype, unet_config)
        else:
            config = config_dir_for(entry)
            if not (config / "config.json").is_file():
                raise ProtocolError(
                    UNSUPPORTED,
                    f"ControlNet '{entry.name}' ({arch_name(entry.arch)}) is a single file "
                    f"in the original layout and no config for it ships with the server; put a "
                    f"diffusers config.json in {entry.path.stem}.config/ beside it",
                    field="model",
                )
            net = cls.from_single_file(str(entry.path), config=str(config), dtype=torch_dtype, local_files_only=True)
    except ProtocolError:
        raise
    except Exception as err:
        raise ProtocolError(
            UNSUPPORTED, f"cannot load ControlNet '{entry.name}' ({arch_name(entry.arch)}): {err}", field="model"
        ) from err
    check_no_meta(entry, net)
    return net


def _controlnet_from_diffusers_file(entry: ModelEntry, cls, torch_dtype, unet_config=None):
    """A single ``.safetensors`` with diffusers key names; its config comes from ``<name>.config/config.json`` when
    there is one, else from its tensor shapes."""
    from safetensors.torch import load_file

    from . import controlnet_config

    sidecar = entry.path.with_name(entry.path.stem + ".config") / "config.json"
    if sidecar.is_file():
        config = configcheck.read_config(sidecar)
    else:
        config = controlnet_config.infer(
            file_shapes(entry.path, False),
            entry.arch,
            bool(entry.info.get("union")),
            dict(unet_config) if unet_config is not None else None,
        )
    configcheck.check_declared_bytes(cls, config, entry.path.stat().st_size, f"ControlNet '{entry.name}'")
    net = cls.from_config(config)
    state = load_file(str(entry.path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = (
            f"lacks {len(missing)} tensors its layout needs (e.g. {missing[0]})"
            if missing
            else f"has {len(unexpected)} tensors its layout does not use (e.g. {unexpected[0]})"
        )
        raise ProtocolError(
            UNSUPPORTED,
            f"ControlNet '{entry.name}' ({arch_name(entry.arch)}) {what}; put its "
            f"diffusers config.json in {sidecar.parent.name}/ beside it",
            field="model",
        )
    return net.to(torch_dtype)


def load_vae(entry: ModelEntry, checkpoint: ModelEntry, torch_dtype, allow_pickle: bool = False):
    """An AutoencoderKL for ``entry`` (a diffusers folder, or a single file read with the VAE config of
    ``checkpoint``: SD1.5-class and SDXL-class VAEs share one layout), offline."""
    import diffusers

    try:
        if entry.format == DIFFUSERS:
            vae = diffusers.AutoencoderKL.from_pretrained(str(entry.path), dtype=torch_dtype, local_files_only=True)
        else:
            if entry.format == PICKLE and not allow_pickle:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"VAE '{entry.name}' is a pickle file; start the server with "
                    "--allow-pickle to load it (weights only)",
                    field="params.vae",
                )
            if entry.config_dir is not None:
                config, sub = entry.config_dir, None
            elif checkpoint.format == DIFFUSERS:
                config, sub = checkpoint.path, "vae"
            else:
                config, sub = config_dir_for(checkpoint), "vae"
            vae = diffusers.AutoencoderKL.from_single_file(
                str(entry.path), config=str(config), subfolder=sub, dtype=torch_dtype, local_files_only=True
            )
    except ProtocolError:
        raise
    except Exception as err:
        raise ProtocolError(
            UNSUPPORTED,
            f"cannot load VAE '{entry.name}' for {arch_name(checkpoint.arch)} checkpoint '{checkpoint.name}': {err}",
            field="params.vae",
        ) from err
    check_no_meta(entry, vae)
    return vae


def load_refiner(entry: ModelEntry, torch_dtype, allow_pickle: bool = False):
    """An SDXL refiner as a ``StableDiffusionXLImg2ImgPipeline`` (OpenCLIP-G text encoder only), offline: a diffusers
    folder, or a single file with a ``<name>.config/`` folder or the shipped ``sdxl-refiner`` configs."""
    import diffusers

    cls = diffusers.StableDiffusionXLImg2ImgPipeline
    extra = dict(dtype=torch_dtype, local_files_only=True)
    try:
        if entry.format == DIFFUSERS:
            pipe = cls.from_pretrained(
                str(entry.path), variant=_variant(entry.path), **folder_tokenizers(entry.path), **extra
            )
        else:
            if entry.format == PICKLE and not allow_pickle:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"refiner '{entry.name}' is a pickle file; start the server with "
                    "--allow-pickle to load it (weights only)",
                    field="params.refiner",
                )
            config = entry.config_dir or CONFIGS_DIR / "sdxl-refiner"
            if not (config / "model_index.json").is_file():
                raise ProtocolError(
                    UNSUPPORTED,
                    f"refiner '{entry.name}' is a single file and no config for it ships "
                    f"with the server; put a diffusers config folder {entry.path.stem}.config/ "
                    "beside it, or use the diffusers folder of the refiner",
                    field="params.refiner",
                )
            pipe = cls.from_single_file(
                str(entry.path),
                config=str(config),
                text_encoder=None,
                tokenizer=None,
                tokenizer_2=_tokenizers(config, True)["tokenizer_2"],
                **extra,
            )
    except ProtocolError:
        raise
    except Exception as err:
        raise ProtocolError(
            UNSUPPORTED, f"cannot load SDXL refiner '{entry.name}': {err}", field="params.refiner"
        ) from err
    check_no_meta(entry, pipe.unet, pipe.vae, pipe.text_encoder_2)
    return pipe
