"""``paintbridge`` command line: the parser and dispatch; each subcommand is a module of ``server/commands``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from protocol import CAPTION_STYLES, MODES, REFERENCE_TYPES, SAMPLERS, SCHEDULE_NAMES
from protocol.messages import DETAIL_TARGETS
from protocol.messages import INPAINT_FILLS, INPAINT_METHODS, SPEED_LEVELS

from . import __version__
from .commands.calibrate import cmd_calibrate
from .commands.models import cmd_models
from .commands.run import cmd_run
from .commands.serve import cmd_serve
from .commands.worker import cmd_worker
from .config import DEFAULT_HOST, DEFAULT_PORT, default_models_dir, default_styles_dir


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paintbridge", description="Local AI image editing server for Krita and GIMP.")
    p.add_argument("--version", action="version", version=f"paintbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add_models(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--models",
            action="append",
            metavar="DIR",
            help="models folder (repeatable; ComfyUI and AUTOMATIC1111 'models' folders work); "
            f"default {default_models_dir()}",
        )
        sp.add_argument(
            "--styles",
            metavar="DIR",
            help=f"the folder of saved styles (one JSON file each); default {default_styles_dir()}",
        )
        sp.add_argument("--device", help="torch device (cuda, cuda:1, mps, cpu); default: the best available")
        sp.add_argument(
            "--dtype",
            choices=("float16", "bfloat16", "float32"),
            help="default: what this machine's calibration measured fastest per model family (on GPUs "
            "float16 for SD1.5/SDXL, bfloat16 for Flux/SD3); see 'paintbridge calibrate'",
        )
        sp.add_argument(
            "--allow-pickle",
            action="store_true",
            help="also list and load pickled (.ckpt/.pt/.pth/.bin) checkpoints, VAEs, LoRAs, embeddings, "
            "ControlNets, IP-Adapters and image encoders, with torch's weights_only loader (pickled "
            "upscalers, LaMa and annotators are always read that way)",
        )

    def add_cluster(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--ray-bind",
            default="127.0.0.1",
            metavar="ADDRESS",
            help="cluster mode: the address this machine's Ray node uses and announces (default "
            "127.0.0.1: a one-machine studio; give the LAN address to let workers join)",
        )
        sp.add_argument(
            "--replicas",
            type=int,
            metavar="N",
            help="cluster mode: engine replicas on this machine (default: one per GPU, else 1)",
        )
        sp.add_argument(
            "--replica-cpus",
            type=float,
            default=1.0,
            metavar="N",
            help="cluster mode: CPU cores each replica reserves (default 1)",
        )

    s = sub.add_parser("serve", help="run the server the plugins connect to")
    s.add_argument("--host", default=DEFAULT_HOST, help="address to listen on; anything but loopback needs --token")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument(
        "--token",
        default=os.environ.get("PAINTBRIDGE_TOKEN"),
        help="secret clients must send (default $PAINTBRIDGE_TOKEN)",
    )
    s.add_argument(
        "--grace",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a dropped client's jobs are kept for it to reconnect (default 300; live frames are "
        "dropped at once)",
    )
    s.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="let browser pages from ORIGIN (e.g. http://localhost:3000) connect; repeatable. Browser "
        "connections are refused by default",
    )
    s.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a host name clients use to reach this server, besides its listen address and localhost; "
        "repeatable (other Host headers are refused against DNS rebinding)",
    )
    s.add_argument(
        "--no-shared-memory",
        action="store_true",
        help="keep payloads on the wire for clients on this machine too (no folder in /dev/shm)",
    )
    s.add_argument(
        "--recalibrate",
        action="store_true",
        help="measure again which dtype runs fastest on this machine (done once per machine at the first "
        "start, and again after a torch update)",
    )
    s.add_argument(
        "--no-preload",
        action="store_true",
        help="do not load the default checkpoint at start (it then loads with the first job)",
    )
    add_models(s)
    add_cluster(s)
    s.add_argument(
        "--cluster",
        nargs="?",
        const="start",
        metavar="ADDRESS",
        help="studio mode: run jobs on a pool of engine replicas on Ray Serve. Without ADDRESS a Ray head "
        "starts here (on --ray-bind:--ray-port); with ADDRESS (HOST:PORT) this joins that Ray cluster",
    )
    s.add_argument("--ray-port", type=int, default=6379, help="cluster mode: the Ray head's port (default 6379)")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("calibrate", help="measure which dtype runs fastest on this machine, cache and print it")
    c.add_argument("--device", help="cpu, cuda, xpu or mps (default: the best available)")
    c.add_argument("--cached", action="store_true", help="print the cached calibration instead of measuring again")
    c.set_defaults(func=cmd_calibrate)

    w = sub.add_parser("worker", help="studio mode: add this machine's GPUs (or CPU workers) to a pool")
    w.add_argument("--address", required=True, metavar="HOST:PORT", help="the Ray head of 'serve --cluster'")
    w.add_argument("--name", help="this machine's name in the pool (default: its host name)")
    add_models(w)
    add_cluster(w)
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("run", help="run one job on image files")
    r.add_argument("mode", choices=MODES)
    r.add_argument("--image", help="input image (required except for generate)")
    r.add_argument("--mask", help="mask image: white = change (or the alpha of a transparent PNG)")
    r.add_argument("--prompt", default="")
    r.add_argument("--negative", default="", help="negative prompt")
    r.add_argument("--out", help="output PNG (a batch writes OUT-1.png, OUT-2.png, ...); required except for caption")
    r.add_argument("--server", help="ws://HOST:PORT of a running server; default: start one in this process")
    r.add_argument("--token", default=os.environ.get("PAINTBRIDGE_TOKEN"))
    r.add_argument("--model", default="", help="checkpoint name, or 'classical' (default: the server's default)")
    r.add_argument(
        "--style",
        default="",
        help="a style by name (its checkpoint, LoRAs, sampling and prompt template; each flag given overrides it)",
    )
    r.add_argument("--seed", type=int, default=-1)
    r.add_argument("--steps", type=int, default=20)
    r.add_argument("--strength", type=float)
    r.add_argument("--cfg", type=float)
    r.add_argument("--sampler", choices=SAMPLERS)
    r.add_argument("--batch", type=int, default=1)
    r.add_argument(
        "--speed",
        choices=SPEED_LEVELS,
        help="quality (every step in full) or fast (SD1.5/SDXL: the UNet's deep features reused on alternate steps; "
        "for drafts, changes the pixels a little); default: the style's level, else quality",
    )
    r.add_argument("--grow", type=int)
    r.add_argument("--feather", type=int)
    r.add_argument(
        "--fill",
        choices=INPAINT_FILLS,
        help="inpaint/outpaint fill and diffusion pre-fill: patch (texture from around the hole, the "
        "default), telea, ns (smooth), lama (a LaMa network: 'paintbridge models pull lama')",
    )
    r.add_argument(
        "--inpaint-method",
        choices=INPAINT_METHODS,
        help="inpaint/outpaint: auto (default: the best installed method, said in the result), or force "
        "checkpoint, controlnet, fill or plain",
    )
    r.add_argument("--scale", type=float, default=2.0, help="upscale factor")
    r.add_argument("--upscaler", help="upscale model name (default Lanczos)")
    r.add_argument("--refine", type=float, help="upscale-and-refine strength (0 = off)")
    r.add_argument("--extend", help="outpaint: N or LEFT,TOP,RIGHT,BOTTOM px")
    r.add_argument("--width", type=int, help="generate without --image: width")
    r.add_argument("--height", type=int, help="generate without --image: height")
    r.add_argument("--preprocessor", help="preprocess mode: canny, lineart, scribble, ...")
    r.add_argument(
        "--layer-count",
        type=int,
        help="decompose mode (Qwen-Image-Layered): how many RGBA layers, written bottom first as OUT-1.png, ...",
    )
    r.add_argument(
        "--caption-style",
        choices=CAPTION_STYLES,
        help="caption mode (prompt from the picture, printed): a sentence (default) or tags; --model names a captioner",
    )
    # fills
    r.add_argument(
        "--color-match",
        action="store_true",
        default=None,
        help="inpaint/outpaint: match the result's colours to the area around the mask",
    )
    r.add_argument(
        "--tileable",
        action="store_true",
        default=None,
        help="generate/img2img/upscale: a seamless texture, its edges wrap around",
    )
    # reference images
    r.add_argument(
        "--reference",
        action="append",
        metavar="FILE[:TYPE[:STRENGTH]]",
        help="a reference image (IP-Adapter); TYPE: "
        + ", ".join(REFERENCE_TYPES)
        + " (default content), STRENGTH 0-2 (default 1); repeat for several",
    )
    # sampling
    r.add_argument(
        "--scheduler",
        choices=SCHEDULE_NAMES,
        help="noise schedule (default: the sampler's own); a pair the sampler cannot do is refused",
    )
    r.add_argument("--batch-count", type=int, help="pipeline calls one after another, --batch images each")
    r.add_argument("--vae", help="a VAE of the models folder by name (default: the checkpoint's own)")
    r.add_argument("--clip-skip", type=int, help="CLIP layers skipped: 0/1 none, 2 = penultimate")
    r.add_argument("--refiner", help="an SDXL refiner by name for the last steps")
    r.add_argument("--refiner-start", type=float, help="fraction of the steps after which the refiner runs (0.8)")
    r.add_argument(
        "--region",
        action="append",
        metavar="MASK.png:PROMPT",  # regions
        help="an area with its own prompt (white, or the alpha of a transparent PNG, at the image's size); "
        "repeat for more regions (SD1.5, SDXL, Flux.1, Flux.1 Fill and Z-Image checkpoints)",
    )
    # hires fix and detailer
    r.add_argument(
        "--hires",
        action="store_true",
        help="hires fix: sample at the model's native area, upscale, sample "
        "again at the full size (generate, img2img, inpaint, outpaint)",
    )
    r.add_argument(
        "--hires-upscaler",
        default="latent",
        metavar="NAME",
        help="'latent' (default), 'lanczos' or an upscale model's name",
    )
    r.add_argument("--hires-strength", type=float, default=0.4, help="denoise of the second pass (default 0.4)")
    r.add_argument("--hires-steps", type=int, default=0, help="steps of the second pass (default: --steps)")
    r.add_argument(
        "--hires-scale",
        type=float,
        default=0.0,
        help="second pass size as a multiple of the first (default: the image's own size)",
    )
    r.add_argument(
        "--detail", action="store_true", help="run the detailer (faces) after the job; mode 'detail' runs it on its own"
    )
    r.add_argument("--detail-targets", default="face", help=f"comma-separated: {', '.join(DETAIL_TARGETS)}")
    r.add_argument("--detail-prompt", default="", help="prompt for the detected regions (default: --prompt)")
    r.add_argument("--detail-negative", default="", help="negative prompt for the regions (default: --negative)")
    r.add_argument("--detail-strength", type=float, default=0.4, help="denoise of each region (default 0.4)")
    r.add_argument("--detail-steps", type=int, default=0, help="steps per region (default: --steps)")
    r.add_argument("--detail-padding", type=int, default=32, help="px of context around each detection")
    r.add_argument("--detail-confidence", type=float, default=0.5, help="ignore detections scored below (0-1)")
    r.add_argument("--detail-separate", action="store_true", help="one output file per detection")
    add_models(r)
    r.set_defaults(func=cmd_run, port=0)

    m = sub.add_parser("models", help="list installed models and what each starter set lacks; 'pull' downloads")
    add_models(m)
    m.set_defaults(func=cmd_models, port=0)
    msub = m.add_subparsers(dest="models_command")
    mp = msub.add_parser(
        "pull",
        help="download a starter set (sd15, sdxl, annotators, upscaler) or one catalogue file "
        "into the first models folder ($HF_ENDPOINT is honoured)",
    )
    mp.add_argument("names", nargs="+", metavar="NAME")
    mp.add_argument("--force", action="store_true", help="download again even when the file is there")
    mp.add_argument(
        "--models",
        action="append",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"models folder to download into (default {default_models_dir()})",
    )
    mp.set_defaults(func=cmd_models, port=0)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run" and args.mode != "generate" and not args.image:
        parser().error(f"mode '{args.mode}' needs --image")
    if args.command == "run" and args.mode != "caption" and not args.out:
        parser().error(f"mode '{args.mode}' needs --out")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
