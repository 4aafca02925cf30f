"""The LoRAs a painter picks from the server's list, without widgets and without Krita: each with a weight, kept in
the host's settings, offered only when the chosen model takes them (``client.offers``: its family's LoRAs, and its
base model's for a variant such as Chroma or Flux.1 Kontext). A job carries them as ``<lora:name:w>``
tags after the prompt (the form the server reads); tags typed into the prompt keep working and win over a pick of the
same LoRA."""

from __future__ import annotations

import json
from typing import Callable, Dict, List, Sequence, Tuple

from .model import Event
from .settings_store import Store
from .wire import client

STORE_KEY = "loras"
MIN_WEIGHT, MAX_WEIGHT, tagged = client.loras.MIN_WEIGHT, client.loras.MAX_WEIGHT, client.loras.tagged
_BAD_NAME = client.loras.BAD_NAME


class Loras:
    """The picked LoRAs (name → weight, in the order picked). ``offered()`` gives the installed LoRAs the chosen model
    takes (``client.offers.Offers.loras``); ``changed`` tells the view and the live loop."""

    def __init__(self, store: Store, offered: Callable[[], Sequence[str]]):
        self.store, self._offered = store, offered
        self.changed = Event()  # ()
        self.picks: Dict[str, float] = _load(store)

    def available(self) -> List[str]:
        """The installed LoRAs the chosen model takes."""
        return list(self._offered())

    def active(self) -> List[Tuple[str, float]]:
        """The picks a job of the chosen model carries (those it does not take wait until such a model is chosen)."""
        here = set(self.available())
        return [(name, weight) for name, weight in self.picks.items() if name in here]

    def pick(self, name: str, weight: float = 1.0) -> None:
        """Add LoRA ``name`` or change its weight (in [-2, 2])."""
        if _BAD_NAME.search(name) or not name.strip():
            raise client.errors.JobInputError(f"a LoRA named {name!r} cannot be used: its name holds ':', '<' or '>'")
        if name not in self.available():
            raise client.errors.JobInputError(
                f"{name!r} is not an installed LoRA the chosen model takes; choose one from the list"
            )
        if not MIN_WEIGHT <= float(weight) <= MAX_WEIGHT:
            raise client.errors.JobInputError(
                f"LoRA weight {weight} is out of range: choose {MIN_WEIGHT:g} to {MAX_WEIGHT:g}"
            )
        self.picks[name] = round(float(weight), 2)
        self._save()

    def drop(self, name: str) -> None:
        """Remove LoRA ``name`` from the picks (nothing when it is not picked)."""
        if self.picks.pop(name, None) is not None:
            self._save()

    def prompt(self, prompt: str) -> str:
        """The prompt a job sends: ``prompt`` with the active picks' tags."""
        return tagged(prompt, self.active())

    def _save(self) -> None:
        self.store.write(STORE_KEY, json.dumps(self.picks))
        self.changed.emit()


def _load(store: Store) -> Dict[str, float]:
    """The stored picks; entries that are not a name with a weight in range are left out."""
    try:
        data = json.loads(store.read(STORE_KEY, "{}"))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: Dict[str, float] = {}
    for name, weight in data.items():
        if isinstance(name, str) and not _BAD_NAME.search(name) and isinstance(weight, (int, float)):
            if MIN_WEIGHT <= weight <= MAX_WEIGHT:
                out[name] = float(weight)
    return out
