"""``paintbridge`` command line: serve, run a job from image files, list models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from PIL import Image

from protocol import CAPTION_STYLES, MODES, REFERENCE_TYPES, SAMPLERS, SCHEDULE_NAMES, Message, Progress, Queued
from protocol.messages import DETAIL_TARGETS
from protocol.client import Client, ConnectionFailed, JobCancelled, JobFailed
from protocol.messages import INPAINT_FILLS, INPAINT_METHODS, SPEED_LEVELS

from . import __version__
from .config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig, default_models_dir, default_styles_dir
from .runjob import build_job, flatten_result


def _config(args: argparse.Namespace, port: Optional[int] = None) -> ServerConfig:
    dirs = [Path(d).expanduser() for d in (args.models or [])] or [default_models_dir()]
    return ServerConfig(
        host=getattr(args, "host", DEFAULT_HOST),
        port=port if port is not None else args.port,
        token=getattr(args, "token", None),
        model_dirs=dirs,
        styles_dir=Path(args.styles).expanduser() if getattr(args, "styles", None) else default_styles_dir(),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        recalibrate=getattr(args, "recalibrate", False),
        allow_pickle=getattr(args, "allow_pickle", False),
        preload=not getattr(args, "no_preload", True),
        grace=getattr(args, "grace", 300.0),
        allow_origins=list(getattr(args, "allow_origin", None) or []),
        allow_hosts=list(getattr(args, "allow_host", None) or []),
        shared_memory=not getattr(args, "no_shared_memory", False),
    )


def _cluster_missing() -> Optional[str]:
    """None when Ray Serve is installed, else what to install."""
    import importlib.util

    try:  # looked up, not imported: Ray reads its settings when imported (server/cluster/rayenv.py sets them)
        ray = importlib.util.find_spec("ray")
    except (ImportError, ValueError):
        ray = None
    if ray is None or not any((Path(p) / "serve").is_dir() for p in ray.submodule_search_locations or ()):
        return "cluster mode needs Ray Serve: pip install 'paintbridge[cluster]' (or python3 install.py --cluster)"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import PaintbridgeServer
    from . import tuning

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("paintbridge.tuning").info("process settings applied: %s", tuning.apply())
    if args.cluster:
        return cmd_serve_cluster(args)
    try:
        server = PaintbridgeServer(_config(args))
    except ValueError as err:
        print(f"paintbridge serve: {err}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"Paintbridge server listening on ws://{args.host}:{port}", flush=True)
        print(f"device: {server.device}; models: {', '.join(m['name'] for m in server.router.models())}", flush=True)

    try:
        asyncio.run(server.run(on_ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        print(f"paintbridge serve: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``calibrate``: measure this machine's dtypes now (or show the cached result) and print the table."""
    from . import calibration, device as devices

    kind, _ = devices.plan(args.device)
    result = calibration.calibrated(kind, again=not args.cached)
    print(calibration.table(result))
    print(f"cached in {calibration.default_path()}")
    return 0


def cmd_serve_cluster(args: argparse.Namespace) -> int:
    """``serve --cluster``: the front end of a studio over a pool of engine replicas on Ray Serve."""
    missing = _cluster_missing()
    if missing:
        print(f"paintbridge serve: {missing}", file=sys.stderr)
        return 2
    from .cluster import rayenv

    rayenv.prepare(args.ray_bind if args.cluster == "start" else args.cluster)
    from .cluster.launch import serve_cluster

    config = _config(args)
    try:
        config.validate()
    except ValueError as err:
        print(f"paintbridge serve: {err}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"Paintbridge server listening on ws://{args.host}:{port}", flush=True)
        head = args.cluster if args.cluster != "start" else f"{args.ray_bind}:{args.ray_port}"
        more = (
            "one machine (Ray on loopback; --ray-bind ADDRESS lets other machines join)"
            if rayenv.is_loopback(head)
            else f"add a machine with: paintbridge worker --address {head}"
        )
        print(f"cluster: Ray at {head}; {more}", flush=True)

    try:
        serve_cluster(config, args.cluster, args.ray_bind, args.ray_port, args.replicas, args.replica_cpus, ready)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """``worker``: add this machine's GPUs (or CPU workers) to a studio's pool."""
    missing = _cluster_missing()
    if missing:
        print(f"paintbridge worker: {missing}", file=sys.stderr)
        return 2
    from .cluster import rayenv

    if rayenv.is_loopback(args.address):
        print(f"paintbridge worker: {rayenv.LOOPBACK_HEAD}", file=sys.stderr)
        return 2
    rayenv.prepare(args.address)
    from .cluster.launch import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    dirs = [Path(d).expanduser() for d in (args.models or [])] or [default_models_dir()]
    run_worker(
        args.address,
        args.ray_bind,
        dirs,
        args.replicas,
        args.device,
        args.dtype,
        args.replica_cpus,
        args.allow_pickle,
        machine=args.name or "",
    )
    return 0


class _ProgressBar:
    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # the stream at the time of the run
        self.shown = False

    def __call__(self, msg: Message) -> None:
        if isinstance(msg, Queued) and msg.position:
            print(f"queued, {msg.position} job(s) ahead", file=self.stream)
        elif isinstance(msg, Progress) and msg.total > 0:
            done = int(30 * msg.step / msg.total)
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {msg.step}/{msg.total}")
            self.stream.flush()
            self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")


def _out_paths(out: str, count: int) -> List[Path]:
    path = Path(out)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(count)]


def cmd_run(args: argparse.Namespace) -> int:
    job, image = build_job(args)
    own_server = None
    url = args.server
    if not url:
        from .app import ServerThread

        own_server = ServerThread(_config(args, port=0)).start()
        url = own_server.url
    bar = _ProgressBar()
    try:
        with Client(url, "paintbridge-cli", __version__, token=args.token) as client:
            result = client.run(job, on_event=bar)
    except (ConnectionFailed, JobFailed, JobCancelled) as err:
        bar.end()
        detail = f" ({err.field})" if isinstance(err, JobFailed) and err.field else ""
        print(f"paintbridge run: {err}{detail}", file=sys.stderr)
        return 1
    finally:
        if own_server is not None:
            own_server.stop()
    bar.end()
    if args.mode == "caption":
        print(result.text)
        return 0
    layers = result.layers
    for layer, path in zip(layers, _out_paths(args.out, len(layers))):
        Image.fromarray(flatten_result(layer, image), "RGBA").save(path)
        print(f"{path}: {layer.width}x{layer.height} at ({layer.x}, {layer.y}), seed {layer.seed}")
    print(f"done in {result.elapsed:.2f} s")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List installed models (kind, family, size) and what each starter set still lacks."""
    if getattr(args, "models_command", None) == "pull":
        return cmd_models_pull(args)
    from .downloads import Catalogue, preset_status
    from .downloads.status import catalogue_entry_for, disk_size, human_size
    from .defaults import with_family
    from .router import Router

    router = Router(_config(args, port=0))
    roots = list(router.config.model_dirs)
    catalogue = Catalogue.load()
    print(f"models in: {', '.join(str(d) for d in roots)}")
    for m in with_family(router.models()):
        family = m.get("family") or m.get("arch") or "-"
        variant = m.get("variant") or ("inpaint" if m.get("inpaint") and m["kind"] == "checkpoint" else "")
        path = Path(m["path"]) if m.get("path") else None
        size = human_size(disk_size(path)) if path is not None and path.exists() else "-"
        known = catalogue_entry_for(path, catalogue, roots) if path is not None else None
        what = f"  ({known.what})" if known else ""
        print(f"  {m['kind']:<11} {family:<9} {variant:<8} {size:>9}  {m['name']}{what}")
    print("starter sets (paintbridge models pull NAME):")
    for status in preset_status(catalogue, roots):
        if status.complete:
            print(f"  {status.preset.name:<11} complete")
            continue
        print(
            f"  {status.preset.name:<11} lacks {len(status.missing)} of {len(status.preset.files)} files "
            f"(about {human_size(status.missing_bytes)}):"
        )
        for item in status.missing:
            print(f"      {item.target}  ({item.family} {item.kind}, about {human_size(item.expected_bytes)})")
    return 0


class _PullProgress:
    """One line per file on stderr, redrawn at each whole percent."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # the stream at the time of the run
        self.last: tuple = ("", -1)

    def __call__(self, item, done: int, total: Optional[int]) -> None:
        from .downloads.status import human_size

        percent = int(100 * done / total) if total else -1
        if (item.id, percent) == self.last:
            return
        self.last = (item.id, percent)
        bar = f"[{'#' * (percent // 4)}{'.' * (25 - percent // 4)}] {percent:3d}%" if total else ""
        of = f" of {human_size(total)}" if total else ""
        self.stream.write(f"\r  {item.target}  {bar} {human_size(done)}{of}   ")
        self.stream.flush()

    def end(self) -> None:
        if self.last[0]:
            self.stream.write("\n")
            self.last = ("", -1)


def cmd_models_pull(args: argparse.Namespace) -> int:
    """Download catalogue presets or files into the (first) models folder."""
    from .downloads import Catalogue, CatalogueError, ChecksumError, OfflineError, PullError, pull
    from .downloads.status import human_size

    root = Path(args.models[0]).expanduser() if args.models else default_models_dir()
    catalogue = Catalogue.load()
    try:
        items = [f for name in args.names for f in catalogue.resolve(name)]
    except CatalogueError as err:
        print(f"paintbridge models pull: {err}", file=sys.stderr)
        return 2
    items = list({f.id: f for f in items}.values())
    todo = [f for f in items if args.force or not f.path_in(root).exists()]
    print(
        f"{len(items)} file(s) for {', '.join(args.names)} into {root}: {len(items) - len(todo)} already there, "
        f"{len(todo)} to download (about {human_size(sum(f.expected_bytes for f in todo))})"
    )
    progress = _PullProgress()

    def report(result) -> None:
        progress.end()
        state = f"downloaded, checked with {result.checked_with}" if result.downloaded else "already there"
        print(f"  {result.file.target}: {state}")
        if result.downloaded and result.note:
            print(f"    note: {result.note}")

    try:
        pull(items, root, progress=progress, force=args.force, report=report)
    except OfflineError as err:
        progress.end()
        print(f"paintbridge models pull: {err}", file=sys.stderr)
        return 3
    except (ChecksumError, PullError) as err:
        progress.end()
        print(f"paintbridge models pull: {err}", file=sys.stderr)
        return 1
    print("done: restart the server (or press Refresh in the plugin) to use them")
    return 0


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
        help="quality (default: every step in full) or fast (SD1.5/SDXL: the UNet's deep features reused on "
        "alternate steps; for drafts, changes the pixels a little)",
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
