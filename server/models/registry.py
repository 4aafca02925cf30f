"""The model registry: what is installed in the models folders, and what each model is.

Folders follow ComfyUI's names (``checkpoints/``, ``vae/``, ``loras/``, ``embeddings/``, ``controlnet/``,
``upscale_models/``); AUTOMATIC1111's (``Stable-diffusion/``, ``VAE/``, ``Lora/``, ``ControlNet/``, ``ESRGAN/``,
``../embeddings``) are recognised too, so an existing ``models/`` tree can be listed as it is. Sub-folders are searched;
a model's name is its path inside its kind's folder without the extension (``sdxl/juggernaut``).

A single-file checkpoint may have a weightless diffusers config folder beside it, ``<name>.config/``, used instead of
the shipped configs (for models whose sizes differ from the standard architectures).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from . import (
    captioners,
    configcheck,
    fewstep,
    headers,
    identify,
    identify_dit,
    ipadapter,
    layerdiffuse,
    qwen,
    redux,
    vpred,
)
from .identify import DIFFUSERS, GGUF, PICKLE, SAFETENSORS, Detected, DetectError

KINDS = (
    "checkpoint",
    "refiner",
    "vae",
    "text_encoder",
    "lora",
    "embedding",
    "controlnet",
    "upscaler",
    "ipadapter",
    "clip_vision",  # reference images: IP-Adapters and their image encoders
    "redux",  # reference images on Flux: Flux Redux image embedders (SigLIP towers: clip_vision)
    "inpainter",  # inpainter: LaMa-class fill networks (fill "lama")
    "captioner",  # image-to-text models for mode "caption" (transformers folders)
    "layerdiffuse",
)  # LayerDiffuse transparency weights and decoders (params.transparent)
SUPPORTED_ARCHS = ("sd15", "sdxl") + identify_dit.FAMILIES
ARCH_NAMES = {
    "sd15": "SD1.5",
    "sdxl": "SDXL",
    "sd2": "SD2",
    "sdxl-refiner": "SDXL refiner",
    **identify_dit.NAMES,
    "clip": "CLIP",
    "t5": "T5",
    qwen.TEXT_ENCODER: "Qwen2.5-VL",
    "qwen3": "Qwen3",
    **captioners.ARCH_NAMES,
    None: "unknown",
}

KIND_FOLDERS: Dict[str, Tuple[str, ...]] = {
    "checkpoint": ("checkpoints", "Stable-diffusion", "diffusers", "diffusion_models", "unet"),
    "refiner": (),  # SDXL refiners sit among the checkpoints and are recognised from their tensors
    "vae": ("vae", "VAE"),
    "text_encoder": ("text_encoders", "clip"),
    "lora": ("loras", "Lora", "LyCORIS"),
    "embedding": ("embeddings",),
    "controlnet": ("controlnet", "ControlNet"),
    "upscaler": ("upscale_models", "ESRGAN", "RealESRGAN"),
    # reference images; image encoders inside an IP-Adapter folder (h94's ``image_encoder/``) count too
    "ipadapter": ("ipadapter", "ip_adapter", "IP-Adapter"),
    "clip_vision": ("clip_vision", "image_encoders"),
    "redux": ("style_models", "redux"),  # ComfyUI's style_models/; FluxPriorReduxPipeline folders also in checkpoints/
    "inpainter": ("inpaint", "lama"),
    "captioner": ("captioners", "caption"),
    "layerdiffuse": ("layer_model", "layerdiffuse"),
}
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
CONFIG_SUFFIX = ".config"
LINK_OUT = "link"  # the format of a linked folder outside the models folders: listed with the reason, not searched
REFINER_ARCH = "sdxl-refiner"
log = logging.getLogger(__name__)


def arch_name(arch: Optional[str]) -> str:
    """Human name of an architecture id ("sdxl" → "SDXL")."""
    return ARCH_NAMES.get(arch, str(arch))


@dataclass
class ModelEntry:
    """One installed model. ``format``: "safetensors", "pickle" or "diffusers" (a folder)."""

    name: str
    kind: str
    path: Path
    format: str
    arch: Optional[str] = None
    inpaint: bool = False
    info: dict = field(default_factory=dict)
    problem: Optional[str] = None  # why it cannot be used, if it cannot

    @property
    def config_dir(self) -> Optional[Path]:
        """The ``<name>.config/`` folder beside a single-file model, if there is one."""
        if self.format == DIFFUSERS:
            return None
        candidate = self.path.with_name(self.path.stem + CONFIG_SUFFIX)
        wanted = "model_index.json" if self.kind in ("checkpoint", "refiner") else "config.json"
        return candidate if (candidate / wanted).is_file() else None

    def listing(self) -> dict:
        entry = {
            "name": self.name,
            "kind": self.kind,
            "arch": self.arch,
            "inpaint": self.inpaint,
            "format": self.format,
            "path": str(self.path),
        }
        if self.kind == "controlnet":
            entry["control_types"] = self.info.get("control_types", [])
            entry["union"] = bool(self.info.get("union"))
        if self.info.get("variant"):
            entry["variant"] = self.info["variant"]  # Flux/SD3: dev, schnell, fill, kontext, 3.5-large, ...
        if self.kind == "checkpoint" and self.arch in identify_dit.EDIT_FAMILIES:
            entry["edit"] = True  # runs mode "edit" (instruction edit): the plugins offer it
        if self.kind == "checkpoint" and self.arch in identify_dit.DECOMPOSE_FAMILIES:
            entry["decompose"] = True  # runs mode "decompose" (picture into layers), and only that
        if self.kind in ("checkpoint", "lora"):
            entry.update(fewstep.listing(self.info.get("few_step")))
        if self.info.get("prediction"):
            entry["prediction"] = self.info["prediction"]["type"]  # v-prediction (zero terminal SNR) checkpoints
        if self.kind == "ipadapter":  # reference images
            entry["reference_types"] = ["face"] if self.info.get("face") else ["style", "composition", "content"]
            entry["variant"] = self.info.get("variant", "")
        if self.kind == "clip_vision":
            entry["encoder"] = (
                redux.describe_siglip(self.info) if self.arch == redux.SIGLIP else ipadapter.describe_encoder(self.info)
            )
        if self.kind == "layerdiffuse":
            entry["role"] = self.info.get("role", "")
        if self.kind == "redux":  # reference images on Flux
            entry["reference_types"] = list(redux.REDUX_TYPES)
        if self.problem:
            entry["problem"] = self.problem
        return entry


def _kind_dirs(root: Path, kind: str) -> List[Path]:
    dirs = [root / name for name in KIND_FOLDERS[kind]]
    if kind == "embedding":  # AUTOMATIC1111 keeps embeddings beside models/, not inside it
        dirs.append(root.parent / "embeddings")
    seen, out = set(), []
    for d in dirs:
        try:
            real = d.resolve()
        except OSError:
            continue
        if d.is_dir() and real not in seen:
            seen.add(real)
            out.append(d)
    return out


def _is_diffusers_pipeline(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def _is_diffusers_model(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        (path / f"diffusion_pytorch_model{s}").is_file() for s in (".safetensors", ".fp16.safetensors", ".bin")
    )


def _is_hf_model(path: Path) -> bool:
    """A Hugging Face transformers model folder (an IP-Adapter's ``image_encoder/``)."""
    return (path / "config.json").is_file() and any(
        (path / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")
    )


def _inside(real: str, roots: Iterable[str]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _is_ipadapter_repository(folder: Path) -> bool:
    """A copy of h94/IP-Adapter as downloaded (``models/`` and/or ``sdxl_models/`` beside each other): one model
    download, searched also when linked from elsewhere."""
    return (folder / "sdxl_models").is_dir() or (folder / "models" / "image_encoder").is_dir()


def _walk(folder: Path, kind: str, roots: Iterable[str] = ()) -> Iterable[Tuple[str, Path, str]]:
    """(name, path, format) of every model under ``folder``; follows links (each real folder once, so link loops
    end), skips ``*.config`` folders. Image-encoder folders are models of kind ``clip_vision`` only. A linked folder
    that resolves outside ``folder`` and ``roots`` (the models folders) is not searched: it is yielded with format
    ``LINK_OUT`` (a link to ``/`` would otherwise list every model file on the disk); linked model files and linked
    model folders (a diffusers folder, a copy of h94/IP-Adapter) are used."""
    trusted = [os.path.realpath(folder), *roots]
    seen = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            sub = here / d
            rel = sub.relative_to(folder).as_posix()
            real = os.path.realpath(sub)
            if d.startswith(".") or d.endswith(CONFIG_SUFFIX) or real in seen:
                continue
            seen.add(real)
            is_model = (
                _is_diffusers_pipeline(sub)
                or _is_diffusers_model(sub)
                or _is_hf_model(sub)
                or _is_ipadapter_repository(sub)
            )
            if not _inside(real, trusted):
                if not is_model:
                    yield rel, sub, LINK_OUT
                    continue
                trusted.append(real)  # a linked model folder is searched whole (an IP-Adapter copy's subfolders)
            if _is_diffusers_pipeline(sub) and kind in ("checkpoint", "redux"):
                if (kind == "redux") == redux.is_redux_pipeline(sub):  # a Redux pipeline is no checkpoint
                    yield rel, sub, DIFFUSERS
            elif kind in ("controlnet", "vae") and _is_diffusers_model(sub):
                yield rel, sub, DIFFUSERS
            elif kind in ("clip_vision", "ipadapter") and _is_hf_model(sub):
                if kind == "clip_vision":
                    yield rel, sub, DIFFUSERS
            elif kind == "captioner" and (sub / "config.json").is_file():
                yield rel, sub, DIFFUSERS
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            path = here / f
            suffix = path.suffix.lower()
            if f.startswith(".") or suffix not in WEIGHT_SUFFIXES or (suffix == ".gguf" and kind != "checkpoint"):
                continue  # GGUF: quantized Flux/SD3 transformers only
            rel = path.relative_to(folder).with_suffix("").as_posix()
            yield rel, path, SAFETENSORS if suffix == ".safetensors" else GGUF if suffix == ".gguf" else PICKLE


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


class ModelRegistry:
    """Installed models of every kind over one or more models folders (earlier folders win on equal names)."""

    def __init__(self, dirs: Iterable[Path], allow_pickle: bool = False) -> None:
        self.dirs = [Path(d).expanduser() for d in dirs]
        self.allow_pickle = allow_pickle
        self._entries: Dict[Tuple[str, str], ModelEntry] = {}
        self._skipped: Dict[Tuple[str, str], str] = {}
        self._cache: Dict[Tuple[str, str, float, int], Tuple[Detected, Optional[str]]] = {}
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self.scan()

    def scan(self) -> None:
        """Look at the folders again; detection results of unchanged files are reused."""
        with self._scan_lock:
            self._scan()

    def _scan(self) -> None:
        entries: Dict[Tuple[str, str], ModelEntry] = {}
        skipped: Dict[Tuple[str, str], str] = {}
        roots = [os.path.realpath(d) for d in self.dirs]
        for root in self.dirs:
            for kind in KINDS:
                folders = [(f, False) for f in _kind_dirs(root, kind)]
                if kind == "clip_vision":  # an IP-Adapter repository's own image_encoder/ folders
                    folders += [(f, True) for f in _kind_dirs(root, "ipadapter")]
                if kind == "redux":  # a FluxPriorReduxPipeline folder kept among the checkpoints
                    folders += [(f, True) for f in _kind_dirs(root, "checkpoint")]
                for folder, folders_only in folders:
                    for name, path, fmt in _walk(folder, kind, roots):
                        if folders_only and fmt != DIFFUSERS:
                            continue
                        if (kind, name) in entries:
                            continue
                        entry = self._entry(kind, name, path, fmt)
                        if entry is not None and kind == "checkpoint" and entry.arch == REFINER_ARCH:
                            entry.kind = "refiner"  # only the OpenCLIP-G text encoder: a second model, never alone
                        if entry is None:
                            skipped[(kind, name)] = (
                                f"{path} is a pickle file; convert it to .safetensors or start "
                                "the server with --allow-pickle"
                            )
                        else:
                            entries[(entry.kind, name)] = entry
        with self._lock:
            self._entries = entries
            self._skipped = skipped

    def _entry(self, kind: str, name: str, path: Path, fmt: str) -> Optional[ModelEntry]:
        if fmt == PICKLE and kind not in ("upscaler", "inpainter") and not self.allow_pickle:
            return None  # never listed: it could not be loaded anyway
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
        found, problem = cached
        if (
            problem is None
            and kind in ("checkpoint", "controlnet", "lora", "embedding")
            and found.arch not in SUPPORTED_ARCHS + (REFINER_ARCH,) * (kind == "checkpoint")
        ):
            problem = (
                f"{arch_name(found.arch)} models are not supported "
                "(SD1.5, SDXL, Flux.1, SD3, Flux.2 Klein, Z-Image, Chroma and Qwen-Image are)"
            )
        if problem is None and kind == "ipadapter" and found.arch not in ipadapter.REFERENCE_FAMILIES:
            problem = f"{arch_name(found.arch)} IP-Adapters are not supported (SD1.5 and SDXL ones are)"
        if (
            problem is None
            and kind == "clip_vision"
            and fmt != DIFFUSERS
            and not found.info.get("config")
            and not path.with_name(path.stem + CONFIG_SUFFIX).joinpath("config.json").is_file()
        ):
            what = (
                redux.describe_siglip(found.info)
                if found.arch == redux.SIGLIP
                else ipadapter.describe_encoder(found.info)
            )
            problem = (
                f"an image encoder of a size Paintbridge ships no config for ({what}): put its config.json in "
                f"{path.stem}.config/"
            )
        if problem is None and found.info.get("unsupported"):
            problem = f"not supported: {found.info['unsupported']}"
        return ModelEntry(
            name=name,
            kind=kind,
            path=path,
            format=fmt,
            arch=found.arch,
            inpaint=found.inpaint,
            info=dict(found.info),
            problem=problem,
        )

    # --- queries ---

    def entries(self, kind: Optional[str] = None) -> List[ModelEntry]:
        """Installed models (of one kind), sorted by kind then name."""
        with self._lock:
            items = list(self._entries.values())
        if kind is not None:
            items = [e for e in items if e.kind == kind]
        return sorted(items, key=lambda e: (KINDS.index(e.kind), e.name.lower()))

    def listing(self) -> List[dict]:
        """Every installed model as a listing map (name, kind, arch, inpaint, format, path)."""
        return [e.listing() for e in self.entries()]

    def get(self, name: str, kind: str, arch: Optional[str] = None) -> ModelEntry:
        """The model of ``kind`` named ``name`` (also found by file name, extension or case; among equal names the one
        of ``arch`` first); ``model_not_found`` names what is installed when there is none; an unusable model raises
        ``unsupported`` saying why."""
        entry = self.find(name, kind, arch)
        if entry is None and kind == "checkpoint" and self.find(name, "refiner") is not None:
            raise ProtocolError(
                UNSUPPORTED,
                f"'{name}' is an SDXL refiner: it cannot run alone; choose an SDXL "
                "checkpoint as the model and this one as its refiner",
                field="model",
            )
        if entry is None:
            with self._lock:
                skipped = next((why for (k, n), why in self._skipped.items() if k == kind and _matches(n, name)), None)
            if skipped:
                raise ProtocolError(UNSUPPORTED, f"{kind} '{name}' cannot be loaded: {skipped}", field="model")
            installed = [e.name for e in self.entries(kind)]
            folder = (KIND_FOLDERS[kind] or KIND_FOLDERS["checkpoint"])[0]
            where = " or ".join(str(d / folder) for d in self.dirs) or "(no models folder)"
            have = f"installed: {', '.join(installed)}" if installed else f"none is installed in {where}"
            raise ProtocolError(MODEL_NOT_FOUND, f"no {kind} named '{name}'; {have}", field="model")
        if entry.problem:
            raise ProtocolError(UNSUPPORTED, f"{kind} '{entry.name}' cannot be used: {entry.problem}", field="model")
        return entry

    def get_fitting(
        self, name: str, kind: str, checkpoint: ModelEntry, what: str, field: str, described: str = "", advice: str = ""
    ) -> ModelEntry:
        """``get`` for a model that must be made for ``checkpoint``'s family; one made for another family is refused
        (``unsupported``): "``what`` 'name' is made for SD1.5 but checkpoint 'c' is ``described``" + ``advice``."""
        entry = self.get(name, kind, checkpoint.arch)
        if entry.arch != checkpoint.arch:
            raise ProtocolError(
                UNSUPPORTED,
                f"{what} '{entry.name}' is made for {arch_name(entry.arch)} but checkpoint '{checkpoint.name}' is "
                f"{described or arch_name(checkpoint.arch)}{advice}",
                field=field,
            )
        return entry

    def first_fitting(
        self,
        kind: str,
        arch: str,
        fits: Callable[[ModelEntry], bool],
        order: Callable[[ModelEntry], object],
        describe: Callable[[ModelEntry], str],
        missing: Callable[[str], str],
        field: str,
    ) -> ModelEntry:
        """The usable ``kind`` model of ``arch`` that ``fits``, the first in ``order``; without one ``model_not_found``
        with the message ``missing(have)``, ``have`` naming each installed one of ``arch`` as ``name (describe)``."""
        installed = [e for e in self.entries(kind) if e.problem is None and e.arch == arch]
        found = sorted((e for e in installed if fits(e)), key=order)
        if found:
            return found[0]
        have = ", ".join(f"{e.name} ({describe(e)})" for e in installed) or "none"
        raise ProtocolError(MODEL_NOT_FOUND, missing(have), field=field)

    def find(self, name: str, kind: str, arch: Optional[str] = None) -> Optional[ModelEntry]:
        """Like ``get`` but None when not installed (usable or not)."""
        with self._lock:
            exact = self._entries.get((kind, name))
            if exact is not None:
                return exact
            matches = [e for (k, _), e in self._entries.items() if k == kind and _matches(e.name, name)]
        matches.sort(key=lambda e: (e.arch != arch, e.problem is not None, e.name))
        return matches[0] if matches else None

    def default_checkpoint(self) -> Optional[ModelEntry]:
        """The checkpoint used when a job names none: the first usable regular one, else the first usable one."""
        usable = [e for e in self.entries("checkpoint") if e.problem is None]
        regular = [e for e in usable if not e.inpaint]
        return (regular or usable or [None])[0]


def _matches(entry_name: str, wanted: str) -> bool:
    """Names match ignoring case, a file extension, and the sub-folder part."""
    want = wanted.strip().replace("\\", "/")
    low = want.lower()
    for suffix in WEIGHT_SUFFIXES:
        if low.endswith(suffix):
            want = want[: -len(suffix)]
            break
    a, b = entry_name.lower(), want.lower()
    return a == b or a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]
