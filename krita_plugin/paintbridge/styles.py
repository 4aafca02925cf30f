"""The server's styles as the panel uses them, without widgets and without Krita: the list (shared by every editor
of the server), the one chosen (kept in the host's settings; a job names it), and the editor's operations — new,
duplicate, rename, delete, save — sent to the server, which answers with the new list. The few-step status per
family says whether live frames are fast and which catalogue file would make them so."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .model import Event
from .settings_store import Store
from .wire import client, protocol

STORE_KEY = "style"
AUTO = client.styles.AUTO  # stored until the painter chooses: the family's suggested style
# the fields of a style the panel shows in place of a family default while the job leaves them to the style
SHOWN_FIELDS = ("steps", "cfg", "sampler", "scheduler", "vae", "clip_skip")
check_name, edited, first_installed = client.styles.check_name, client.styles.edited, client.styles.first_installed


class Styles:
    """The styles of the connected server. ``request(action, arg)`` asks the server (``client.connect.Connector.
    styles``); ``default_for()`` gives ``welcome.defaults.styles`` (family → style name); ``family()`` the chosen
    model's. ``changed`` tells the view the list changed, ``chosen_changed(name)`` the choice."""

    def __init__(
        self,
        store: Store,
        request: Callable[[str, Any], None],
        default_for: Callable[[], Mapping[str, str]],
        family: Callable[[], Optional[str]],
    ) -> None:
        self.store, self._request, self._default_for, self._family = store, request, default_for, family
        self.items: Tuple["protocol.Style", ...] = ()
        self.problems: Tuple["protocol.StyleProblem", ...] = ()
        self.fewstep: Dict[str, Any] = {}
        self.available = False  # the server keeps styles
        stored = store.read(STORE_KEY, AUTO)
        self._stored = stored != AUTO  # the painter chose, "No style" too (else the family's suggested style is taken)
        self.chosen = "" if stored == AUTO else stored
        self.changed = Event()  # ()
        self.chosen_changed = Event()  # (name)
        self.refused = Event()  # (message) a save or delete the server refused

    # --- from the server ----------------------------------------------------------------------------------------------
    def on_styles(self, styles: Any, error: str = "") -> None:
        """The server's answer (``protocol.Styles``; None: it keeps no styles)."""
        if error:
            self.refused.emit(error)
        if styles is None:
            if not error:
                self.available, self.items, self.problems, self.fewstep = False, (), (), {}
                self.changed.emit()
            return
        self.available = True
        self.items = tuple(styles.styles)
        self.problems = tuple(styles.problems)
        self.fewstep = dict(styles.fewstep)
        self.changed.emit()
        if self.chosen and self.style(self.chosen) is None:
            self._choose("")  # removed on the server (by this or another editor)
        elif not self._stored and not self.chosen:
            name = self._default_for().get(self._family() or "", "")
            if self.style(name) is not None:
                self._choose(name)

    # --- reading --------------------------------------------------------------------------------------------------------
    def names(self) -> List[str]:
        return [s.name for s in self.items]

    def style(self, name: str) -> Optional["protocol.Style"]:
        return next((s for s in self.items if s.name == name), None) if name else None

    def current(self) -> Optional["protocol.Style"]:
        return self.style(self.chosen)

    def label(self, style: "protocol.Style") -> str:
        return style.title or style.name

    def fast_live(self, family: Optional[str]) -> Tuple[str, str]:
        """(installed, pull) for ``family``'s live frames: the few-step LoRA or model in use ("" = none) and the
        catalogue file whose download would make them fast ("" = nothing to pull)."""
        entry = self.fewstep.get(family or "") or {}
        return str(entry.get("installed", "") or ""), str(entry.get("pull", "") or "")

    # --- the painter's choices ----------------------------------------------------------------------------------------
    def choose(self, name: str) -> None:
        """Use style ``name`` for the next jobs ("" = none)."""
        if name and self.style(name) is None:
            raise client.errors.JobInputError(f"the server has no style named {name!r}")
        self._stored = True
        self._choose(name)

    def _choose(self, name: str) -> None:
        self.chosen = name
        self.store.write(STORE_KEY, name if self._stored else AUTO)
        self.chosen_changed.emit(name)

    def save(self, style: "protocol.Style") -> None:
        """Create or replace ``style`` on the server (a shipped one keeps a user copy under its name)."""
        self._request("save", style)

    def new(self, name: str, family: str = "") -> "protocol.Style":
        """A new style ``name`` for ``family`` (default: the chosen model's), saved and chosen."""
        style = protocol.Style(name=check_name(name, self.names()), family=family or self._family() or "")
        self.save(style)
        self._stored, self.chosen = True, style.name
        self.store.write(STORE_KEY, style.name)
        return style

    def duplicate(self, name: str, new_name: str) -> "protocol.Style":
        """A copy of style ``name`` named ``new_name``, saved and chosen."""
        style = edited(self._existing(name), name=check_name(new_name, self.names()), title="")
        self.save(style)
        self._stored, self.chosen = True, style.name
        self.store.write(STORE_KEY, style.name)
        return style

    def rename(self, name: str, new_name: str) -> "protocol.Style":
        """Style ``name`` under ``new_name`` (a shipped one is copied: the server keeps its own)."""
        old = self._existing(name)
        style = self.duplicate(name, new_name)
        if not old.builtin:
            self._request("delete", name)
        return style

    def delete(self, name: str) -> None:
        """Remove style ``name`` from the server (shipped styles cannot be removed)."""
        style = self._existing(name)
        if style.builtin:
            raise client.errors.JobInputError(
                f"{self.label(style)!r} ships with the server and cannot be deleted; duplicate it to change a copy"
            )
        self._request("delete", name)

    def _existing(self, name: str) -> "protocol.Style":
        style = self.style(name)
        if style is None:
            raise client.errors.JobInputError(f"the server has no style named {name!r}")
        return style
