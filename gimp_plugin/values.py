"""Procedure argument values → the client core's ``Settings`` and control layers (no GIMP needed).

Argument names are the PDB names (with dashes, see ``arguments``); everything about what a job reads and sends is
decided by ``client`` from these settings, the same way as in Krita.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from client.errors import JobInputError
from client.jobs import ControlSource
from client.loras import tagged
from client.regions import RegionBinding
from client.settings import ControlSetting, ReferenceSetting, Settings

from .argchoices import SAMPLER_BY_NICK, SCHEDULER_BY_NICK, SPEED_BY_NICK, SPEED_NICKS
from .args_inputs import MAX_REFERENCES, control_prefix, reference_prefix
from .args_prompt import LORA_SLOTS, lora_prefix
from .argspec import Arg, ProcedureSpec
from protocol.messages import MAX_CONTROLS
from .choices import OVERRIDE_SUFFIX, detail_targets, listed_nick, listed_value

MASK_SOURCES = {"selection": "selection", "layer-mask": "layer-mask"}


def _step_range(what: str, values: Mapping[str, Any], p: str) -> Tuple[float, float]:
    """A slot's (from, until) fractions of the steps; from after until is refused naming the slot."""
    start, end = float(values.get(f"{p}-start", 0.0)), float(values.get(f"{p}-end", 1.0))
    if start > end:
        raise JobInputError(
            f"{what}: 'from' ({start:g}) is after 'until' ({end:g}); it guides from one fraction of "
            "the steps until a later one"
        )
    return start, end


def control_sources(values: Mapping[str, Any]) -> List[ControlSource]:
    """The control slots whose layer argument is set, in order (``layer`` is the GIMP layer)."""
    out = []
    for i in range(1, MAX_CONTROLS + 1):
        p = control_prefix(i)
        layer = values.get(f"{p}-layer")
        if layer is not None:
            start, end = _step_range(f"Control {i}", values, p)
            out.append(
                ControlSource(
                    layer,
                    str(values.get(f"{p}-type") or "canny"),
                    float(values.get(f"{p}-strength", 1.0)),
                    start,
                    end,
                    preprocess=bool(values.get(f"{p}-preprocess", False)),
                )
            )
    return out


def control_settings(values: Mapping[str, Any], stable_id: Callable[[Any], str] = str) -> Tuple[ControlSetting, ...]:
    """The control slots whose layer argument is set, in order, as the client's settings (the layer by its stable
    id; kept with the job so that "reuse settings" refills the slots)."""
    return tuple(
        ControlSetting(stable_id(c.layer), c.type, c.strength, c.start, c.end, c.preprocess)
        for c in control_sources(values)
    )


def reference_settings(
    values: Mapping[str, Any], stable_id: Callable[[Any], str] = str
) -> Tuple[ReferenceSetting, ...]:
    """The reference slots whose layer argument is set, in order, as the client's settings: the layer and
    the region (a layer or channel; none = the whole image) by their stable ids (``stable_id``; GIMP: the tattoo)."""
    out = []
    for i in range(1, MAX_REFERENCES + 1):
        p = reference_prefix(i)
        layer = values.get(f"{p}-layer")
        if layer is None:
            continue
        start, end = _step_range(f"Reference {i}", values, p)
        region = values.get(f"{p}-region")
        out.append(
            ReferenceSetting(
                stable_id(layer),
                str(values.get(f"{p}-type") or "content"),
                float(values.get(f"{p}-strength", 1.0)),
                start,
                end,
                region="" if region is None else stable_id(region),
            )
        )
    return tuple(out)


def sampler_of(nick: Any) -> str:
    """The protocol's sampler name for a choice nick ("default" = the model family's default, "")."""
    nick = str(nick or "default")
    if nick != "default" and nick not in SAMPLER_BY_NICK:
        raise JobInputError(f"Unknown sampler {nick!r}; choose one of: default, {', '.join(SAMPLER_BY_NICK)}")
    return SAMPLER_BY_NICK.get(nick, "")


def scheduler_of(nick: Any) -> str:
    """The protocol's schedule name for a choice nick ("default" = the sampler's own, "")."""
    nick = str(nick or "default")
    if nick != "default" and nick not in SCHEDULER_BY_NICK:
        raise JobInputError(f"Unknown schedule {nick!r}; choose one of: default, {', '.join(SCHEDULER_BY_NICK)}")
    return SCHEDULER_BY_NICK.get(nick, "")


def speed_of(nick: Any) -> str:
    """The protocol's speed level for a choice nick (none: ``style``, the style's level: ``""``)."""
    nick = str(nick or "style")
    if nick not in SPEED_BY_NICK:
        raise JobInputError(f"Unknown speed {nick!r}; choose one of: {', '.join(SPEED_BY_NICK)}")
    return SPEED_BY_NICK[nick]


def settings_from_values(
    spec: ProcedureSpec, values: Mapping[str, Any], stable_id: Callable[[Any], str] = str
) -> Settings:
    """The client ``Settings`` of one procedure run (arguments a procedure lacks keep the client's defaults).
    ``stable_id`` names a layer or channel argument for the settings (GIMP: ``host.stable_id``, the tattoo)."""
    names = {arg.name for arg in spec.args}
    s = Settings(mode=spec.mode)

    def text(name: str) -> str:
        return str(values.get(name) or "").strip()

    def listed(name: str) -> str:  # a model-like choice, or the name typed into its override
        return listed_value(spec.arg(name).listing, values.get(name), values.get(name + OVERRIDE_SUFFIX))

    s.model = listed("model") if "model" in names else ""
    s.style = listed("style") if "style" in names else ""
    s.prompt, s.negative_prompt = text("prompt"), text("negative-prompt")
    slots = [p for p in map(lora_prefix, range(1, LORA_SLOTS + 1)) if p in names]
    try:  # the picked LoRAs travel as tags after the prompt; one typed into the prompt wins
        s.prompt = tagged(s.prompt, [(listed(p), float(values.get(p + "-weight", 1.0))) for p in slots])
    except ValueError as err:
        raise JobInputError(str(err)) from None
    for name in ("steps", "seed", "batch", "grow", "feather"):
        if name in names:
            setattr(s, name, int(values[name]))
    if "strength" in names:
        s.strength = float(values["strength"])
    if "cfg" in names:
        s.cfg = float(values["cfg"])
    if "sampler" in names:
        s.sampler = sampler_of(values["sampler"])
    if "speed" in names:
        s.speed = speed_of(values["speed"])
    if "fill" in names:
        s.fill = str(values["fill"])
    if "color-match" in names:  # fills
        s.color_match = bool(values["color-match"])
    if "tileable" in names:  # seamless textures
        s.tileable = bool(values["tileable"])
    if "source" in names:
        s.image_source = str(values["source"] or "visible")
    if "mask-source" in names:
        s.mask_source = MASK_SOURCES.get(str(values["mask-source"]), "selection")
    if spec.mode == "outpaint":
        amount = int(values.get("extend", 0))
        for side in ("left", "top", "right", "bottom"):
            setattr(s, f"extend_{side}", amount if values.get(f"extend-{side}") else 0)
    if spec.mode == "upscale":
        s.scale = float(values["scale"])
        s.upscaler = listed("upscaler")
        s.refine = float(values.get("refine", 0.0))
    if "layer-count" in names:  # picture into layers
        s.layer_count = int(values["layer-count"])
    if spec.mode == "preprocess":
        s.preprocessor = str(values["preprocessor"])
        s.low_threshold, s.high_threshold = int(values["low-threshold"]), int(values["high-threshold"])
    # sampling
    if "scheduler" in names:
        s.scheduler = scheduler_of(values["scheduler"])
    for name in ("batch-count", "clip-skip"):
        if name in names:
            setattr(s, name.replace("-", "_"), int(values[name]))
    if "vae" in names:
        s.vae = listed("vae")
    if "refiner" in names:
        s.refiner, s.refiner_start = listed("refiner"), float(values.get("refiner-start", 0.8))
    if "hires" in names:  # hires fix
        s.hires, s.hires_upscaler = bool(values["hires"]), listed("hires-upscaler") or "latent"
        s.hires_strength, s.hires_steps = float(values["hires-strength"]), int(values["hires-steps"])
        s.hires_scale = float(values["hires-scale"])
    if "detail-strength" in names:  # detailer: after the job when switched on; mode detail always
        s.detail = bool(values.get("detail", False))
        s.detail_prompt, s.detail_negative_prompt = text("detail-prompt"), text("detail-negative-prompt")
        s.detail_strength, s.detail_steps = float(values["detail-strength"]), int(values["detail-steps"])
        s.detail_padding, s.detail_confidence = int(values["detail-padding"]), float(values["detail-confidence"])
        s.detail_separate = bool(values["detail-separate"])
        s.detail_targets = detail_targets(values.get("detail-targets"))
    if "transparent" in names:  # transparent layers (LayerDiffuse)
        s.transparent = bool(values["transparent"])
    if "caption-style" in names:  # prompt from the picture
        s.caption_style, s.captioner = str(values["caption-style"] or "sentence"), text("captioner")
    if "reference-layer" in names:  # reference images
        s.references = reference_settings(values, stable_id)
    if "control-layer" in names:
        s.controls = control_settings(values, stable_id)
    if spec.live:
        s.batch = 1
        s.batch_count = 1
    return s


# regions
def region_binding(values: Mapping[str, Any]) -> Any:
    """(item, RegionBinding or None) when the run binds a prompt to a layer or channel (an empty prompt removes the
    item's region), else None."""
    item = values.get("region-layer")
    if item is None:
        return None
    prompt = str(values.get("region-prompt") or "").strip()
    if not prompt:
        return item, None
    return item, RegionBinding("", prompt, str(values.get("region-negative-prompt") or "").strip())


def values_from_settings(spec: ProcedureSpec, s: Settings) -> Dict[str, Any]:
    """Argument values of ``spec`` that make ``settings_from_values`` give ``s`` back (results history: "reuse
    settings"), every slot included: layer and channel arguments (control and reference layers, regions) hold the
    stable ids the settings keep (``resolve_items`` finds them in the image); model-like choices hold the model's
    name as the nick (``place_unlisted`` moves a name the choice does not offer to the override). Arguments ``s``
    has nothing for (server, token, region binding) are left out."""
    names = {arg.name for arg in spec.args}
    nick_of = {name: nick for nick, name in SAMPLER_BY_NICK.items()}
    schedule_of = {name: nick for nick, name in SCHEDULER_BY_NICK.items()}
    out: Dict[str, Any] = {
        "prompt": s.prompt,
        "negative-prompt": s.negative_prompt,
        "steps": s.steps,
        "seed": s.seed,
        "batch": s.batch,
        "grow": s.grow,
        "feather": s.feather,
        "cfg": s.cfg,
        "sampler": nick_of.get(s.sampler, "default"),
        "speed": SPEED_NICKS.get(s.speed, "style"),
        "fill": s.fill,
        "color-match": s.color_match,
        "source": s.image_source,
        "mask-source": s.mask_source,
        "scale": s.scale,
        "refine": s.refine,
        "preprocessor": s.preprocessor,
        "low-threshold": s.low_threshold,
        "high-threshold": s.high_threshold,
        "scheduler": schedule_of.get(s.scheduler, "default"),
        "batch-count": s.batch_count,
        "clip-skip": s.clip_skip,
        "refiner-start": s.refiner_start,
        "hires": s.hires,
        "hires-strength": s.hires_strength,
        "hires-steps": s.hires_steps,
        "hires-scale": s.hires_scale,
        "detail": s.detail,
        "detail-prompt": s.detail_prompt,
        "detail-negative-prompt": s.detail_negative_prompt,
        "detail-strength": s.detail_strength,
        "detail-steps": s.detail_steps,
        "detail-padding": s.detail_padding,
        "detail-confidence": s.detail_confidence,
        "detail-separate": s.detail_separate,
        "detail-targets": {"hand": "hand", "face,hand": "face-hand"}.get(s.detail_targets, "face"),
        "tileable": s.tileable,
        "transparent": s.transparent,
    }
    for name, value in (
        ("model", s.model),
        ("style", s.style),
        ("vae", s.vae),
        ("refiner", s.refiner),
        ("upscaler", s.upscaler),
        ("hires-upscaler", s.hires_upscaler),
    ):
        if name in names:
            out[name] = listed_nick(spec.arg(name).listing, value)
            out[name + OVERRIDE_SUFFIX] = ""
    if s.strength is not None:
        out["strength"] = s.strength
    sides = {side: getattr(s, f"extend_{side}") for side in ("left", "top", "right", "bottom")}
    out["extend"] = max(sides.values())
    out.update({f"extend-{side}": amount > 0 for side, amount in sides.items()})
    for i in range(1, MAX_CONTROLS + 1):  # every slot: the kept ones, the rest off
        c = s.controls[i - 1] if i <= len(s.controls) else ControlSetting("")
        p = control_prefix(i)
        out.update(
            {
                f"{p}-layer": c.layer or None,
                f"{p}-type": c.type,
                f"{p}-strength": c.strength,
                f"{p}-start": c.start,
                f"{p}-end": c.end,
                f"{p}-preprocess": c.preprocess,
            }
        )
    for i in range(1, MAX_REFERENCES + 1):
        r = s.references[i - 1] if i <= len(s.references) else ReferenceSetting("")
        p = reference_prefix(i)
        out.update(
            {
                f"{p}-layer": r.layer or None,
                f"{p}-type": r.type,
                f"{p}-strength": r.strength,
                f"{p}-start": r.start,
                f"{p}-end": r.end,
                f"{p}-region": r.region or None,
            }
        )
    return {name: value for name, value in out.items() if name in names}


def place_unlisted(
    spec: ProcedureSpec, values: Mapping[str, Any], offered: Callable[[Arg], Sequence[str]]
) -> Dict[str, Any]:
    """``values`` with each model-like choice whose nick the choice does not offer (``offered``: its nicks now)
    turned into its default entry plus the name in its override ``<argument>-name``, which wins."""
    out = dict(values)
    for arg in spec.args:
        if arg.kind != "model" or arg.name not in out:
            continue
        nick = str(out[arg.name] or "")
        if nick and nick not in offered(arg):
            out[arg.name] = arg.default
            out[arg.name + OVERRIDE_SUFFIX] = nick
    return out


def resolve_items(
    spec: ProcedureSpec, values: Mapping[str, Any], find_layer: Callable[[str], Any], find_item: Callable[[str], Any]
) -> Tuple[Dict[str, Any], List[str]]:
    """``values`` with the stable ids of layer arguments replaced by the image's layers (``find_layer``) and of
    layer-or-channel arguments by its items (``find_item``); (values, the labels of arguments whose item the image
    no longer has: left empty)."""
    out, missing = dict(values), []
    for arg in spec.args:
        if arg.kind not in ("layer", "drawable") or arg.name not in out:
            continue
        ident = out[arg.name]
        if ident is None:
            continue
        found = (find_layer if arg.kind == "layer" else find_item)(str(ident))
        out[arg.name] = found
        if found is None:
            missing.append(arg.label.replace("_", ""))
    return out, missing


# --- "reuse settings" from the results history: values waiting for the mode's next dialog ----------------------------

REUSE_FILE = "paintbridge-reuse.json"


def save_reuse(profile: Path, procedure: str, values: Mapping[str, Any]) -> None:
    """Keep ``values`` for the next interactive run of ``procedure`` (its dialog opens with them)."""
    Path(profile).mkdir(parents=True, exist_ok=True)
    (Path(profile) / REUSE_FILE).write_text(
        json.dumps({"procedure": procedure, "values": dict(values)}), encoding="utf-8"
    )


def take_reuse(profile: Path, procedure: str) -> Dict[str, Any]:
    """The values kept for ``procedure`` (then forgotten), or {} when none are."""
    path = Path(profile) / REUSE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("procedure") != procedure or not isinstance(data.get("values"), dict):
        return {}
    path.unlink()
    return dict(data["values"])


# --- prompt from the picture: the last Describe's words, waiting for the next run's prompt ---------------------------

DESCRIPTION_FILE = "paintbridge-description.json"


def save_description(profile: Path, text: str) -> None:
    """Keep the words of a Describe run for the prompt of the next run that takes them."""
    Path(profile).mkdir(parents=True, exist_ok=True)
    (Path(profile) / DESCRIPTION_FILE).write_text(json.dumps({"prompt": text}), encoding="utf-8")


def take_description(profile: Path) -> str:
    """The words kept by the last Describe (then forgotten), or "" when none wait."""
    path = Path(profile) / DESCRIPTION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    path.unlink()
    text = data.get("prompt") if isinstance(data, dict) else None
    return " ".join(text.split()) if isinstance(text, str) else ""
