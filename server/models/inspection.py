"""What each model found in the folders is: its architecture and details read from its files (headers and configs,
never a pickle unless allowed), and whether Paintbridge can use it, and if not, why. A single-file checkpoint may have
a weightless diffusers config folder beside it, ``<name>.config/``, used instead of the shipped configs (for models
whose sizes differ from the standard architectures)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from . import (
    captioners,
    configcheck,
    fewstep,
    headers,
    identify,
    identify_dit,
    ipadapter,
    layerdiffuse,
    redux,
    vpred,
)
from .entry import ModelEntry
from .identify import DIFFUSERS, PICKLE, SAFETENSORS, Detected, DetectError
from .kinds import CONFIG_SUFFIX, LINK_OUT, REFINER_ARCH, SUPPORTED_ARCHS, arch_name

log = logging.getLogger(__name__)


class Inspector:
    """Makes the entry of each model found; detection results are kept per file (path, modification time, size), so
    a scan again reads only what changed."""

    def __init__(self, allow_pickle: bool = False) -> None:
        self.allow_pickle = allow_pickle
        self._cache: Dict[Tuple[str, str, float, int], Tuple[Detected, Optional[str]]] = {}

    def entry(self, kind: str, name: str, path: Path, fmt: str) -> Optional[ModelEntry]:
        """The entry of the model of ``kind`` at ``path``; None for a pickle file when pickles are not allowed (never
        listed: it could not be loaded anyway)."""
        if fmt == PICKLE and kind not in ("upscaler", "inpainter") and not self.allow_pickle:
            return None
        if fmt == LINK_OUT:
            return ModelEntry(
                name=name,
                kind=kind,
                path=path,
                format=fmt,
                problem=(
                    f"{path.name} is a link to the folder {os.path.realpath(path)}, outside the models folders: it is not "
                    "searched. Link the model files or model folders themselves, or add that folder with --models"
                ),
            )
        found, problem = self._detected(kind, path, fmt)
        return ModelEntry(
            name=name,
            kind=kind,
            path=path,
            format=fmt,
            arch=found.arch,
            inpaint=found.inpaint,
            info=dict(found.info),
            problem=problem if problem is not None else unusable(kind, path, fmt, found),
        )

    def _detected(self, kind: str, path: Path, fmt: str) -> Tuple[Detected, Optional[str]]:
        try:
            stat = path.stat()
            key = (kind, str(path), stat.st_mtime, stat.st_size)
        except OSError:
            key = None
        cached = self._cache.get(key) if key else None
        if cached is None:
            try:
                cached = (_detect(kind, path, fmt, self.allow_pickle), None)
            except DetectError as err:
                cached = (Detected(None), str(err))
            except Exception as err:  # noqa: BLE001 - one odd file must not stop the server from listing the rest
                log.warning("cannot inspect %s: %r", path, err)
                cached = (Detected(None), f"cannot be inspected ({type(err).__name__}: {err})")
            if key:
                self._cache[key] = cached
        return cached


def unusable(kind: str, path: Path, fmt: str, found: Detected) -> Optional[str]:
    """Why a model of ``kind`` detected as ``found`` cannot be used, or None when it can."""
    if kind in ("checkpoint", "controlnet", "lora", "embedding") and found.arch not in SUPPORTED_ARCHS + (
        REFINER_ARCH,
    ) * (kind == "checkpoint"):
        return (
            f"{arch_name(found.arch)} models are not supported "
            "(SD1.5, SDXL, Flux.1, SD3, Flux.2 Klein, Z-Image, Chroma and Qwen-Image are)"
        )
    if kind == "ipadapter" and found.arch not in ipadapter.REFERENCE_FAMILIES:
        return f"{arch_name(found.arch)} IP-Adapters are not supported (SD1.5 and SDXL ones are)"
    if (
        kind == "clip_vision"
        and fmt != DIFFUSERS
        and not found.info.get("config")
        and not path.with_name(path.stem + CONFIG_SUFFIX).joinpath("config.json").is_file()
    ):
        what = (
            redux.describe_siglip(found.info) if found.arch == redux.SIGLIP else ipadapter.describe_encoder(found.info)
        )
        return (
            f"an image encoder of a size Paintbridge ships no config for ({what}): put its config.json in "
            f"{path.stem}.config/"
        )
    if found.info.get("unsupported"):
        return f"not supported: {found.info['unsupported']}"
    return None


def _detect(kind: str, path: Path, fmt: str, allow_pickle: bool) -> Detected:
    _check_files(path, fmt)
    found = _detect_arch(kind, path, fmt, allow_pickle)
    if kind == "controlnet":
        found.info["control_types"] = identify.control_types_from_name(path.name)
    if kind in ("checkpoint", "lora"):
        shapes = identify.safetensors_shapes(path) if fmt == SAFETENSORS else None  # a header read: a few KB
        preset = fewstep.detect(path, shapes)
        if preset is not None:
            found.info["few_step"] = preset
    if kind == "checkpoint" and found.arch in ("sd15", "sdxl"):
        prediction = vpred.detect(path, identify.safetensors_shapes(path) if fmt == SAFETENSORS else None)
        if prediction is not None:
            found.info["prediction"] = prediction
    return found


def _check_files(path: Path, fmt: str) -> None:
    """Refuse a model that is (or whose folder holds) something other than regular files, such as a named pipe that
    would block a read forever, or whose configs (its own folder's, or a ``<name>.config/`` beside a single file)
    declare sizes no real model has, before anything is read or built from them."""
    try:
        if fmt != DIFFUSERS:
            headers.regular_size(path)
        else:
            for part in [*path.glob("*"), *path.glob("*/*")]:
                if not part.is_dir():
                    headers.regular_size(part)
        folder = path if fmt == DIFFUSERS else path.with_name(path.stem + CONFIG_SUFFIX)
        if folder.is_dir():
            configcheck.check_folder(folder)
    except (headers.HeaderError, configcheck.ConfigError) as err:
        raise DetectError(str(err)) from None


def _detect_arch(kind: str, path: Path, fmt: str, allow_pickle: bool) -> Detected:
    if kind in ("upscaler", "inpainter"):
        return Detected(None)  # spandrel recognises upscalers and inpainters when it loads them
    if kind == "captioner":
        if fmt != DIFFUSERS:
            return Detected(
                None,
                info={
                    "unsupported": "a captioner is a folder in the transformers format "
                    "(config.json, model.safetensors, processor and tokenizer "
                    f"files); `{captioners.PULL_HINT}` fetches one"
                },
            )
        return captioners.folder_info(path)
    if kind == "layerdiffuse":
        if fmt != SAFETENSORS:
            return Detected(None, info={"unsupported": "LayerDiffuse files are read as .safetensors only"})
        return layerdiffuse.info(identify.safetensors_shapes(path), path.name)
    if kind == "clip_vision":  # reference images: CLIP towers (IP-Adapter) and SigLIP towers (Redux)
        if fmt == DIFFUSERS:
            return redux.siglip_folder(path) or ipadapter.encoder_folder_info(path)
        shapes = identify.file_shapes(path, allow_pickle)
        return redux.siglip_info(shapes) if redux.looks_like_siglip(shapes) else ipadapter.encoder_info(shapes)
    if kind == "redux":
        if fmt == DIFFUSERS:
            return redux.redux_folder_info(path)
        return redux.redux_info(identify.file_shapes(path, allow_pickle))
    if kind == "ipadapter":
        if fmt == PICKLE:
            if not allow_pickle:
                identify.file_shapes(path, allow_pickle)  # raises the pickle explanation
            return ipadapter.adapter_info(ipadapter.nested_pickle_shapes(path), path.name)
        return ipadapter.adapter_info(identify.safetensors_shapes(path), path.name)
    if fmt == DIFFUSERS:
        if kind == "checkpoint" and (path / "transformer" / "config.json").is_file():
            return identify_dit.diffusers_folder(path)
        if kind == "checkpoint":
            return identify.diffusers_folder_arch(path)
        if kind == "controlnet":
            return _family_controlnet_folder(path) or identify.controlnet_folder_arch(path)
        return Detected(None)
    shapes = identify.file_shapes(path, allow_pickle)
    if kind == "checkpoint" and identify_dit.looks_like_transformer(shapes):
        return identify_dit.checkpoint(shapes, path.name)
    if kind == "checkpoint":
        return identify.checkpoint_arch(shapes)
    if kind == "text_encoder":
        return identify_dit.text_encoder(shapes)
    if kind == "lora" and identify_dit.lora_family(shapes) is not None:
        return Detected(identify_dit.lora_family(shapes))
    if kind == "controlnet" and identify_dit.looks_like_controlnet(shapes):
        return identify_dit.controlnet(shapes)
    if kind == "controlnet":
        return identify.controlnet_arch(shapes)
    if kind == "lora":
        return identify.lora_arch(shapes)
    if kind == "embedding":
        return identify.embedding_arch(shapes)
    return identify.vae_check(shapes)


def _family_controlnet_folder(path: Path) -> Optional[Detected]:
    """A Flux.1/SD3 ControlNet folder (``FluxControlNetModel``/``SD3ControlNetModel`` config), None for others."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return identify_dit.controlnet_folder(config)
