"""Speed levels a painter picks per job (``params.speed``): ``fast`` reuses the UNet's deep features on alternate
steps and runs end to end on the tiny SD1.5 (and SD1.5 inpainting) checkpoints; ``quality`` changes nothing; ``""``
(not chosen, the default) takes the style's level, else quality, and a chosen level wins over the style's; a level the
model's family does not offer is refused naming the field. Tiny random-weight models at 64 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protocol.client import JobFailed
from protocol.errors import ProtocolError
from protocol.messages import Params, parse_client_message
from protocol.styles import Style
from server.core import Job, JobContext
from server.diffusion import stepcache
from server.diffusion.engine import DiffusionEngine
from server.models.registry import ModelRegistry

S = 64
MODELS = ("sd15", "sd15-inpaint")


@pytest.fixture(scope="module")
def engine(models_dir: Path) -> DiffusionEngine:
    return DiffusionEngine(ModelRegistry([models_dir]), device="cpu", dtype="float32")


def picture() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (S, S, 4), dtype=np.uint8)
    img[..., 3] = 255
    return img


def job(mode: str = "inpaint", model: str = "tiny-sd15", **params) -> Job:
    mask = np.zeros((S, S), np.uint8)
    mask[16:48, 16:48] = 255
    return Job(
        id="s",
        mode=mode,
        model=model,
        prompt="a red apple",
        negative_prompt="",
        image=picture(),
        mask=mask if mode in ("inpaint", "outpaint") else None,
        params=Params(**{"steps": 4, "seed": 7, "strength": 1.0, **params}),
    )


class UnetCalls:
    """Forward calls of the UNet's blocks (real hooks on the loaded model)."""

    def __init__(self, unet) -> None:
        self.counts = {"unet": 0, "deep": 0, "outer": 0}
        deep = [*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1]]
        self.deep = len(deep)
        self.handles = [unet.register_forward_hook(lambda *_: self._add("unet"))]
        # a block's first resnet runs only when the block computes
        self.handles += [b.resnets[0].register_forward_pre_hook(lambda *_: self._add("deep")) for b in deep]
        self.handles.append(unet.up_blocks[-1].resnets[0].register_forward_pre_hook(lambda *_: self._add("outer")))

    def _add(self, key: str) -> None:
        self.counts[key] += 1

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize(
    "mode,model", [("inpaint", "tiny-sd15"), ("generate", "tiny-sd15"), ("inpaint", "tiny-sd15-inpaint")]
)
def test_fast_runs_end_to_end_reusing_deep_features_on_alternate_steps(engine, mode, model):
    (quality,) = engine.run(job(mode, model), JobContext())
    calls = UnetCalls(engine.checkpoint(engine.checkpoint_entry(model)).pipe.unet)
    try:
        (fast,) = engine.run(job(mode, model, speed="fast"), JobContext())
    finally:
        calls.close()
    assert fast.info["speed"] == {"level": "fast", "reused_steps": 2, "steps": 4}
    assert quality.info["speed"] == {"level": "quality"}
    # 4 steps: the outermost level ran 4 times, the deep blocks only on the 2 full steps
    assert calls.counts["unet"] == 4 and calls.counts["outer"] == 4
    assert calls.counts["deep"] == 2 * calls.deep
    diff = np.abs(fast.rgba.astype(int) - quality.rgba.astype(int))[..., :3]
    assert diff.mean() > 0  # the reuse is real: the pixels change a little
    other_seed = engine.run(job(mode, model, seed=8), JobContext())[0].rgba.astype(int)
    assert diff.mean() < np.abs(other_seed - quality.rgba.astype(int))[..., :3].mean()


def test_quality_is_what_an_unset_level_runs_and_changes_nothing(engine):
    (before,) = engine.run(job(), JobContext())
    engine.run(job(speed="fast"), JobContext())  # the UNet is as it was after a fast job
    (after,) = engine.run(job(speed="quality"), JobContext())
    assert np.array_equal(before.rgba, after.rgba)
    assert Params().speed == "" and engine.run(job(), JobContext())[0].info["speed"] == {"level": "quality"}
    unet = engine.loaded.pipe.unet
    assert all("forward" not in vars(b) for b in [*unet.down_blocks, unet.mid_block, *unet.up_blocks])


def test_a_new_shape_runs_in_full():
    """The first call of another input shape (a hires second pass) computes the deep blocks."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=4,
        attention_head_dim=2,
    ).eval()
    text = torch.randn(1, 3, 8)
    cache = stepcache.DeepFeatureCache(unet)
    with torch.inference_mode(), cache.applied():
        full = unet(torch.randn(1, 4, 8, 8), 10, text).sample
        unet(torch.randn(1, 4, 16, 16), 10, text)  # another shape: in full though it is an odd call
        assert cache.reused == 0
        unet(torch.randn(1, 4, 16, 16), 10, text)
        assert cache.reused == 0  # an even call
        x = torch.randn(1, 4, 16, 16)
        reused = unet(x, 10, text).sample
        assert cache.reused == 1
    with torch.inference_mode():
        exact = unet(x, 10, text).sample
    assert full.shape == (1, 4, 8, 8) and not torch.equal(reused, exact)


def test_a_speed_level_is_refused_where_it_is_not_offered(start_server, models_dir):
    from protocol.client import Client

    with pytest.raises(ProtocolError) as err:
        parse_client_message({"type": "job", "id": "a", "mode": "generate", "params": {"speed": "turbo"}})
    assert err.value.field == "params.speed"
    server = start_server(model_dirs=[models_dir])
    img = picture()
    mask = np.zeros((S, S), np.uint8)
    mask[8:24, 8:24] = 255
    with Client(server.url, "t") as client:
        assert client.welcome.capabilities["speed_levels"] == {"quality": ["all"], "fast": ["sd15", "sdxl"]}
        with pytest.raises(JobFailed) as failed:
            client.run(
                {
                    "mode": "inpaint",
                    "model": "classical",
                    "params": {"speed": "fast"},
                    "image": {"width": S, "height": S, "format": "rgba8", "data": img.tobytes()},
                    "mask": {"width": S, "height": S, "format": "gray8", "data": mask.tobytes()},
                },
                timeout=60,
            )
        assert failed.value.field == "params.speed" and "'fast'" in str(failed.value)


def test_a_chosen_level_wins_over_the_styles_and_an_unset_one_takes_it(start_server, models_dir, tmp_path):
    """A style that sets Fast: a job that leaves ``params.speed`` ``""`` runs fast, one that chooses ``quality`` (also
    what an older client sends by default) runs quality; without a style ``""`` runs quality. ``info.speed`` says
    which level ran."""
    from protocol.client import Client

    mask = np.zeros((S, S), np.uint8)
    mask[16:48, 16:48] = 255
    server = start_server(model_dirs=[models_dir], styles_dir=tmp_path / "styles")
    with Client(server.url, "t") as client:
        client.save_style(Style(name="draft", family="sd15", speed="fast"))

        def ran(job_id: str, style: str, **params) -> dict:
            result = client.run(
                {
                    "id": job_id,
                    "mode": "inpaint",
                    "model": "tiny-sd15",
                    "style": style,
                    "prompt": "a red apple",
                    "params": {"steps": 4, "seed": 7, "strength": 1.0, **params},
                    "image": {"width": S, "height": S, "format": "rgba8", "data": picture().tobytes()},
                    "mask": {"width": S, "height": S, "format": "gray8", "data": mask.tobytes()},
                },
                timeout=300,
            )
            return {**dict(result.info), **dict(result.layers[0].info or {})}

        unset = ran("unset", "draft")
        assert unset["speed"]["level"] == "fast" and "speed" in unset["style"]["params"]
        chosen = ran("chosen", "draft", speed="quality")
        assert chosen["speed"] == {"level": "quality"} and "speed" not in chosen["style"]["params"]
        assert ran("chosen-fast", "draft", speed="fast")["speed"]["level"] == "fast"
        assert ran("no-style", "")["speed"] == {"level": "quality"}
