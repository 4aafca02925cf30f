"""What the SD engine keeps loaded beside its checkpoint: up to ``MAX_CONTROLNETS_KEPT`` ControlNets, the VAE and the
SDXL refiner a job names (one each; a different choice replaces it), and the tiny VAEs of progress previews. All but
the tiny VAEs go when the checkpoint is unloaded (``forget``)."""

from __future__ import annotations

import gc
import logging
from typing import Dict, Optional, Tuple

from protocol.errors import UNSUPPORTED, ProtocolError

from ..models import loading
from ..models.registry import ModelEntry, ModelRegistry, arch_name
from . import layout
from . import tiny_vae as tiny
from .plan import LoadedUNet

log = logging.getLogger(__name__)

MAX_CONTROLNETS_KEPT = 4


class Parts:
    """The models a job adds to the loaded checkpoint, loaded once on ``device`` in ``dtype``."""

    def __init__(self, registry: ModelRegistry, device, dtype) -> None:
        self.registry, self.device, self.dtype = registry, device, dtype
        self.controlnets: Dict[str, object] = {}
        self.vae: Optional[Tuple[str, object]] = None  # (path, module) of the job-chosen VAE
        self.refiner: Optional[Tuple[str, object]] = None  # (path, pipeline) of the SDXL refiner
        self._tiny: Dict[str, object] = {}

    def forget(self) -> None:
        """The job-chosen VAE and refiner and the ControlNets go with the checkpoint."""
        self.vae = self.refiner = None
        self.controlnets.clear()

    def controlnet(self, entry: ModelEntry, unet_config=None):
        """The ControlNet of ``entry`` (fitted to ``unet_config`` when it is a single file), the oldest one dropped
        when ``MAX_CONTROLNETS_KEPT`` are loaded."""
        key = str(entry.path)
        if key not in self.controlnets:
            while len(self.controlnets) >= MAX_CONTROLNETS_KEPT:
                self.controlnets.pop(next(iter(self.controlnets)))
            allow = self.registry.allow_pickle
            net = loading.load_controlnet(entry, self.dtype, allow_pickle=allow, unet_config=unet_config)
            self.controlnets[key] = layout.convert(net.to(self.device), self.device, self.dtype)
        return self.controlnets[key]

    def use_vae(self, loaded: LoadedUNet, name: str) -> str:
        """Put the job's VAE on the loaded pipeline (``""``: the checkpoint's own); the VAE's name, "" for the own."""
        if not name:
            loaded.use_vae(loaded.own_vae)
            return ""
        entry = self.registry.get(name, "vae")
        if self.vae is None or self.vae[0] != str(entry.path):
            self.vae = None
            vae = loading.load_vae(entry, loaded.entry, self.dtype, allow_pickle=self.registry.allow_pickle)
            self.vae = (str(entry.path), layout.convert(vae.to(self.device), self.device, self.dtype))
        loaded.use_vae(self.vae[1])
        return entry.name

    def vae_key(self, vae) -> str:
        """The path of ``vae`` when it is the job-chosen VAE, "" for the checkpoint's own (cache keys)."""
        return self.vae[0] if self.vae is not None and vae is self.vae[1] else ""

    def refiner_for(self, entry: ModelEntry, name: str, controlled: bool):
        """The SDXL refiner pipeline a job names (loaded once, kept beside the checkpoint), or None."""
        if not name:
            return None
        ref = self.check_refiner(entry, name, controlled)
        if self.refiner is None or self.refiner[0] != str(ref.path):
            self.refiner = None
            gc.collect()
            pipe = loading.load_refiner(ref, self.dtype, allow_pickle=self.registry.allow_pickle)
            pipe.to(self.device)
            layout.apply(pipe, self.device, self.dtype)
            pipe.set_progress_bar_config(disable=True)
            self.refiner = (str(ref.path), pipe)
        return self.refiner[1]

    def check_refiner(self, entry: ModelEntry, name: str, controlled: bool) -> ModelEntry:
        """The installed SDXL refiner ``name`` for checkpoint ``entry``, refused by name (before anything loads) after a
        checkpoint of another family or a job with control layers."""
        if entry.arch != "sdxl":
            raise ProtocolError(
                UNSUPPORTED,
                f"the SDXL refiner '{name}' works only after an SDXL checkpoint; "
                f"'{entry.name}' is {arch_name(entry.arch)}",
                field="params.refiner",
            )
        if controlled:
            raise ProtocolError(
                UNSUPPORTED,
                f"the SDXL refiner '{name}' cannot follow a job with control layers "
                "(ControlNets): send the job without one of them",
                field="params.refiner",
            )
        return self.registry.get(name, "refiner")

    def tiny_vae(self, arch: str):
        """The tiny VAE (TAESD family) for ``arch`` from the models folders, loaded once; None when none is installed."""
        if arch not in self._tiny:
            path = tiny.find(self.registry.dirs, arch, self.registry.allow_pickle)
            vae = None
            if path is not None:
                try:
                    vae = tiny.load(path, self.device, self.dtype)
                    log.info("previews decoded by %s", path.name)
                except Exception as err:  # noqa: BLE001 - previews fall back to the linear map
                    log.warning("cannot load tiny VAE %s: %s", path, err)
            self._tiny[arch] = vae
        return self._tiny[arch]

    def few_step_preset(self, entry: ModelEntry, tags) -> Optional[dict]:
        """The few-step preset of the job's LoRAs (the first that has one), else of the checkpoint, else None."""
        for tag in tags:
            lora = self.registry.find(tag.name, "lora", entry.arch)
            if lora is not None and lora.info.get("few_step"):
                return lora.info["few_step"]
        return entry.info.get("few_step")
