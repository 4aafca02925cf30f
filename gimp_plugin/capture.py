"""One job's inputs read from a GIMP image through the client core, and its results put back; shared by the one-shot
procedures and the live dialog. What to read and send is the client core's decision (``client.jobs.capture``); this
module only says how GIMP reads a box (``GimpReader``) and where results go."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from client import docdata, jobs, regions, results
from client.errors import JobInputError
from client.modes import plan_read, rule
from client.settings import Defaults, Settings, model_entry
from protocol.geometry import Box, crop_gray
from protocol.images import RGBA8

from . import host, settings
from .argspec import ProcedureSpec
from .values import control_sources, region_binding, settings_from_values


class GimpReader:
    """``client.jobs.DocumentReader`` over a GIMP image: rgba8 pixels, the selection or a layer mask as gray8."""

    image_format = RGBA8

    def __init__(self, image, active, s: Settings, hide: Sequence[object] = ()) -> None:
        self.image, self.active, self.settings, self.hide = image, active, s, hide
        self.width, self.height = host.canvas_size(image)
        self._full_mask: Optional[bytes] = None

    def selection_bounds(self) -> Box:
        """Bounds of the mask source: the selection, or the active layer's mask (white = repaint)."""
        if self.settings.mask_source == "layer-mask":
            if self.active is None:
                raise JobInputError("Mask = Active layer's mask needs an active layer")
            self._full_mask, bounds = host.read_layer_mask(self.active, self.width, self.height)
            return bounds
        return host.selection_bounds(self.image)

    def read_mask(self, box: Box) -> bytes:
        if self._full_mask is not None:
            return crop_gray(self._full_mask, self.width, box)
        return host.read_selection(self.image, box)

    def read_image(self, box: Box) -> bytes:
        if self.settings.image_source == "layer":
            if self.active is None:
                raise JobInputError("Source = Active layer needs an active layer")
            return host.read_layer(host.layer_of(self.active), box)
        return host.read_visible(self.image, box, self.hide)

    def read_layer(self, layer: Any, box: Box) -> bytes:
        return host.read_layer(layer, box)

    def read_opacity(self, item: Any, box: Box) -> bytes:
        return host.read_opacity(item, box)


def region_sources(image, values: Dict[str, Any]) -> List[jobs.RegionSource]:
    """regions: store the run's binding on its layer or channel (when one is given), then every item of
    the image carrying a region prompt, when the run uses regions."""
    binding = region_binding(values)
    if binding is not None:
        item, region = binding
        host.save_region(item, regions.binding_to_bytes(region) if region is not None else None)
    if not values.get("use-regions", False):
        return []
    out = []
    for item in host.region_items(image):
        try:
            region = regions.binding_from_bytes(host.load_region(item))
        except docdata.DocumentDataError:
            region = None  # foreign or damaged data on a layer: not a region
        if region is not None and region.prompt:
            out.append(jobs.RegionSource(item, region.prompt, region.negative_prompt, region.strength))
    return out


def read_inputs(
    spec: ProcedureSpec, image, active, values: Dict[str, Any], hide: Sequence[object] = ()
) -> Tuple[Settings, jobs.JobInputs]:
    """The settings of a run and what the client core says to read for them, from the image's current state.
    Layers in ``hide`` are left out of the visible image (the live preview)."""
    if host.has_floating_selection(image):
        raise JobInputError("The image has a floating selection: anchor it or make it a new layer first")
    s = settings_from_values(spec, values, host.stable_id)
    reader = GimpReader(image, active, s, hide)
    inputs = jobs.capture(
        s,
        reader.selection_bounds(),
        reader.width,
        reader.height,
        reader,
        control_sources(values),
        reference_sources(image, s),
        region_sources(image, values),
    )
    return s, inputs


def reference_sources(image, s: Settings) -> Tuple[jobs.ReferenceSource, ...]:
    """The run's reference layers, each with the layer or channel of its region, found in ``image`` by
    their stable ids (the client core names what is missing)."""
    return jobs.reference_sources(
        s, lambda ident: host.layer_by_stable_id(image, ident), lambda ident: host.item_by_stable_id(image, ident)
    )


def live_state(
    spec: ProcedureSpec, image, active, values: Dict[str, Any], selection: Box, hide: Sequence[object] = ()
) -> List[object]:
    """What a live frame would read, as cheap change tokens (``host.change_token``: GIMP's thumbnails, no pixel
    read): the job's box, the selection over its bounds, the source over the box (the active layer, or every visible
    layer reaching into it except those in ``hide``: the preview), the active layer's mask when it is the mask source,
    the control layers, the reference layers and their regions, and the region layers. A part that cannot be read
    (a layer deleted meanwhile) is named by its error, which the frame's own read then reports."""
    try:
        s = settings_from_values(spec, values, host.stable_id)
        width, height = host.canvas_size(image)
        box = plan_read(s.mode, selection, width, height).box
        out: List[object] = [(box.x, box.y, box.width, box.height), host.selection_token(image, selection)]
        if s.image_source == "layer":
            out.append(host.change_token(host.layer_of(active), box) if active is not None else ())
        else:
            out.extend(host.visible_tokens(image, box, hide))
        mask = host.layer_mask_of(active) if s.mask_source == "layer-mask" else None
        if mask is not None:
            out.append(host.change_token(mask, Box(0, 0, width, height)))
        if rule(s.mode).controls:
            out.extend(host.change_token(c.layer, box) for c in control_sources(values))
            for ref in reference_sources(image, s):
                out.append(host.change_token(ref.layer, box))
                if ref.mask_layer is not None:
                    out.append(host.change_token(ref.mask_layer, box))
        if values.get("use-regions", False):
            out.extend(host.change_token(item, box) for item in host.region_items(image))
        return out
    except Exception as err:  # noqa: BLE001 - a stale layer handle: the frame's own read reports it
        return [f"{type(err).__name__}: {err}"]


def make_job(s: Settings, inputs: jobs.JobInputs, welcome: Any, job_id: str, live: bool = False):
    """The job for a run, with the defaults this server announced (``welcome``)."""
    models = list(welcome.models)
    return jobs.build_job(
        s, inputs, Defaults.from_welcome(welcome), model_entry(models, s.model), job_id=job_id, live=live
    )


def server_target(values: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """(url, token) for a run: the arguments, else the remembered ones, else the local default."""
    return settings.resolve(host.profile_dir(), str(values.get("server") or ""), str(values.get("token") or ""))


def place_results(
    spec: ProcedureSpec,
    image,
    active,
    s: Settings,
    layers: List[Any],
    welcome: Any,
    values: Dict[str, Any],
    interactive: bool = False,
):
    """Insert the results (one undo step); an upscale into a new image returns that image, else None."""
    names = names_of(spec, s, layers, welcome)
    if spec.mode == "upscale" and values.get("target") != "layer":
        new_image = host.new_image_with(image, layers, names)
        if interactive:
            host.show_image(new_image)
        return new_image
    canvas = None
    if spec.mode == "upscale":
        canvas = results.upscaled_size(*host.canvas_size(image), s.scale)
    host.insert_results(image, active, layers, names, canvas)
    return None


def names_of(spec: ProcedureSpec, s: Settings, layers: List[Any], welcome: Any) -> List[str]:
    """The result layers' names (``client.results``, with the length this server announced)."""
    return results.layer_names(spec.mode, s.prompt, layers, Defaults.from_welcome(welcome).layer_name_length)
