"""What an editor may offer for the chosen model: ``offers(welcome, model)`` reads the server's ``welcome``
(``capabilities.families``: per checkpoint family what its jobs can use, and the installed models) and answers with
the modes, control types, preprocessors, detailer targets, techniques, sampling options, speed levels, region and
reference types, LoRAs (of every family the model takes), VAEs, refiners and upscalers that will run. Both editors
build their choices from it, so neither offers what the server refuses as unsupported.

A server older than ``capabilities.families`` (or a model it does not list) gets everything it announces: the server
then decides, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .wire import protocol

CLASSICAL = "classical"  # the built-in engine's model name
CLASSICAL_MODES = ("inpaint", "outpaint")  # what the built-in engine runs when a server does not say


@dataclass(frozen=True)
class Offers:
    """What can run on one model (``family`` is its ``arch``; "" for the built-in engine or a model the server did not
    describe, ``known`` False for the latter)."""

    model: str
    family: str
    known: bool
    modes: Tuple[str, ...]
    control_modes: Tuple[str, ...]
    control_types: Tuple[str, ...]
    max_controls: Optional[int]
    preprocessors: Tuple[str, ...]
    detail_targets: Tuple[str, ...]
    techniques: Tuple[str, ...]
    technique_modes: Tuple[str, ...]
    sampling: Tuple[str, ...]
    regions: bool
    reference_types: Tuple[str, ...]
    transparent: Tuple[str, ...]
    speed_levels: Tuple[str, ...]
    tileable: Tuple[str, ...]
    loras: Tuple[str, ...]
    vaes: Tuple[str, ...]
    refiners: Tuple[str, ...]
    upscalers: Tuple[str, ...]

    def runs(self, mode: str) -> bool:
        return mode in self.modes

    def controls_for(self, mode: str) -> Tuple[str, ...]:
        """The control types a job of ``mode`` may carry (none when the mode takes no control layers)."""
        return self.control_types if mode in self.control_modes else ()

    def techniques_for(self, mode: str) -> Tuple[str, ...]:
        """``hires`` / ``detail`` when they may follow a job of ``mode``."""
        return self.techniques if mode in self.technique_modes else ()

    def takes(self, option: str) -> bool:
        """Whether a sampling option (``vae``, ``clip_skip``, ``refiner``) is honoured on this model."""
        return option in self.sampling

    def speed_choice(self) -> bool:
        """Whether the painter has a speed level to choose on this model (one besides ``quality``)."""
        return any(level != "quality" for level in self.speed_levels)

    def speed_choices(self) -> Tuple[str, ...]:
        """The ``params.speed`` values a painter may pick on this model: ``""`` (the style's level) and its levels."""
        return ("",) + self.speed_levels

    def speed_sent(self, chosen: str) -> str:
        """The ``params.speed`` a job on this model sends for the painter's ``chosen`` level: ``""`` (the style's
        level, else quality) where the model cannot run it."""
        return chosen if chosen in self.speed_levels else ""

    def speed_runs(self, chosen: str, style_speed: str = "") -> str:
        """The level a job runs at on this model: the painter's ``chosen`` one, else (``""``) the style's
        ``style_speed`` where the model takes it, else ``quality`` (as the server applies a style)."""
        sent = self.speed_sent(chosen)
        if sent:
            return sent
        return style_speed if style_speed in self.speed_levels else "quality"


def _names(models: Sequence[Mapping[str, Any]], kind: str, archs: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    """The usable listed models of ``kind`` (of one of ``archs`` when given)."""
    return tuple(
        str(m.get("name"))
        for m in models
        if m.get("kind") == kind
        and m.get("name")
        and not m.get("problem")
        and (archs is None or m.get("arch") in archs)
    )


def lora_families(capabilities: Mapping[str, Any], arch: str) -> Tuple[str, ...]:
    """The LoRA families a checkpoint of ``arch`` takes: its ``families`` entry's ``lora_families``, or ``arch`` alone
    from a server that does not say; none for no family."""
    families = capabilities.get("families")
    table = families.get(arch) if arch and isinstance(families, Mapping) else None
    listed = table.get("lora_families") if isinstance(table, Mapping) else None
    if isinstance(listed, (list, tuple)):
        return tuple(str(f) for f in listed)
    return (arch,) if arch else ()


def family_loras(capabilities: Mapping[str, Any], models: Sequence[Mapping[str, Any]], arch: str) -> Tuple[str, ...]:
    """The installed LoRAs a checkpoint of ``arch`` takes (``lora_families``), in the listing's order."""
    return _names(models, "lora", lora_families(capabilities, arch))


def checkpoint_entry(welcome: "protocol.Welcome", model: str = "") -> Optional[Mapping[str, Any]]:
    """The listing entry of ``model`` (ignoring case; "" = the server's default checkpoint), or None."""
    models = list(welcome.models)
    checkpoints = [m for m in models if m.get("kind") == "checkpoint" and not m.get("problem")]
    if not model:
        name = str(welcome.capabilities.get("default_checkpoint") or "")
        if not name:
            regular = [m for m in checkpoints if not m.get("inpaint")]
            return (regular or checkpoints or [None])[0]
        model = name
    low = model.strip().lower()
    return next((m for m in checkpoints if str(m.get("name", "")).lower() == low), None)


def offers(welcome: "protocol.Welcome", model: str = "") -> Offers:
    """What an editor may offer for ``model`` ("" = the server's default checkpoint, ``classical`` = built-in engine)."""
    caps: Dict[str, Any] = dict(welcome.capabilities)
    models: List[Mapping[str, Any]] = list(welcome.models)
    families: Dict[str, Any] = dict(caps.get("families") or {})
    all_modes = tuple(caps.get("modes") or protocol.MODES)
    independent = tuple(m for m in all_modes if not any(m in (f.get("modes") or ()) for f in families.values()))
    independent = tuple(m for m in independent if m not in CLASSICAL_MODES)
    # seamless textures on a mode no checkpoint runs (upscale): the server's own step, whatever the model
    tileable_anywhere = tuple(m for m in caps.get("tileable") or () if m in independent)
    preprocessors = tuple(
        str(p.get("name")) for p in caps.get("preprocessors") or () if isinstance(p, Mapping) and p.get("ready")
    )
    found = set(caps.get("detail_targets") or ())
    targets = tuple(t for t in protocol.DETAIL_TARGETS if t == "face" or t in found)  # face: the server names the pull
    # an older server, or a model it did not describe: everything the server announces (the server then decides)
    everything: Dict[str, Any] = dict(
        known=False,
        modes=all_modes,
        control_modes=all_modes,
        control_types=tuple(caps.get("control_types") or protocol.CONTROL_TYPES),
        max_controls=None,
        preprocessors=preprocessors,
        detail_targets=targets,
        techniques=("hires", "detail"),
        technique_modes=all_modes,
        sampling=("vae", "clip_skip", "refiner"),
        regions=True,
        reference_types=tuple(caps.get("reference_types") or ()),
        transparent=all_modes,
        speed_levels=tuple(caps.get("speed_levels") or ("quality",)),
        tileable=tuple(caps.get("tileable") or ()),
        loras=_names(models, "lora"),
        vaes=tuple(caps.get("vaes") or _names(models, "vae")),
        refiners=tuple(caps.get("refiners") or _names(models, "refiner")),
        upscalers=_names(models, "upscaler"),
    )
    if model.strip().lower() == CLASSICAL:
        nothing = {key: () for key in everything if isinstance(everything[key], tuple)}
        built_in = {
            **nothing,
            "known": True,
            "modes": tuple(m for m in all_modes if m in CLASSICAL_MODES) + independent,
            "max_controls": 0,
            "preprocessors": preprocessors,
            "regions": False,
            "speed_levels": ("quality",),
            "upscalers": everything["upscalers"],
            "tileable": tileable_anywhere,
        }
        return Offers(model=CLASSICAL, family="", **{**everything, **built_in})
    entry = checkpoint_entry(welcome, model)
    arch = str((entry or {}).get("arch") or "")
    table = families.get(arch)
    name = str((entry or {}).get("name") or model)
    if not isinstance(table, Mapping):  # a server that does not describe the family: a known model's own LoRAs
        loras = family_loras(caps, models, arch) if arch else everything["loras"]
        return Offers(model=name, family=arch, **{**everything, "loras": loras})
    modes = tuple(m for m in all_modes if m in (table.get("modes") or ()) or m in independent)
    sampling = tuple(table.get("sampling") or ())
    techniques = tuple(table.get("techniques") or ())
    max_controls = table.get("max_controls")
    return Offers(
        model=name,
        family=arch,
        known=True,
        modes=modes,
        control_modes=tuple(table.get("control_modes") or ()),
        control_types=tuple(table.get("control_types") or ()),
        max_controls=int(max_controls) if max_controls is not None else None,
        preprocessors=preprocessors,
        detail_targets=targets if "detail" in techniques else (),
        techniques=techniques,
        technique_modes=tuple(table.get("technique_modes") or ()),
        sampling=sampling,
        regions=bool(table.get("regions")),
        reference_types=tuple(table.get("reference_types") or ()),
        transparent=tuple(table.get("transparent") or ()),
        speed_levels=tuple(table.get("speed_levels") or ("quality",)),
        tileable=tuple(table.get("tileable") or ()) + tileable_anywhere,
        loras=family_loras(caps, models, arch),
        vaes=everything["vaes"] if "vae" in sampling else (),
        refiners=everything["refiners"] if "refiner" in sampling else (),
        upscalers=everything["upscalers"],
    )
