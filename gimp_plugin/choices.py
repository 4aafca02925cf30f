"""Model-like arguments (``model``, ``vae``, ``refiner``, ``upscaler``, ``hires-upscaler``, ``style``, the LoRA slots)
as choices of the installed models and the server's styles (GIMP 3's ``add_choice_argument``), each with a free-text override
``<argument>-name`` for scripts.

GIMP fixes a choice argument's entries when the procedure is created: at registration (GIMP caches that until the
plug-in changes) and again in the plug-in's own process at each run, which builds the dialog. So the entries come from
the server's listing when it answers within ``TIMEOUT`` (the remembered address), else from the listing recorded after
the last download or dialog (``recorded``: after each download and whenever the procedures are
created; when the listed models changed the plug-in's entry file is touched, so GIMP registers it again), plus the
fixed entries: for ``model`` ``default`` (the server's default checkpoint) and ``classical`` (the built-in engine),
for the others ``LISTED``'s. Nicks are the model names themselves, so a script passes ``model="my-checkpoint"`` as
before; a name GIMP has not registered falls back to the default entry, which is what ``<argument>-name`` is for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from client.styles import AUTO as AUTO_STYLE

DEFAULT = "default"
RECORD_NAME = "paintbridge-models.json"
CLASSICAL = "classical"
TIMEOUT = 1.5  # s the plug-in waits for the server's listing when it creates its procedures

_cache: Dict[str, List[dict]] = {}


def model_choices(models: Sequence[Dict[str, Any]], mode: str = "") -> Tuple[Tuple[str, str], ...]:
    """(nick, label) for each checkpoint of a listing, between the server's default and the built-in engine; for a
    ``mode`` only some models run (``client.modes.offered``: edit), only those and the server's default; a model that
    runs one mode only (decompose) is no choice for the others."""
    from client.modes import offered, rule

    special = bool(mode) and bool(rule(mode).listing)
    out = [(DEFAULT, "Server's default")]
    seen = {DEFAULT, CLASSICAL}
    for entry in models:
        name = str(entry.get("name") or "")
        if entry.get("kind") != "checkpoint" or not name or name in seen or (mode and not offered(mode, entry)):
            continue
        seen.add(name)
        family = str(entry.get("family") or entry.get("arch") or "")
        out.append((name, f"{name} ({family}{', inpaint' if entry.get('inpaint') else ''})" if family else name))
    if not special:
        out.append((CLASSICAL, "Classical (OpenCV, no AI)"))
    return tuple(out)


# Model-like arguments other than ``model`` (listing → (kind in the server's listing, the fixed entries first as
# (nick, label, the setting's value))): a VAE, an SDXL refiner, an upscaler, the hires fix's upscaler.
LISTED: Dict[str, Tuple[str, Tuple[Tuple[str, str, str], ...]]] = {
    "vae": ("vae", (("default", "Checkpoint's own", ""),)),
    "refiner": ("refiner", (("none", "None", ""),)),
    "upscaler": ("upscaler", (("lanczos", "Lanczos (no model)", ""),)),
    "hires-upscaler": (
        "upscaler",
        (("latent", "Latent (the latents)", "latent"), ("lanczos", "Lanczos (the pixels)", "lanczos")),
    ),
    # the server's styles (``connection.style_entries``); "auto": the one it suggests for the model's family
    "style": ("style", (("auto", "Suggested for the model", AUTO_STYLE), ("none", "No style", ""))),
    "lora": ("lora", (("none", "None", ""),)),
}
OVERRIDE_SUFFIX = "-name"  # ``<argument>-name``: a free-text model name that wins over the choice when set


def listed_choices(listing: str, models: Sequence[Dict[str, Any]], mode: str = "") -> Tuple[Tuple[str, str], ...]:
    """(nick, label) of a model-like argument's choice: ``model`` (``model_choices``) or a ``LISTED`` one: its fixed
    entries, then the installed models of its kind (nick = the model's name; entries the server marks as a problem
    are left out)."""
    if listing == "model":
        return model_choices(models, mode)
    kind, fixed = LISTED[listing]
    out = [(nick, label) for nick, label, _value in fixed]
    seen = {nick for nick, _label in out}
    for entry in models:
        name = str(entry.get("name") or "")
        if entry.get("kind") == kind and name and name not in seen and not entry.get("problem"):
            seen.add(name)
            title, family = str(entry.get("title") or name), str(entry.get("arch") or "")
            out.append((name, f"{title} ({family})" if kind in ("style", "lora") and family else title))
    return tuple(out)


def default_nick(listing: str) -> str:
    """The nick a model-like argument starts at."""
    return DEFAULT if listing == "model" else LISTED[listing][1][0][0]


def listed_value(listing: str, nick: Any, override: Any = "") -> str:
    """The setting's value of a model-like argument: the override when set (``<argument>-name``), else the choice's
    nick (a fixed entry's value, or a model's name)."""
    name = str(override or "").strip()
    if name:
        return name
    nick = str(nick or "").strip()
    if listing == "model":
        return model_name(nick)
    fixed = {n: value for n, _label, value in LISTED[listing][1]}
    return fixed.get(nick or default_nick(listing), nick)


def listed_nick(listing: str, value: str) -> str:
    """The choice nick that gives ``value`` back (``listed_value``'s inverse)."""
    if listing == "model":
        return value or DEFAULT
    for nick, _label, fixed in LISTED[listing][1]:
        if fixed == value:
            return nick
    return value


def model_name(nick: Any) -> str:
    """The ``job.model`` for a choice nick: "" (the server's default) for ``default``."""
    nick = str(nick or "").strip()
    return "" if nick in ("", DEFAULT) else nick


def target_choices(models: Sequence[Mapping[str, Any]]) -> Tuple[Tuple[str, str], ...]:
    """(nick, label) of the detailer's ``detail-targets`` choice: faces, and hands and both only when the listing has
    a hand detector (``client.jobs.offered_detail_targets``)."""
    from client.jobs import offered_detail_targets

    out = (("face", "Faces"),)
    if "hand" in offered_detail_targets(models):
        out += (("hand", "Hands"), ("face-hand", "Faces and hands"))
    return out


def detail_targets(nick: Any) -> str:
    """``Settings.detail_targets`` for a ``detail-targets`` nick (``face-hand``: ``face,hand``); faces for anything
    else."""
    nick = str(nick or "").strip()
    return {"hand": "hand", "face-hand": "face,hand"}.get(nick, "face")


def record(profile: Path, models: Sequence[Mapping[str, Any]], entry: Optional[Path] = None) -> bool:
    """Remember the server's model listing (names, kinds, detectors' targets) in the plug-in's profile; returns True
    when the checkpoints or the detailer's targets changed, and then touches ``entry`` (the plug-in's entry file: GIMP
    registers it again at its next start)."""
    listing = [
        dict(
            {"name": str(m.get("name", "")), "kind": str(m.get("kind", ""))},
            **({"targets": [str(t) for t in m.get("targets") or ()]} if m.get("kind") == "detector" else {}),
            **{key: str(m[key]) for key in ("arch", "title") if m.get(key)},
        )
        for m in models
        if m.get("name")
    ]

    def choices(entries: Sequence[Mapping[str, Any]]) -> Tuple[List[str], Tuple[Tuple[str, str], ...]]:
        kinds = {"checkpoint"} | {kind for kind, _fixed in LISTED.values()}  # every kind a choice lists
        return (sorted(f"{m['kind']}/{m['name']}" for m in entries if m.get("kind") in kinds), target_choices(entries))

    changed = choices(listing) != choices(recorded(profile))
    Path(profile).mkdir(parents=True, exist_ok=True)
    (Path(profile) / RECORD_NAME).write_text(json.dumps({"models": listing}, indent=1), encoding="utf-8")
    if entry is None:
        from .connection import PLUGIN_DIR

        entry = PLUGIN_DIR / "paintbridge.py"
    if changed and Path(entry).is_file():
        try:
            os.utime(entry)
        except OSError:
            pass
    return changed


def recorded(profile: Path) -> List[dict]:
    """The last model listing recorded (empty when none)."""
    try:
        data = json.loads((Path(profile) / RECORD_NAME).read_text(encoding="utf-8"))
        return [dict(m) for m in data.get("models", []) if isinstance(m, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def installed_models(profile: Path, fetch=None) -> List[dict]:
    """The listing to build the choice from: the server's (recorded for next time) or the last recorded one."""
    from . import settings

    if fetch is None:
        from .connection import fetch_listing as fetch
    url, token = settings.load(profile).target()
    listing: Optional[List[dict]] = None
    try:
        listing = fetch(url, token, TIMEOUT)
    except Exception:  # noqa: BLE001 - registration must never fail: use what was recorded
        listing = None
    if listing is None:
        return recorded(profile)
    try:
        record(profile, listing)
    except OSError:
        pass
    return listing


def cached_listing(profile: Path) -> List[dict]:
    """The installed models, asked once per plug-in process (every procedure shares the listing)."""
    key = str(profile)
    if key not in _cache:
        _cache[key] = installed_models(profile)
    return _cache[key]


def cached_listed_choices(profile: Path, listing: str, mode: str = "") -> Tuple[Tuple[str, str], ...]:
    """``listed_choices`` of the installed models."""
    return listed_choices(listing, cached_listing(profile), mode)


def cached_target_choices(profile: Path) -> Tuple[Tuple[str, str], ...]:
    """``target_choices`` of the installed models."""
    return target_choices(cached_listing(profile))
