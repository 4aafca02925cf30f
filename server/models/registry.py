"""The model registry: what is installed in the models folders, and what each model is, found by name.

The registry holds the last scan of the folders (``scanning``: where models are; ``inspection``: what each one is and
whether it can be used; ``listing``: what the messages say about each) and answers lookups over it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from protocol.errors import MODEL_NOT_FOUND, UNSUPPORTED, ProtocolError

from .entry import ModelEntry
from .inspection import Inspector
from .kinds import KIND_FOLDERS, KINDS, WEIGHT_SUFFIXES, arch_name
from .scanning import scan

__all__ = ["KIND_FOLDERS", "ModelEntry", "ModelRegistry", "arch_name"]  # what the engines import from here


class ModelRegistry:
    """Installed models of every kind over one or more models folders (earlier folders win on equal names)."""

    def __init__(self, dirs: Iterable[Path], allow_pickle: bool = False) -> None:
        self.dirs = [Path(d).expanduser() for d in dirs]
        self._entries: Dict[Tuple[str, str], ModelEntry] = {}
        self._skipped: Dict[Tuple[str, str], str] = {}
        self._inspector = Inspector(allow_pickle)
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self.scan()

    @property
    def allow_pickle(self) -> bool:
        """Whether pickle files (``.ckpt``, ``.pt``, ``.bin``) are read (``--allow-pickle``)."""
        return self._inspector.allow_pickle

    def scan(self) -> None:
        """Look at the folders again; detection results of unchanged files are reused."""
        with self._scan_lock:
            entries, skipped = scan(self.dirs, self._inspector.entry)
            with self._lock:
                self._entries = entries
                self._skipped = skipped

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
