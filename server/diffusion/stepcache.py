"""The ``fast`` speed level: DeepCache-style reuse of a UNet's deep features on alternate steps.

Between two neighbouring denoising steps the UNet's deep blocks (every down block but the first, the mid block, every
up block but the last) change little; its outermost level (``conv_in``, the first down block, the last up block) sees
the new latents through the skip connections. So on every ``interval``-th step the UNet runs in full and the output of
each deep block is kept; on the steps between, each deep block returns its kept output without computing, and only
the outermost level runs. diffusers' own cache hooks (FirstBlockCache, FasterCache, PyramidAttentionBroadcast) work on
transformers' block lists, not on UNet2DConditionModel's down/up blocks, hence this.

The kept outputs are the UNet's own (same structure and shapes), so ControlNet residuals, IP-Adapters and regions
still apply; a call with another input shape (a hires second pass, another batch) runs in full.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List

INTERVAL = 2  # full step, reused step, full step, ...
FAMILIES = ("sd15", "sdxl")  # checkpoints of these families run UNet2DConditionModel


class DeepFeatureCache:
    """Counts the UNet's calls and decides per call whether its deep blocks compute or return what they kept."""

    def __init__(self, unet, interval: int = INTERVAL) -> None:
        if interval < 1:
            raise ValueError(f"interval must be at least 1, got {interval}")
        self.unet = unet
        self.interval = interval
        self.deep: List[object] = [
            *unet.down_blocks[1:],
            *([unet.mid_block] if unet.mid_block is not None else []),
            *unet.up_blocks[:-1],
        ]
        self.kept: Dict[int, object] = {}
        self.calls = 0
        self.reused = 0  # calls whose deep blocks were skipped
        self.reuse = False
        self._shape = None

    def _before_call(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs.get("sample")
        shape = tuple(sample.shape)
        self.reuse = self.calls % self.interval != 0 and shape == self._shape and len(self.kept) == len(self.deep)
        if not self.reuse:
            self.kept.clear()
        self._shape = shape
        self.calls += 1
        self.reused += self.reuse

    def _wrap(self, block) -> None:
        compute = block.forward

        def forward(*args, **kwargs):
            if self.reuse:
                return self.kept[id(block)]
            out = compute(*args, **kwargs)
            self.kept[id(block)] = out
            return out

        block.forward = forward

    @contextlib.contextmanager
    def applied(self) -> Iterator["DeepFeatureCache"]:
        """Reuse deep features inside the block; the UNet is as it was after it."""
        hook = self.unet.register_forward_pre_hook(self._before_call, with_kwargs=True)
        for block in self.deep:
            self._wrap(block)
        try:
            yield self
        finally:
            hook.remove()
            for block in self.deep:
                del block.forward  # the class's forward again
            self.kept.clear()


def applies_to(unet) -> bool:
    """Whether ``unet`` has the down/up block structure this cache needs (diffusers' UNet2DConditionModel)."""
    return len(getattr(unet, "down_blocks", ())) >= 2 and len(getattr(unet, "up_blocks", ())) >= 2


@contextlib.contextmanager
def maybe_applied(unet, on: bool, interval: int = INTERVAL) -> Iterator["DeepFeatureCache | None"]:
    """``DeepFeatureCache(unet).applied()`` when ``on``, else nothing."""
    if not on:
        yield None
        return
    with DeepFeatureCache(unet, interval).applied() as cache:
        yield cache
