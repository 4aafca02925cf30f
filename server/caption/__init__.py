"""Mode ``caption``: the picture (the selection's box, or the canvas) described as a prompt to start from.

A captioner of the models folder's ``captioners/`` (``models.captioners``) runs through transformers on the server's
device; the job's ``params.caption_style`` picks a sentence or comma-separated tags (``tags``). The answer is text,
not a layer: the engine returns no layers and leaves the caption in ``JobContext.text``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from protocol.errors import MODEL_NOT_FOUND, ProtocolError

from ..core import Engine, Job, JobContext, Layer
from ..imageops import flatten_over
from ..models.cache import LastLoaded
from ..models.captioners import PULL_HINT
from .tags import as_tags

KIND = "captioner"
MAX_NEW_TOKENS = 40  # a BLIP caption is about 10-20 tokens; tags read from a longer one
NUM_BEAMS = 3


def load_captioner(folder: Path, device: str = "cpu") -> Tuple[object, object]:
    """The captioning network (BLIP, from ``folder`` alone, safetensors only) on ``device`` and its processor."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as err:
        raise ProtocolError(
            MODEL_NOT_FOUND, f"the captioner in {folder} cannot be loaded: {err}", field="model"
        ) from err
    return model.to(device).eval(), processor


class _Progress:
    """A transformers stopping criterion that reports each generated token as a step (and so ends a cancelled job)."""

    def __init__(self, ctx: JobContext, start: int, total: int) -> None:
        self.ctx, self.start, self.total = ctx, start, total

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.ctx.progress(min(self.total, input_ids.shape[1] - self.start), self.total)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def picture(image: np.ndarray) -> np.ndarray:
    """What the captioner sees of an RGBA context box: the pixels over white (a transparent layer as a cut-out)."""
    white = np.full_like(image, 255)
    return np.ascontiguousarray(flatten_over(image, white)[..., :3])


class CaptionEngine(Engine):
    """Mode ``caption`` on the captioners of the model registry."""

    name = "caption"
    modes = ("caption",)

    def __init__(self, registry, device: str = "cpu") -> None:
        self.registry = registry
        self.device = device
        self._loaded: LastLoaded = LastLoaded(lambda config, device: load_captioner(config.parent, device))

    def captioner(self, name: str):
        """The captioner entry for a job's ``model`` (``""``: the first usable one); a refusal says what to pull."""
        if name:
            return self.registry.get(name, KIND)
        entries = self.registry.entries(KIND)
        usable = [e for e in entries if e.problem is None]
        if usable:
            return usable[0]
        why = "; ".join(f"'{e.name}' cannot be used: {e.problem}" for e in entries)
        folders = " or ".join(str(d / "captioners") for d in self.registry.dirs) or "the models folder's captioners/"
        raise ProtocolError(
            MODEL_NOT_FOUND,
            "describing a picture needs a captioner and none is installed"
            f"{' (' + why + ')' if why else ''}: run `{PULL_HINT}` (BLIP large, about 1.9 GB) or put a "
            f"BLIP captioning model folder in {folders}",
            field="model",
        )

    def run(self, job: Job, ctx: JobContext) -> List[Layer]:
        import torch

        if job.mode not in self.modes:
            raise self.refuse_mode(job)
        entry = self.captioner(job.model)
        ctx.progress(0, MAX_NEW_TOKENS)
        model, processor = self._loaded.get(entry.path / "config.json", self.device)
        inputs = processor(images=picture(job.image), return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        tracker = _Progress(ctx, 1, MAX_NEW_TOKENS)  # BLIP's decoder starts from one token
        with torch.inference_mode():
            ids = model.generate(
                **inputs,
                max_new_tokens=MAX_NEW_TOKENS,
                num_beams=NUM_BEAMS,
                no_repeat_ngram_size=3,
                stopping_criteria=[tracker],
            )
        sentence = " ".join(processor.decode(ids[0], skip_special_tokens=True).split())
        ctx.text = as_tags(sentence) if job.params.caption_style == "tags" else sentence
        ctx.progress(MAX_NEW_TOKENS, MAX_NEW_TOKENS)
        return []
