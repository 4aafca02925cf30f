"""Finding the models in the models folders: each kind's folders, and every model file or model folder under them.

Sub-folders are searched; a model's name is its path inside its kind's folder without the extension
(``sdxl/juggernaut``). Links are followed, each real folder once; a linked folder outside the models folders is not
searched but reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from . import redux
from .entry import ModelEntry
from .identify import DIFFUSERS, GGUF, PICKLE, SAFETENSORS
from .kinds import CONFIG_SUFFIX, KIND_FOLDERS, KINDS, LINK_OUT, REFINER_ARCH, WEIGHT_SUFFIXES

Inspect = Callable[[str, str, Path, str], Optional[ModelEntry]]
"""(kind, name, path, format) → the entry, or None for a model that is never listed (a pickle file not allowed)."""


def kind_dirs(root: Path, kind: str) -> List[Path]:
    """The existing folders of ``kind`` under the models folder ``root``, each real folder once."""
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


def walk(folder: Path, kind: str, roots: Iterable[str] = ()) -> Iterable[Tuple[str, Path, str]]:
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


def scan(dirs: List[Path], inspect: Inspect) -> Tuple[Dict[Tuple[str, str], ModelEntry], Dict[Tuple[str, str], str]]:
    """Every model of every kind in ``dirs`` (earlier folders win on equal names), as ``inspect`` makes its entry:
    the entries by (kind, name), and why each model that is never listed was skipped."""
    entries: Dict[Tuple[str, str], ModelEntry] = {}
    skipped: Dict[Tuple[str, str], str] = {}
    roots = [os.path.realpath(d) for d in dirs]
    for root in dirs:
        for kind in KINDS:
            folders = [(f, False) for f in kind_dirs(root, kind)]
            if kind == "clip_vision":  # an IP-Adapter repository's own image_encoder/ folders
                folders += [(f, True) for f in kind_dirs(root, "ipadapter")]
            if kind == "redux":  # a FluxPriorReduxPipeline folder kept among the checkpoints
                folders += [(f, True) for f in kind_dirs(root, "checkpoint")]
            for folder, folders_only in folders:
                for name, path, fmt in walk(folder, kind, roots):
                    if folders_only and fmt != DIFFUSERS:
                        continue
                    if (kind, name) in entries:
                        continue
                    entry = inspect(kind, name, path, fmt)
                    if entry is not None and kind == "checkpoint" and entry.arch == REFINER_ARCH:
                        entry.kind = "refiner"  # only the OpenCLIP-G text encoder: a second model, never alone
                    if entry is None:
                        skipped[(kind, name)] = (
                            f"{path} is a pickle file; convert it to .safetensors or start "
                            "the server with --allow-pickle"
                        )
                    else:
                        entries[(entry.kind, name)] = entry
    return entries, skipped
