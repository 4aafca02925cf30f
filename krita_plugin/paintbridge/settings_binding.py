"""The panel's job settings bound to ``client.settings``: what the widgets show, what a job sends, every change
checked against the server's listing and kept in the host's configuration (``settings_store``). Without widgets and
without Krita; owned by the ``Session`` (``session.binding``) with narrow callables instead of the session: the chosen
style, the LoRA tags, "a job setting changed" (live mode), "the mode changed" (the models box) and the panel's
message line."""

from __future__ import annotations

from dataclasses import fields
from typing import Callable, List, Optional

from . import settings_store
from .guard import guarded
from .model import Event
from .styles import SHOWN_FIELDS, first_installed
from .wire import client, protocol

cs = client.settings


class SettingsBinding:
    """The job settings, the server's listing they are checked against, and ``changed(name, shown value)``."""

    def __init__(
        self,
        store: settings_store.Store,
        style: Callable[[], object],
        style_to_send: Callable[[], str],
        lora_prompt: Callable[[str], str],
        touched: Callable[[], None],
        mode_changed: Callable[[], None],
        show_message: Callable[..., None],
    ) -> None:
        self.store = store
        self.settings: cs.Settings = settings_store.load_job_settings(store)
        self.fixed_seed = settings_store.load_fixed_seed(store)
        self.defaults = cs.Defaults()
        self.models: list = []
        self.device = ""
        self.default_styles: dict = {}  # family -> the style the server suggests first (welcome.defaults.styles)
        self.capabilities: dict = {}  # welcome.capabilities: what each model family can run (``offers``)
        self._style, self._style_to_send, self._lora_prompt = style, style_to_send, lora_prompt
        self._touched, self._mode_changed, self.show_message = touched, mode_changed, show_message
        self.changed = Event()  # (name, value) a setting the widgets show changed
        self.models_changed = Event()  # () the server's listing changed

    def save(self) -> None:
        """Keep the job settings in the host's configuration."""
        settings_store.save_job_settings(self.store, self.settings)

    def keep_fixed_seed(self, seed: int) -> None:
        self.fixed_seed = int(seed)
        settings_store.save_fixed_seed(self.store, self.fixed_seed)

    def shown(self) -> cs.Settings:
        """The settings with every "default" filled from the chosen style, else from the server's ``welcome`` (what
        the widgets show)."""
        out = cs.apply_defaults(self.settings.replace(style=""), self.defaults, self.entry())
        style = self._style()
        for name in SHOWN_FIELDS if style is not None else ():
            value = getattr(style, name)
            if value not in (0, "", None) and getattr(self.settings, name) in (0, 0.0, "", None):
                setattr(out, name, value)
        out.speed = self.offers().speed_sent(self.settings.speed)  # the painter's choice ("": the style's level)
        return out

    def emit_shown(self, names) -> None:
        """Tell the widgets the shown value of each of ``names``."""
        shown = self.shown()
        for name in names:
            self.changed.emit(name, getattr(shown, name))

    def follow_style(self, name: str, style) -> None:
        """Style ``name`` was chosen: its first installed checkpoint becomes the model, its values show."""
        model = first_installed(style, [m["name"] for m in self.checkpoints()]) if style is not None else ""
        if model and model != self.settings.model:
            self.set_option("model", model)
        self.emit_shown(SHOWN_FIELDS + ("strength", "speed"))
        self.changed.emit("style", name)
        self._touched()

    def show_all(self) -> None:
        """The settings were put back whole (results history: "reuse settings"): keep them and their seed, every
        widget shows its value, live mode hears of it."""
        if self.settings.seed >= 0:
            self.keep_fixed_seed(self.settings.seed)
        self.save()
        shown = self.shown()
        for f in fields(shown):
            self.changed.emit(f.name, getattr(shown, f.name))
        self.changed.emit("random_seed", self.random_seed)
        self._touched()

    def entry(self, model: Optional[str] = None) -> Optional[dict]:
        """The listing entry of ``model`` (default: the chosen one); None when the server does not list it."""
        return cs.model_entry(self.models, self.settings.model if model is None else model)

    def job_settings(self) -> cs.Settings:
        """The settings a job sends: the chosen style (its sampling is then the server's to fill where the painter
        left the default), the prompt followed by the tags of the LoRAs picked from the list."""
        speed = self.offers().speed_sent(self.settings.speed)  # a level the model cannot run is not sent (not shown)
        return self.settings.replace(
            prompt=self._lora_prompt(self.settings.prompt), style=self._style_to_send(), speed=speed
        )

    @property
    def random_seed(self) -> bool:
        return self.settings.seed < 0

    def set(self, name: str, value) -> None:
        """Set one field (already checked); the widgets hear its shown value, live mode hears of the change."""
        if getattr(self.settings, name) != value:
            setattr(self.settings, name, value)
            self.changed.emit(name, getattr(self.shown(), name))
            self._touched()

    @guarded
    def set_mode(self, mode: str) -> None:
        """Switch to ``mode`` (generate, inpaint, img2img, outpaint, upscale, edit where the model can); the strength
        goes to its default."""
        client.modes.check_offered(mode, self.entry())
        self.settings.mode = mode
        self.changed.emit("mode", mode)
        self._mode_changed()
        self.set("strength", None)
        self.changed.emit("strength", self.shown().strength)

    @guarded
    def set_prompt(self, prompt: str, negative: Optional[str] = None) -> None:
        self.set("prompt", prompt.strip())
        if negative is not None:
            self.set("negative_prompt", negative.strip())

    @guarded
    def set_option(self, name: str, value) -> None:
        """Set one job setting by its ``Settings`` name (e.g. ``steps``, ``seed``, ``extend_left``), or
        ``random_seed`` (the seed field's "Random" box)."""
        if name == "random_seed":
            self.set("seed", -1 if value else self.fixed_seed)
            self.changed.emit("random_seed", bool(value))
            return
        if name in ("mode", "prompt", "negative_prompt") or not hasattr(self.settings, name):
            raise client.errors.JobInputError(f"unknown option {name!r}")
        client.sampling.check_choice(
            self.defaults.sampling,
            self.models,
            self.shown(),
            name,
            value,
            {
                "model": self.model_names,
                "upscaler": self.upscaler_names,
                "speed": lambda: self.offers().speed_choices(),
            },
        )
        if name == "seed":
            self.keep_fixed_seed(value)
            if self.random_seed:
                return
        current = getattr(self.settings, name)
        value = float(value) if isinstance(current, float) or name == "strength" else type(current)(value)
        self.set(name, value)
        if name == "model":  # the new model's family defaults
            for field in ("steps", "cfg", "sampler"):
                self.set(field, type(getattr(self.settings, field))())
                self.changed.emit(field, getattr(self.shown(), field))
            self.changed.emit("speed", self.shown().speed)  # the choice the new model can run
            self.leave_mode_not_offered()
        if self.settings.scheduler:  # one chosen that the sampler cannot take goes; a style's shown one stays unset
            self.set("scheduler", client.sampling.fitting_scheduler(self.defaults.sampling, self.shown()))

    def leave_mode_not_offered(self) -> None:
        if not client.modes.offered(self.settings.mode, self.entry()):  # e.g. edit, and the model cannot
            self.set_mode(client.modes.fallback_mode(self.entry()))  # inpaint, or the one mode the model runs

    # --- the server's listing -----------------------------------------------------------------------------------------
    def on_welcome(self, welcome) -> None:
        self.device = welcome.device
        self.defaults = cs.Defaults.from_welcome(welcome)
        self.default_styles = dict(welcome.defaults.get("styles") or {})
        self.capabilities = dict(welcome.capabilities)

    def take_models(self, models: list) -> None:
        """The server's model listing: a chosen model, upscaler or sampling option it no longer lists goes back to
        the default."""
        self.models = list(models or [])
        for name, choices in (
            ("model", self.model_names()),
            ("upscaler", self.upscaler_names()),
        ) + client.sampling.listed_choices(self.defaults.sampling, self.models):
            if getattr(self.settings, name) not in choices:
                self.set(name, "")

    def style_speed(self) -> str:
        """The level a job that leaves the speed to the style runs at on the chosen model: the style's, else
        ``quality`` (what the server does with ``params.speed`` ``""``)."""
        style = self._style()
        return self.offers().speed_runs("", style.speed if style is not None else "")

    def offers(self) -> "client.offers.Offers":
        """What the chosen model can run (modes, control types, techniques, detailer targets, regions, reference
        types, sampling options), from the server's capabilities and its current model listing."""
        caps = dict(self.capabilities)  # the welcome's, with the detectors the current listing holds (a pulled one)
        found = set(caps.get("detail_targets") or ()) | set(client.jobs.offered_detail_targets(self.models))
        caps["detail_targets"] = sorted(found)
        listing = protocol.Welcome(
            protocol=protocol.PROTOCOL_VERSION, server_version="", capabilities=caps, models=tuple(self.models)
        )
        return client.offers.offers(listing, self.settings.model)

    def model_names(self) -> List[str]:
        """The values the model option takes: "" (the server's default), each checkpoint, the classical engine."""
        return [""] + [m["name"] for m in self.checkpoints()] + [cs.CLASSICAL]

    def upscaler_names(self) -> List[str]:
        return [""] + [m["name"] for m in self.models if m.get("kind") == "upscaler"]

    def checkpoints(self) -> List[dict]:
        return [m for m in self.models if m.get("kind") == "checkpoint"]
