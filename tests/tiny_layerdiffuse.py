"""LayerDiffuse files in their published key layouts, with random weights, for the tiny SD1.5 and SDXL models:

- SD1.5 attention sharing (``layer_sd15_transparent_attn.safetensors``): ``hookers.layers.<n>.{to_q,to_k,to_v,
  to_out}_lora.0.{down,up}.weight`` and ``temporal_{n,i,q,k,v,o}.{weight,bias}`` for the 32 attentions, numbered as
  the original UNet's modules (input_blocks 1,2,4,5,7,8, output_blocks 3-11, middle_block; attn1 then attn2);
- SDXL attention patch (``layer_xl_transparent_attn.safetensors``): ``diffusion_model.<original UNet key>::lora::0``
  (up) and ``::lora::1`` (down) for every attention's q/k/v/out weight, the original key names made by
  ``ldm_layout`` from the diffusers model;
- the transparent VAE decoder (``vae_transparent_decoder.safetensors`` / ``layer_sd15_vae_transparent_decoder``):
  the real module layout with the level widths scaled down (4, 4, 8, 16, 32, 64, 64) and the real key names;
- the latent transparency encoder (``vae_transparent_encoder.safetensors`` / ``layer_sd15_vae_transparent_encoder``):
  ``blocks.<n>.weight/bias`` of its nine convolutions, widths scaled down.

The low-rank size is 4 instead of 256 (the architecture allows any)."""

from __future__ import annotations

import re
from pathlib import Path

import factory
from factory import _cached, _save_file, _torch

RANK = 4
DECODER_WIDTHS = (4, 4, 8, 16, 32, 64, 64)  # widths change where the real ones do
SD15_ORDER = (
    [f"input_blocks.{i}.1" for i in (1, 2, 4, 5, 7, 8)]
    + [f"output_blocks.{i}.1" for i in range(3, 12)]
    + ["middle_block.1"]
)


def _ldm_name(diffusers_key: str) -> str:
    """The original UNet name of a diffusers UNet key (through ``ldm_layout``, the tests' own conversion)."""
    import ldm_layout
    import torch

    return next(iter(ldm_layout.unet_to_ldm({diffusers_key: torch.zeros(1)}, 2, prefix="")))


def _attentions(unet):
    """(original name of the attention, module) for every attn1/attn2 of the UNet's transformers."""
    out = []
    for name, module in unet.named_modules():
        if re.search(r"transformer_blocks\.\d+\.attn[12]$", name):
            out.append((_ldm_name(name + ".to_q.weight")[: -len(".to_q.weight")], module))
    return out


def sd15_attention(unet, seed: int = 0, scale: float = 0.05) -> dict:
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    by_name = dict(_attentions(unet))
    state = {}
    n = 0
    for block in SD15_ORDER:
        for which in ("attn1", "attn2"):
            attn = by_name[f"{block}.transformer_blocks.0.{which}"]
            width = attn.to_k.out_features
            for name, lin in (
                ("to_q", attn.to_q),
                ("to_k", attn.to_k),
                ("to_v", attn.to_v),
                ("to_out", attn.to_out[0]),
            ):
                state[f"hookers.layers.{n}.{name}_lora.0.down.weight"] = (
                    torch.randn(RANK, lin.in_features, generator=g) * scale
                )
                state[f"hookers.layers.{n}.{name}_lora.0.up.weight"] = (
                    torch.randn(lin.out_features, RANK, generator=g) * scale
                )
            state[f"hookers.layers.{n}.temporal_n.weight"] = 1 + torch.randn(width, generator=g) * scale
            state[f"hookers.layers.{n}.temporal_n.bias"] = torch.randn(width, generator=g) * scale
            for t in ("i", "q", "k", "v", "o"):
                state[f"hookers.layers.{n}.temporal_{t}.weight"] = torch.randn(width, width, generator=g) * scale
                state[f"hookers.layers.{n}.temporal_{t}.bias"] = torch.randn(width, generator=g) * scale
            n += 1
    return state


def sdxl_attention(unet, seed: int = 0, scale: float = 0.05) -> dict:
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    state = {}
    for ldm, attn in _attentions(unet):
        for name, lin in (("to_q", attn.to_q), ("to_k", attn.to_k), ("to_v", attn.to_v), ("to_out.0", attn.to_out[0])):
            key = f"diffusion_model.{ldm}.{name}.weight"
            state[f"{key}::lora::0"] = torch.randn(lin.out_features, RANK, generator=g) * scale
            state[f"{key}::lora::1"] = torch.randn(RANK, lin.in_features, generator=g) * scale
    return state


def decoder(seed: int = 0) -> dict:
    torch = _torch()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from server.diffusion import transparent_decoder

    torch.manual_seed(seed)
    return transparent_decoder.build(DECODER_WIDTHS).state_dict()


ENCODER_CHANNELS = [4, 4, 4, 8, 8, 16, 16, 32, 32, 4]  # the real ones: 4, 32, 32, 64, 64, 128, 128, 256, 256, 4


def encoder(seed: int = 0) -> dict:
    """A latent transparency encoder in the published ``blocks.<n>`` layout (scaled-down widths)."""
    torch = _torch()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from server.diffusion import transparent_encoder

    torch.manual_seed(seed)
    net = transparent_encoder.build(ENCODER_CHANNELS)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.01)  # small offsets: the latent stays inside the VAE's spread
    return {f"blocks.{k}": v for k, v in net.state_dict().items()}


def files(arch: str) -> Path:
    """A cached ``layer_model`` folder with the family's attention file and decoder under their published names."""

    def build(tmp: Path) -> None:
        pipe = factory.build_sd15() if arch == "sd15" else factory.build_sdxl()
        if arch == "sd15":
            _save_file(sd15_attention(pipe.unet), tmp / "layer_sd15_transparent_attn.safetensors")
            _save_file(decoder(), tmp / "layer_sd15_vae_transparent_decoder.safetensors")
            _save_file(encoder(), tmp / "layer_sd15_vae_transparent_encoder.safetensors")
        else:
            _save_file(sdxl_attention(pipe.unet), tmp / "layer_xl_transparent_attn.safetensors")
            _save_file(decoder(1), tmp / "vae_transparent_decoder.safetensors")
            _save_file(encoder(1), tmp / "vae_transparent_encoder.safetensors")

    return _cached(f"layerdiffuse-{arch}-2", build)


def install(models: Path, arch: str) -> Path:
    """Copies of the family's files in ``models/layer_model/``."""
    import shutil

    target = models / "layer_model"
    target.mkdir(parents=True, exist_ok=True)
    for f in files(arch).glob("*.safetensors"):
        shutil.copyfile(f, target / f.name)
    return target
