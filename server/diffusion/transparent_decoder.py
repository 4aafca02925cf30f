"""LayerDiffuse's transparent VAE decoder: the VAE's decoded RGB and the latent in, straight RGB and alpha out.

The network is a UNet of seven levels (plain ones, then three with self-attention) over the decoded picture, with the
latent (divided by the VAE's scaling factor) added through a 1x1 convolution at the level whose resolution is the
latent's (three halvings down). It is built here from diffusers' UNet blocks in the module layout of the published
``vae_transparent_decoder.safetensors`` (SDXL) and ``layer_sd15_vae_transparent_decoder.safetensors`` (SD1.5), so
their tensors load by name; the widths are read from the file (the published ones are 32, 32, 64, 128, 256, 512, 512).
Output channel 0 is the alpha, 1-3 the colour, both in 0..1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

LEVELS = 7
ATTENTION_FROM = 4  # levels 4-6 (and their mirrors) carry self-attention
LATENT_LEVEL = 3  # the latent joins before this level: three halvings down, the latent's resolution
NORM_GROUPS = 4
HEAD_DIM = 8
MULTIPLE = 2 ** (LEVELS - 1)  # px: the sizes the decoder takes (latents come in multiples of 8 px)
# tensor names of older diffusers attention blocks → today's
_OLD_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def widths(state: Dict[str, "object"]) -> Tuple[int, ...]:
    """The seven level widths of a decoder's state dict (from each level's first convolution)."""
    try:
        return tuple(int(state[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(LEVELS))
    except KeyError as err:
        raise ValueError(f"not a LayerDiffuse transparent decoder: {err.args[0]} is missing") from None


def build(width: Tuple[int, ...]):
    """An untrained decoder of level widths ``width`` (torch module; ``forward(pixels, latent)``)."""
    import torch
    from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block

    class TransparentDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            common = dict(
                resnet_eps=1e-5,
                resnet_act_fn="silu",
                resnet_groups=NORM_GROUPS,
                attention_head_dim=HEAD_DIM,
                resnet_time_scale_shift="default",
                dropout=0.0,
                temb_channels=None,
            )
            self.conv_in = torch.nn.Conv2d(3, width[0], kernel_size=3, padding=1)
            self.latent_conv_in = torch.nn.Conv2d(4, width[2], kernel_size=1)
            self.down_blocks = torch.nn.ModuleList()
            for i in range(LEVELS):
                kind = "AttnDownBlock2D" if i >= ATTENTION_FROM else "DownBlock2D"
                self.down_blocks.append(
                    get_down_block(
                        kind,
                        num_layers=2,
                        in_channels=width[max(0, i - 1)],
                        out_channels=width[i],
                        add_downsample=i < LEVELS - 1,
                        downsample_padding=1,
                        downsample_type="conv",
                        **common,
                    )
                )
            self.mid_block = UNetMidBlock2D(
                in_channels=width[-1],
                temb_channels=None,
                dropout=0.0,
                resnet_eps=1e-5,
                resnet_act_fn="silu",
                output_scale_factor=1,
                resnet_time_scale_shift="default",
                attention_head_dim=HEAD_DIM,
                resnet_groups=NORM_GROUPS,
                attn_groups=None,
                add_attention=True,
            )
            rev = list(reversed(width))
            self.up_blocks = torch.nn.ModuleList()
            for i in range(LEVELS):
                kind = "AttnUpBlock2D" if i < LEVELS - ATTENTION_FROM else "UpBlock2D"
                self.up_blocks.append(
                    get_up_block(
                        kind,
                        num_layers=3,
                        in_channels=rev[min(i + 1, LEVELS - 1)],
                        out_channels=rev[i],
                        prev_output_channel=rev[max(0, i - 1)],
                        add_upsample=i < LEVELS - 1,
                        upsample_type="conv",
                        **common,
                    )
                )
            self.conv_norm_out = torch.nn.GroupNorm(num_channels=width[0], num_groups=NORM_GROUPS, eps=1e-5)
            self.conv_act = torch.nn.SiLU()
            self.conv_out = torch.nn.Conv2d(width[0], 4, kernel_size=3, padding=1)

        def forward(self, pixels, latent):
            joined = self.latent_conv_in(latent)
            h = self.conv_in(pixels)
            skips = [h]
            for i, block in enumerate(self.down_blocks):
                if i == LATENT_LEVEL:
                    h = h + joined
                h, res = block(hidden_states=h, temb=None)
                skips.extend(res)
            h = self.mid_block(h, None)
            for block in self.up_blocks:
                n = len(block.resnets)
                h, skips = block(h, tuple(skips[-n:]), None), skips[:-n]
            return self.conv_out(self.conv_act(self.conv_norm_out(h)))

    return TransparentDecoder()


def load(path: Path, device: str = "cpu"):
    """The decoder of the safetensors file ``path`` (float32, eval mode) on ``device``."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    for old, new in _OLD_ATTENTION.items():
        state = {k.replace(old, new): v for k, v in state.items()}
    model = build(widths(state))
    model.load_state_dict(state, strict=True)
    return model.float().eval().to(device)


# the eight orientations (flip, quarter turns) whose median is the decoder's answer, as LayerDiffuse reads it
ORIENTATIONS: List[Tuple[bool, int]] = [(flip, turns) for flip in (False, True) for turns in range(4)]


def decode(model, pixels, latent, augment: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Colour (N x H x W x 3 float 0..1) and alpha (N x H x W) for the VAE's decoded ``pixels`` (N x 3 x H x W, 0..1,
    H and W multiples of 8) and the unscaled ``latent`` (N x 4 x H/8 x W/8); ``augment`` takes the median over the
    eight orientations."""
    import torch

    pixels = pixels.to(next(model.parameters()))
    latent = latent.to(pixels)
    height, width = pixels.shape[-2:]
    extra_h, extra_w = -height % MULTIPLE, -width % MULTIPLE  # six halvings: padded to 64 px, cut back after
    if extra_h or extra_w:
        pixels = torch.nn.functional.pad(pixels, (0, extra_w, 0, extra_h), mode="replicate")
        latent = torch.nn.functional.pad(latent, (0, extra_w // 8, 0, extra_h // 8), mode="replicate")
    answers = []
    with torch.inference_mode():
        for flip, turns in ORIENTATIONS if augment else ORIENTATIONS[:1]:
            p, z = (torch.flip(pixels, dims=(3,)), torch.flip(latent, dims=(3,))) if flip else (pixels, latent)
            y = model(torch.rot90(p, turns, dims=(2, 3)), torch.rot90(z, turns, dims=(2, 3))).clamp(0, 1)
            y = torch.rot90(y, -turns, dims=(2, 3))
            answers.append(torch.flip(y, dims=(3,)) if flip else y)
        y = torch.median(torch.stack(answers), dim=0).values if len(answers) > 1 else answers[0]
    y = y[..., :height, :width].float().cpu().numpy()
    return np.moveaxis(y[:, 1:4], 1, -1), y[:, 0]
