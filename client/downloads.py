"""Model downloads from an editor, through the server (so they also work for a remote server): what each starter set
(preset) has and lacks for the chosen mode or control type, and pulling one with progress and cancel.

- ``fetch_presets(client)`` → ``[PresetStatus]`` (``list_presets``); ``presets_from(entries)`` for entries already at hand.
- ``status.missing_for(mode, control)`` / ``status.line(mode, control)`` / ``summary(statuses, mode, control)``: the
  texts both editors show.
- ``run_pull(client, names, on_status, pull_id)`` → the server's model listing after the pull; failures raise
  ``client.errors`` exceptions with a message the painter can act on (an old server: "update it").
- ``describe_pull(msg)``: (fraction, text) for a ``pull_progress`` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .errors import Cancelled, JobError, ServerUnavailable
from .wire import client_module, make_client, protocol

StatusFn = Callable[[Optional[float], Optional[str]], None]


@dataclass(frozen=True)
class PresetFile:
    id: str
    target: str
    kind: str
    what: str
    size: int
    installed: bool
    modes: Tuple[str, ...] = ()
    controls: Tuple[str, ...] = ()

    def serves(self, mode: str = "", control: str = "") -> bool:
        """True when ``mode`` or ``control`` needs this file (both empty: every file counts)."""
        if not mode and not control:
            return True
        return (bool(mode) and mode in self.modes) or (bool(control) and control in self.controls)


@dataclass(frozen=True)
class PresetStatus:
    """A starter set and what the server's models folder has of it."""

    name: str
    title: str
    files: Tuple[PresetFile, ...]

    @property
    def complete(self) -> bool:
        return all(f.installed for f in self.files)

    def needed_for(self, mode: str = "", control: str = "") -> List[PresetFile]:
        return [f for f in self.files if f.serves(mode, control)]

    def missing_for(self, mode: str = "", control: str = "") -> List[PresetFile]:
        """Files of this preset that ``mode`` (or ``control``) needs and the server lacks."""
        return [f for f in self.needed_for(mode, control) if not f.installed]

    def ready_for(self, mode: str = "", control: str = "") -> bool:
        """The preset has something for ``mode``/``control`` and nothing of that is missing."""
        return bool(self.needed_for(mode, control)) and not self.missing_for(mode, control)

    def line(self, mode: str = "", control: str = "") -> str:
        """One line for a panel or dialog: complete, ready for the mode, or what is missing (and its size)."""
        if self.complete:
            return f"{self.name}: complete"
        what = " / ".join(w for w in (mode, control) if w)
        missing = self.missing_for(mode, control) if what else self.missing_for()
        if what and not self.needed_for(mode, control):
            return f"{self.name}: nothing for {what}"
        if not missing:
            return f"{self.name}: ready for {what} ({len(self.missing_for())} other file(s) missing)"
        names = ", ".join(f.target.rsplit("/", 1)[-1] for f in missing[:3]) + (" …" if len(missing) > 3 else "")
        return (
            f"{self.name}: lacks {len(missing)} file(s){' for ' + what if what else ''}, about "
            f"{human_size(sum(f.size for f in missing))}: {names}"
        )


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def presets_from(entries: Sequence[Any]) -> List[PresetStatus]:
    """``presets`` message entries as PresetStatus objects."""
    out = []
    for entry in entries:
        files = tuple(
            PresetFile(
                str(f.get("id", "")),
                str(f.get("target", "")),
                str(f.get("kind", "")),
                str(f.get("what", "")),
                int(f.get("size") or 0),
                bool(f.get("installed")),
                tuple(f.get("modes") or ()),
                tuple(f.get("controls") or ()),
            )
            for f in entry.get("files") or ()
        )
        out.append(PresetStatus(str(entry.get("name", "")), str(entry.get("title", "")), files))
    return out


def summary(statuses: Sequence[PresetStatus], mode: str = "", control: str = "") -> str:
    """The hint line of a mode dialog: which preset is ready for ``mode``, else what to download."""
    ready = [s.name for s in statuses if s.ready_for(mode, control)]
    what = " / ".join(w for w in (mode, control) if w) or "all modes"
    if ready:
        return f"Models for {what}: {', '.join(ready)} ready"
    offers = [s for s in statuses if s.missing_for(mode, control)]
    if not offers:
        return f"No starter set covers {what}"
    best = min(offers, key=lambda s: sum(f.size for f in s.missing_for(mode, control)))
    size = human_size(sum(f.size for f in best.missing_for(mode, control)))
    return f"Models for {what}: none installed; download the preset '{best.name}' ({size})"


def _unsupported(err: Any) -> JobError:
    return JobError(
        "unsupported",
        f"This Paintbridge server cannot download models ({err}). Update the server, or "
        "run 'paintbridge models pull NAME' on its machine.",
    )


def fetch_presets(client: Any, timeout: float = 30.0) -> List[PresetStatus]:
    """The server's preset status (``list_presets``)."""
    cm = client_module()
    try:
        return presets_from(client.list_presets(timeout=timeout))
    except cm.JobFailed as err:
        if err.code in ("unsupported", "bad_request"):
            raise _unsupported(err) from None
        raise JobError(err.code, f"The Paintbridge server could not list its model presets: {err}") from None
    except (cm.ConnectionFailed, TimeoutError) as err:
        raise ServerUnavailable(f"The connection to the Paintbridge server broke off: {err}") from None


def describe_pull(msg: "protocol.Message") -> Tuple[Optional[float], Optional[str]]:
    """(fraction of the whole pull or None, status text) for a ``pull_progress`` event (other events: nothing)."""
    if not isinstance(msg, protocol.PullProgress):
        return None, None
    count, index, done, total = msg.count, msg.index, msg.done, msg.total
    part = min(1.0, done / total) if total else 0.0
    name = (msg.target or msg.file).rsplit("/", 1)[-1]
    of = f" of {human_size(total)}" if total else ""
    return (index + part) / count, f"Downloading {name} ({index + 1}/{count}): {human_size(done)}{of}"


def run_pull(
    client: Any,
    names: Sequence[str],
    on_status: Optional[StatusFn] = None,
    pull_id: Optional[str] = None,
    timeout: Optional[float] = None,
) -> List[dict]:
    """Pull presets or files onto the server's machine; returns the server's model listing afterwards."""
    cm = client_module()

    def on_event(msg: "protocol.Message") -> None:
        if on_status is not None:
            fraction, text = describe_pull(msg)
            if text is not None:
                on_status(fraction, text)

    try:
        done = client.pull(list(names), pull_id=pull_id, on_event=on_event, timeout=timeout)
    except cm.JobFailed as err:
        if err.code == "unsupported" or (err.code == "bad_request" and err.field == "type"):
            raise _unsupported(err) from None
        raise JobError(err.code, f"The download did not complete: {err}") from None
    except cm.JobCancelled:
        raise Cancelled(
            "The download was cancelled; what was fetched is kept, and downloading again continues where it stopped."
        ) from None
    except (cm.ConnectionFailed, TimeoutError) as err:
        raise ServerUnavailable(
            f"The connection to the Paintbridge server broke off during the download: {err}. "
            "Downloading again continues where it stopped."
        ) from None
    return [dict(m) for m in done.models]


def fetch_listing(
    url: str, token: Optional[str], client_name: str, client_version: str, timeout: float = 2.0
) -> Tuple[Optional[List[dict]], Optional[List[PresetStatus]]]:
    """(model listing, preset status) for dialog hints: None for what the server does not answer within
    ``timeout`` (the preset status is None too for a server without model downloads)."""
    cm = client_module()
    client = make_client(url, token, client_name, client_version, open_timeout=timeout)
    try:
        welcome = client.connect()
    except Exception:  # noqa: BLE001 - unreachable, refused, timed out: the hint says "not answering"
        client.close()
        return None, None
    try:
        models = list(welcome.models)
        try:
            return models, presets_from(client.list_presets(timeout=timeout))
        except (cm.JobFailed, cm.ConnectionFailed, TimeoutError, OSError):
            return models, None
    finally:
        client.close()
