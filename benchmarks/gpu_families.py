"""Flux.1, SD3.5, Flux.2 Klein, Z-Image, Chroma and Qwen-Image on a lent GPU: the server vs plain diffusers, load time, seconds
per step and peak memory per mode.

    .venv/bin/python benchmarks/gpu_families.py               # real-size random Flux.1 dev, SD3.5 medium, Klein 4B,
                                                              # Z-Image Turbo
    .venv/bin/python benchmarks/gpu_families.py --cpu-smoke   # tiny models at 64 px on the CPU: seconds (run by tests)
    .venv/bin/python benchmarks/gpu_families.py --meta        # the real sizes built on the meta device: parameters

Builds each real-size pipeline with random weights on the GPU from the server's shipped configs (no download) and
saves it as a diffusers folder; then, for each family, runs generate, img2img, inpaint and generate with a ControlNet
(``control``: a random ControlNet of the family's width, Flux as a union model) through the server (in this process,
jobs over the websocket) and through plain diffusers (``from_pretrained`` + ``.to(device)``, the same arguments), one
after the other with the memory freed between them; Flux.1 Kontext's instruction ``edit`` runs on the same random
Flux weights (a Kontext folder linking the dev folder's parts); Flux.2 Klein runs generate, img2img, inpaint and
edit with two reference images, Z-Image generate, img2img and inpaint (their Qwen tokenizer, not shipped, is the
tests' small byte-level one), Chroma generate, img2img and inpaint with real CFG, Qwen-Image generate, img2img and inpaint. Prints load seconds, seconds per step and the
allocator's peak memory of each side, and the server's memory placement. With ``--families sd35-large`` (or
flux-schnell, qwen-image, qwen-image-edit-plus ...) other shipped variants run; Qwen-Image (bf16 fits an 80 GB GPU whole;
the server's placement says when it offloads) runs with true CFG on both sides and a byte-level stand-in tokenizer.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a lighthouse on a cliff at sunset, oil painting"
MODES = {
    "flux": ("generate", "img2img", "inpaint", "control"),
    "sd3": ("generate", "img2img", "inpaint", "control"),
    "flux-kontext": ("edit",),
    "flux2-klein": ("generate", "img2img", "inpaint", "edit"),
    "z-image": ("generate", "img2img", "inpaint"),
    "chroma": ("generate", "img2img", "inpaint"),
    "qwen-image": ("generate", "img2img", "inpaint"),
    "qwen-image-edit-plus": ("edit",),
}
PLAIN = {
    "flux": {
        "generate": "FluxPipeline",
        "img2img": "FluxImg2ImgPipeline",
        "inpaint": "FluxInpaintPipeline",
        "control": "FluxControlNetPipeline",
    },
    "sd3": {
        "generate": "StableDiffusion3Pipeline",
        "img2img": "StableDiffusion3Img2ImgPipeline",
        "inpaint": "StableDiffusion3InpaintPipeline",
        "control": "StableDiffusion3ControlNetPipeline",
    },
    "flux-kontext": {"generate": "FluxKontextPipeline", "edit": "FluxKontextPipeline"},
    "flux2-klein": {
        "generate": "Flux2KleinPipeline",
        "img2img": "Flux2KleinInpaintPipeline",
        "inpaint": "Flux2KleinInpaintPipeline",
        "edit": "Flux2KleinPipeline",
    },
    "z-image": {"generate": "ZImagePipeline", "img2img": "ZImageImg2ImgPipeline", "inpaint": "ZImageInpaintPipeline"},
    "chroma": {"generate": "ChromaPipeline", "img2img": "ChromaImg2ImgPipeline", "inpaint": "ChromaInpaintPipeline"},
    "qwen-image": {
        "generate": "QwenImagePipeline",
        "img2img": "QwenImageImg2ImgPipeline",
        "inpaint": "QwenImageInpaintPipeline",
    },
    "qwen-image-edit-plus": {"generate": "QwenImageEditPlusPipeline", "edit": "QwenImageEditPlusPipeline"},
}
# distilled Klein and Z-Image Turbo run without CFG; Chroma with real CFG (two passes a step); the others at 3.5
CFG = {"flux2-klein": 1.0, "z-image": 0.0, "chroma": 3.0}
TRUE_CFG = ("qwen-image", "qwen-image-edit-plus")  # cfg is true guidance: two passes a step, negative prompt " "
CONTROLNET_LAYERS = {"flux": (5, 10), "sd3": (6, 0)}  # (joint, single) blocks: InstantX's Flux union, SD3 ControlNets


def peak_gib(reset: bool = False) -> float:
    """The CUDA allocator's peak in GiB (resident peak of the process on a CPU)."""
    import torch

    if torch.cuda.is_available():
        value = torch.cuda.max_memory_allocated() / 2**30
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return value
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def free_memory() -> None:
    """Between the sides on a GPU: the allocator's cache emptied, so that each side's peak is its own. On a CPU
    nothing is collected: the peak read there (``peak_gib``) is the process's high-water mark, which no collection
    lowers, while a full collection of a large process (the tests') takes a few tenths of a second each time."""
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def picture(size: int):
    y, x = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 0] = (x * 255 // size).astype(np.uint8)
    img[..., 1] = (y * 255 // size).astype(np.uint8)
    img[..., 2] = ((np.sin(x / 17.0) + 1) * 127).astype(np.uint8)
    img[..., 3] = 255
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : size * 3 // 4, size // 4 : size * 3 // 4] = 255
    return img, mask


def family_of(config: str) -> str:
    """The family of a shipped config folder's name."""
    if config.startswith("qwen"):
        return "qwen-image-edit-plus" if "edit" in config else "qwen-image"
    for prefix in ("sd3", "flux2-klein", "z-image", "chroma"):
        if config.startswith(prefix):
            return prefix
    return "flux"


def build_parts(config: str, device: str, dtype) -> dict:
    """The real-size modules of the shipped ``config`` with random weights, built on ``device`` ("meta": no memory)."""
    import diffusers
    import torch
    import transformers

    from server.models.loading import CONFIGS_DIR

    folder = CONFIGS_DIR / config
    index = json.loads((folder / "model_index.json").read_text())
    parts = {}
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            for sub, value in index.items():
                if (
                    sub.startswith(("_", "tokenizer"))
                    or sub in ("scheduler", "processor")
                    or not isinstance(value, list)
                ):
                    continue
                lib, cls_name = value
                cls = getattr(diffusers if lib == "diffusers" else transformers, cls_name)
                if lib == "diffusers":
                    parts[sub] = cls.from_config(json.loads((folder / sub / "config.json").read_text()))
                else:
                    parts[sub] = cls(cls.config_class.from_json_file(str(folder / sub / "config.json")))
    finally:
        torch.set_default_dtype(default)
    return parts


def random_folder(config: str, dest: Path, device: str, dtype) -> Path:
    """A real-size pipeline of the shipped ``config`` (flux-dev, sd35-medium, flux2-klein-4b, ...) with random
    weights, built on ``device`` and saved as a diffusers folder."""
    import diffusers

    from server.families import loading
    from server.models.loading import CONFIGS_DIR

    folder = CONFIGS_DIR / config
    index = json.loads((folder / "model_index.json").read_text())
    parts = build_parts(config, device, dtype)
    parts["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder), subfolder="scheduler")
    family = family_of(config)
    parts.update(loading.tokenizers(family))
    if family in TRUE_CFG:  # Qwen-Image's 151k-token tokenizer is not shipped: a byte-level stand-in
        import tiny_qwen

        parts["tokenizer"] = tiny_qwen.tokenizer()
        if "processor" in index:
            parts["processor"] = tiny_qwen.processor(parts["tokenizer"])
    if family in ("flux2-klein", "z-image"):  # the Qwen tokenizer is not shipped: the tests' byte-level one
        import tiny_klein

        parts["tokenizer"] = tiny_klein.tokenizer()
    if family == "flux2-klein":
        parts["is_distilled"] = index.get("is_distilled", True)
    pipe = getattr(diffusers, index["_class_name"])(**parts)
    out = dest / f"random-{config}"
    pipe.save_pretrained(out, safe_serialization=True)
    del pipe, parts
    free_memory()
    return out


def edges(size: int) -> np.ndarray:
    """A control layer: white lines on black."""
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 3] = 255
    img[:: max(4, size // 16), :, :3] = 255
    img[:, :: max(4, size // 12), :3] = 255
    return img


def kontext_folder(dev: Path) -> Path:
    """A Flux.1 Kontext diffusers folder on the weights of a Flux.1 dev folder (same architecture): links to its
    parts and a model_index naming FluxKontextPipeline."""
    out = dev.with_name(dev.name.replace("dev", "kontext") if "dev" in dev.name else dev.name + "-kontext")
    if out.name == dev.name or "kontext" not in out.name:
        out = dev.with_name("random-flux-kontext")
    out.mkdir(exist_ok=True)
    index = json.loads((dev / "model_index.json").read_text())
    index["_class_name"] = "FluxKontextPipeline"
    for key in ("image_encoder", "feature_extractor"):
        index.setdefault(key, [None, None])
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    for sub in dev.iterdir():
        if sub.is_dir() and not (out / sub.name).exists():
            (out / sub.name).symlink_to(sub, target_is_directory=True)
    return out


def random_controlnet(folder: Path, family: str, dest: Path, device: str, dtype) -> Path:
    """A random ControlNet (diffusers folder) of the width of ``folder``'s transformer: a Flux union ControlNet of
    InstantX's size, or an SD3 ControlNet of 6 blocks."""
    import diffusers
    import torch

    t = json.loads((folder / "transformer" / "config.json").read_text())
    joint, single = CONTROLNET_LAYERS[family]
    if family == "flux":
        keep = (
            "patch_size",
            "in_channels",
            "attention_head_dim",
            "num_attention_heads",
            "joint_attention_dim",
            "pooled_projection_dim",
            "guidance_embeds",
            "axes_dims_rope",
        )
        config = dict({k: t[k] for k in keep if k in t}, num_layers=joint, num_single_layers=single, num_mode=10)
        cls, name = diffusers.FluxControlNetModel, f"{folder.name}-controlnet-union"
    else:
        keep = (
            "sample_size",
            "patch_size",
            "in_channels",
            "attention_head_dim",
            "num_attention_heads",
            "joint_attention_dim",
            "caption_projection_dim",
            "pooled_projection_dim",
            "out_channels",
            "pos_embed_max_size",
            "qk_norm",
            "dual_attention_layers",
        )
        config = dict({k: t[k] for k in keep if k in t}, num_layers=joint)
        config["dual_attention_layers"] = [i for i in config.get("dual_attention_layers") or () if i < joint]
        cls, name = diffusers.SD3ControlNetModel, f"{folder.name}-controlnet-canny"
    torch.manual_seed(1)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            net = cls.from_config(config)
    finally:
        torch.set_default_dtype(default)
    out = dest / "controlnet" / name
    net.save_pretrained(out, safe_serialization=True)
    del net
    free_memory()
    return out


def server_side(models: Path, name: str, family: str, size: int, steps: int, device: str, dtype: str) -> dict:
    """Load seconds, then seconds per step and peak memory per mode, through the real server."""
    from protocol import Limits
    from protocol.client import Client
    from server.app import ServerThread
    from server.config import ServerConfig

    image, mask = picture(size)

    def payload(a):
        return {
            "width": a.shape[1],
            "height": a.shape[0],
            "format": "gray8" if a.ndim == 2 else "rgba8",
            "data": a.tobytes(),
        }

    # on a GPU the server runs on its defaults: the dtype is its own choice (bf16 for these families), checked here
    thread = ServerThread(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            model_dirs=[models],
            limits=Limits(),
            device=device,
            dtype=None if device == "cuda" else dtype,
        )
    ).start()
    out: dict = {}
    try:
        with Client(thread.url, client_name="gpu-families") as client:
            engine = thread.server.router.engine("families")
            chosen = str(engine.dtype).replace("torch.", "")
            print(
                f"server dtype for {family} ({client.welcome.dtypes.get('source')}): {chosen}"
                f"{'' if chosen == dtype else f' (EXPECTED {dtype})'}",
                flush=True,
            )
            started = time.perf_counter()
            engine.warm_up(name)
            out["load"] = time.perf_counter() - started
            peak_gib(reset=True)
            for mode in MODES[family]:
                msg = {
                    "mode": "generate" if mode == "control" else mode,
                    "model": name,
                    "prompt": PROMPT,
                    "params": {"steps": steps, "seed": 1, "strength": 1.0, "cfg": CFG.get(family, 3.5)},
                }
                if mode == "edit" and family == "flux2-klein":  # two reference images beside the picture
                    msg["references"] = [{"image": payload(np.ascontiguousarray(image[::-1]))}] * 2
                if mode != "control":
                    msg["image"] = payload(image)
                else:
                    msg["params"].update(width=size, height=size)
                    msg["controls"] = [{"type": "canny", "image": payload(edges(size))}]
                if mode == "inpaint":
                    msg["mask"] = payload(mask)
                layer = client.run(msg, timeout=900).layers[0]
                out[mode] = (layer.info["seconds"] / steps, peak_gib(reset=True), layer.info.get("memory", ""))
            engine.unload()
    finally:
        thread.stop()
        free_memory()
    return out


def plain_side(folder: Path, family: str, size: int, steps: int, device: str, dtype, controlnet: Path = None) -> dict:
    """The same jobs on plain diffusers pipelines made with ``from_pretrained``/``from_pipe``."""
    import diffusers
    import torch
    from PIL import Image

    image, mask = picture(size)
    out: dict = {}
    started = time.perf_counter()
    base = (
        getattr(diffusers, PLAIN[family]["generate"])
        .from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        .to(device)
    )
    out["load"] = time.perf_counter() - started
    base.set_progress_bar_config(disable=True)
    peak_gib(reset=True)
    for mode in MODES[family]:
        cls = getattr(diffusers, PLAIN[family][mode])
        extra = {}
        if mode == "control":
            net_cls = diffusers.FluxControlNetModel if family == "flux" else diffusers.SD3ControlNetModel
            extra["controlnet"] = net_cls.from_pretrained(str(controlnet), dtype=dtype).to(device)
        pipe = base if type(base) is cls and not extra else cls.from_pipe(base, dtype=dtype, **extra)
        pipe.set_progress_bar_config(disable=True)
        kwargs = dict(
            prompt=PROMPT,
            num_inference_steps=steps,
            height=size,
            width=size,
            generator=torch.Generator("cpu").manual_seed(1),
        )
        kwargs.update(
            {"true_cfg_scale": 3.5, "negative_prompt": " "}
            if family in TRUE_CFG
            else {"guidance_scale": CFG.get(family, 3.5)}
        )
        if mode in ("img2img", "inpaint"):
            kwargs.update(image=Image.fromarray(image[..., :3]), strength=1.0)
        if mode == "img2img" and family == "flux2-klein":  # Klein's img2img: its inpaint pipeline, all masked
            kwargs["mask_image"] = Image.fromarray(np.full(mask.shape, 255, np.uint8))
        if mode == "edit" and family in TRUE_CFG:
            kwargs.update(image=Image.fromarray(image[..., :3]))
        elif mode == "edit" and family == "flux2-klein":
            flipped = Image.fromarray(np.ascontiguousarray(image[::-1, :, :3]))
            kwargs["image"] = [Image.fromarray(image[..., :3]), flipped, flipped]
        elif mode == "edit":
            kwargs.update(image=Image.fromarray(image[..., :3]), max_area=size * size, _auto_resize=False)
        if mode == "control":
            kwargs["control_image"] = Image.fromarray(edges(size)[..., :3])
            if family == "flux":
                kwargs["control_mode"] = 0
        if mode == "inpaint":
            kwargs["mask_image"] = Image.fromarray(mask)
        started = time.perf_counter()
        pipe(**kwargs)
        out[mode] = ((time.perf_counter() - started) / steps, peak_gib(reset=True), "")
    del base, pipe
    free_memory()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU (seconds)")
    parser.add_argument(
        "--families",
        nargs="+",
        default=["flux-dev", "sd35-medium", "flux2-klein-4b", "z-image-turbo"],
        help="shipped configs to build (real size): flux-dev, flux-schnell, sd35-medium, sd35-large, flux2-klein-4b, "
        "flux2-klein-9b, z-image-turbo, chroma1-hd, qwen-image (20B transformer + 8B text encoder in bf16: about 58 GB of GPU "
        "memory and of disk for its random folder), qwen-image-edit-plus ...",
    )
    parser.add_argument("--meta", action="store_true", help="build the real sizes on the meta device: parameters")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    if args.meta:
        for config in args.families:
            parts = build_parts(config, "meta", torch.bfloat16)
            sizes = ", ".join(f"{sub} {sum(p.numel() for p in m.parameters()) / 1e9:.2f} B" for sub, m in parts.items())
            print(f"{config}: {sizes}", flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="gpu-families-") as scratch:
        work = Path(scratch)
        if args.cpu_smoke:
            import factory
            import tiny_chroma
            import tiny_klein
            import tiny_qwen
            import tiny_zimage

            device, dtype, size, steps = "cpu", torch.float32, 64, 2
            runs = [
                (factory.checkpoint_folder("flux"), "flux", factory.controlnet_path("cn-flux-union")),
                (factory.checkpoint_folder("flux-kontext"), "flux-kontext", None),
                (factory.checkpoint_folder("sd3"), "sd3", factory.controlnet_path("cn-sd3-canny")),
                (tiny_klein.folder(), "flux2-klein", None),
                (tiny_zimage.folder(), "z-image", None),
                (tiny_chroma.folder(), "chroma", None),
                (tiny_qwen.checkpoint_folder("qwen"), "qwen-image", None),
            ]
        else:
            if not torch.cuda.is_available():
                print("gpu_families: no CUDA device here; use --cpu-smoke for the tiny run", file=sys.stderr)
                return 2
            device, dtype, size, steps = "cuda", torch.bfloat16, args.size, args.steps
            runs = []
            for config in args.families:
                started = time.perf_counter()
                family = family_of(config)
                folder = random_folder(config, work, device, dtype)
                control = "control" in MODES[family]
                runs.append(
                    (folder, family, random_controlnet(folder, family, work, device, dtype) if control else None)
                )
                if config == "flux-dev":
                    runs.append((kontext_folder(folder), "flux-kontext", None))
                print(f"built random {config} in {time.perf_counter() - started:.1f} s", flush=True)
        dtype_name = str(dtype).replace("torch.", "")
        print(f"device {device}, {dtype_name}, {size} px, {steps} steps")
        for folder, family, controlnet in runs:
            models = work / f"models-{folder.name}"
            (models / "checkpoints").mkdir(parents=True, exist_ok=True)
            link = models / "checkpoints" / folder.name
            if not link.exists():
                link.symlink_to(folder, target_is_directory=True)
            if controlnet is not None and not (models / "controlnet" / controlnet.name).exists():
                (models / "controlnet").mkdir(exist_ok=True)
                (models / "controlnet" / controlnet.name).symlink_to(controlnet, target_is_directory=True)
            ours = server_side(models, folder.name, family, size, steps, device, dtype_name)
            plain = plain_side(folder, family, size, steps, device, dtype, controlnet)
            print(f"{folder.name}: load server {ours['load']:.1f} s, plain {plain['load']:.1f} s")
            for mode in MODES[family]:
                (s_step, s_peak, memory), (p_step, p_peak, _) = ours[mode], plain[mode]
                print(
                    f"  {mode} {family:<5} s/step server {s_step:.3f} plain {p_step:.3f} (x{s_step / p_step:.2f}); "
                    f"peak GiB server {s_peak:.1f} plain {p_peak:.1f}{'; ' + memory if memory else ''}",
                    flush=True,
                )
        return 0


if __name__ == "__main__":
    sys.exit(main())
