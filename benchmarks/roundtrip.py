"""Payload speed: a 4000x4000 RGBA round trip on loopback, through shared memory and on the wire, from this process
and from the plugins' own client code in the hosts' Pythons; and the server's per-frame overhead on a live frame.

    .venv/bin/python benchmarks/roundtrip.py [--size 4000] [--reps 3] [--fills patch,telea] [--no-hosts]
                                             [--live-reps 5] [--no-live]

1. Round trip: ``paintbridge serve`` (classical engine only) in its own process; the job is a classical outpaint by
   8 px on every side with the default fill (``patch``) and with the trivial one (``telea``). Each client runs it
   with shared memory (the default on one machine: ``welcome.shared_folder``) and on the wire
   (``shared_memory=False``, what a remote server gets), alternating, best of ``--reps``:
   - this process: ``protocol.client.Client`` in the server's venv;
   - Krita: the installed Krita plugin's own client path (``client.connect.handshake``/``run_job`` of its vendored
     copy, bgra8 both ways as the plugin sends) under ``/usr/bin/python3.11``, the Python Debian's Krita embeds, up to
     the pixels as the plugin hands them to ``Node.setPixelData`` (a QByteArray over the result's memory);
   - GIMP: the installed GIMP plug-in's client path (rgba8), up to the pixels as it hands them to GEGL
     (``host.set_rgba8``: the result's own memory, through ``gegl_buffer_set``), under Debian 13's ``python3.13`` in the
     GIMP host root
     (``tests/hosts/trixie.py``; its ``/dev/shm`` is bind-mounted from this machine's for the run, as a real GIMP
     there sees it in the host tests).
   Printed per row: both times, their ratio (for the host rows also the client's CPU seconds, the steadier figure
   under load), the server's own job time (``result.elapsed``); and the floor measured
   in the same run: ``FLOOR_COPIES`` numpy copies of the image's bytes into new arrays. For this process's client
   also the CPU seconds of a round trip, this process's and the server process's (Linux): on a machine that other
   processes load, the steadier figure to compare.
2. Per-frame overhead: a live img2img frame at 512 px on the tiny SD1.5 model (``tests/factory.py``), handled in this
   process the way the server handles it — frame decoded and validated (``Connection.receive_data``), pixels decoded
   (``payloads.job_from_message``), the router's engine call, the result encoded (``encode_layers`` and the result
   frame) — minus the pipeline's own calls (the engine's ``info["seconds"]``). Printed: the best of ``--live-reps``.
3. Result write paths: the server's CPU time to put the round trip's result into a shared file: ``SharedFolder.put``
   of the engine's array (after a channel swap for ``bgra8``) into a new file, and into a spare (a file prepared in
   the background after the previous payload: today's way from the second payload of a size on), beside writing it
   straight into a new file mapped writable, which an engine drawing its output into shared memory would pay
   (``/dev/shm`` without huge pages: the mapping's page faults cost more than the write's copy).

Figures only; nothing here is a test. Other processes on the machine only add time: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FLOOR_COPIES = 4
GOAL_SECONDS = {"patch": 0.25, "telea": 0.10}
KRITA_PYTHON = "/usr/bin/python3.11"  # Debian 12's Krita 5.1 embeds libpython3.11
OVERHEAD_GOAL_MS = 15.0


def best_of(reps: int, fn: Callable[[], object]) -> float:
    """The fastest of ``reps`` runs of ``fn`` in seconds (load from other processes only adds time)."""
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def floor_seconds(nbytes: int, reps: int) -> float:
    """``FLOOR_COPIES`` copies of ``nbytes`` into newly allocated numpy arrays."""
    src = np.random.default_rng(1).integers(0, 255, nbytes, dtype=np.uint8)

    def copies() -> None:
        a = src
        for _ in range(FLOOR_COPIES):
            a = a.copy()

    return best_of(reps, copies)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread, finished ones included) the process ``pid`` has used (Linux; NaN
    elsewhere): steadier than wall time on a machine others load."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_name() -> str:
    """The CPU's model name (Linux), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def start_server(models: Path) -> tuple:
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", "0", "--models", str(models)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the server did not start:\n" + proc.stdout.read())


# Runs in a host's Python with only the plugin's folder on sys.path: the plugin's own client path, timed.
HOST_SCRIPT = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
sys.path[:0] = args["paths"]
from importlib import import_module
connect = import_module(args["package"] + "client.connect")
results = import_module(args["package"] + "client.results")
protocol = import_module(args["package"] + "client.wire").protocol
size, fmt = args["size"], args["format"]
pixels = os.urandom(size * size * 4)
if args["host_call"] == "krita":  # what the plugin hands Node.setPixelData (qt_compat.set_pixel_data)
    from PyQt5.QtCore import QByteArray
    for_host = QByteArray.fromRawData
else:  # what the plug-in hands gegl_buffer_set (gimp_plugin/host.py set_rgba8): the result's own memory
    for_host = memoryview
clients = {}
for shared in (True, False):
    client = connect.make_client(args["url"], None, "roundtrip-benchmark-host", "")
    client.shared_memory = shared
    connect.handshake(client)
    clients[shared] = client
best, cpu = {}, {}
for fill in args["fills"]:
    for rep in range(args["reps"] + 1):  # the first of each is a warm-up
        for shared, client in clients.items():
            job = protocol.Job(id=connect.new_job_id("bench"), mode="outpaint", model="classical",
                               image=protocol.ImagePayload(size, size, fmt, pixels), result_format=fmt,
                               params=protocol.Params(extend=protocol.Extend(8, 8, 8, 8), fill=fill))
            started, mine = time.perf_counter(), time.process_time()
            layers, _ = connect.run_job(client, job)
            data = for_host(results.pixels_in(layers[0], fmt))
            took, spent = time.perf_counter() - started, time.process_time() - mine
            assert len(data) == (size + 16) ** 2 * 4
            del data
            if rep:
                key = f"{fill} {'shared' if shared else 'wire'}"
                best[key] = min(best.get(key, 1e9), took)
                cpu[key] = cpu.get(key, 0.0) + spent / args["reps"]
folder = clients[True].shared_folder
print(json.dumps({"best": best, "cpu": cpu, "python": sys.version.split()[0],
                  "shared": folder is not None and folder.read > 0}))
"""


def host_round_trip(
    python: List[str],
    paths: List[str],
    package: str,
    url: str,
    size: int,
    reps: int,
    fills: List[str],
    fmt: str,
    host_call: str,
) -> Dict:
    """The plugin's client code in a host's Python (``python``: the command), timed there up to the pixels in the
    type the host's own call takes (``host_call``: "krita" or "gimp")."""
    args = json.dumps(
        {
            "paths": paths,
            "package": package,
            "url": url,
            "size": size,
            "reps": reps,
            "fills": fills,
            "format": fmt,
            "host_call": host_call,
        }
    )
    done = subprocess.run(python + ["-c", HOST_SCRIPT, args], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def krita_row(url: str, size: int, reps: int, fills: List[str], scratch: Path) -> Optional[Dict]:
    """The Krita plugin installed into a scratch pykrita folder, its client code run by Krita's Python."""
    if not os.path.exists(KRITA_PYTHON):
        return None
    from pbsetup.plugins import install_krita as install

    pykrita = scratch / "pykrita"
    install(pykrita, scratch / "kritarc", [sys.executable, "-m", "server", "serve"])
    paths = [str(pykrita), str(pykrita / "paintbridge" / "vendor")]  # (as the plugin's wire.py puts them)
    return host_round_trip([KRITA_PYTHON, "-I"], paths, "paintbridge.", url, size, reps, fills, "bgra8", "krita")


def gimp_row(url: str, size: int, reps: int, fills: List[str]) -> Optional[Dict]:
    """The GIMP plug-in installed under the Debian 13 root's /tmp, its client code run by that root's python3."""
    sys.path.insert(0, str(REPO / "tests"))
    from hosts import trixie

    if not trixie.root_ready():
        return None
    root = trixie.ensure_trixie_root()
    from pbsetup.plugins import install_gimp as install

    with tempfile.TemporaryDirectory(dir=root / "tmp") as scratch:
        folder = install(Path(scratch) / "plug-ins")
        inside = "/" + str(folder.relative_to(root))
        with trixie.shared_dev_shm(root) as mounted:
            row = host_round_trip(
                ["chroot", str(root), "python3", "-I"],
                [inside + "/vendor", inside],
                "",
                url,
                size,
                reps,
                fills,
                "rgba8",
                "gimp",
            )
        row["dev_shm_mounted"] = mounted
        return row


def round_trip(size: int, reps: int, fills: List[str], hosts: bool) -> None:
    from protocol.client import Client, new_job_id
    from protocol.images import RGBA8, ImagePayload
    from protocol.messages import Extend, Job, Params

    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 4), dtype=np.uint8).tobytes()
    rows: Dict[str, Dict] = {}
    with tempfile.TemporaryDirectory() as models:
        proc, url = start_server(Path(models))
        try:
            clients = {
                shared: Client(url, "roundtrip-benchmark", shared_memory=shared).__enter__() for shared in (True, False)
            }
            best: Dict[str, float] = {}
            elapsed: Dict[str, float] = {}
            cpu: Dict[str, List[float]] = {}  # key -> [client CPU, server CPU], summed over the timed reps
            for fill in fills:
                for rep in range(reps + 1):  # the first of each is a warm-up
                    for shared, client in clients.items():
                        job = Job(
                            new_job_id("bench"),
                            "outpaint",
                            model="classical",
                            image=ImagePayload(size, size, RGBA8, pixels),
                            params=Params(extend=Extend(8, 8, 8, 8), fill=fill),
                        )
                        started, mine, theirs = time.perf_counter(), time.process_time(), process_cpu(proc.pid)
                        result = client.run(job)
                        took = time.perf_counter() - started
                        spent = (time.process_time() - mine, process_cpu(proc.pid) - theirs)
                        layer = result.layers[0]
                        assert (layer.width, layer.height) == (size + 16, size + 16)
                        if rep:
                            key = f"{fill} {'shared' if shared else 'wire'}"
                            best[key] = min(best.get(key, 1e9), took)
                            cpu[key] = [a + b for a, b in zip(cpu.get(key, [0.0, 0.0]), spent)]
                            elapsed[fill] = min(elapsed.get(fill, 1e9), result.elapsed)
            shared_used = clients[True].shared_folder is not None and clients[True].shared_folder.read > 0
            for client in clients.values():
                client.close()
            rows[f"this process (Python {sys.version.split()[0]})"] = {"best": best, "shared": shared_used}
            if hosts:
                with tempfile.TemporaryDirectory() as scratch:
                    for name, make in (
                        ("Krita plugin code", lambda: krita_row(url, size, reps, fills, Path(scratch))),
                        ("GIMP plug-in code", lambda: gimp_row(url, size, reps, fills)),
                    ):
                        try:
                            row = make()
                        except Exception as err:  # noqa: BLE001 - a missing host is reported, not fatal
                            print(f"{name}: not run ({type(err).__name__}: {str(err)[-300:]})")
                            continue
                        if row is None:
                            print(f"{name}: not run (the host's Python is not on this machine)")
                            continue
                        rows[f"{name} (Python {row['python']})"] = row
        finally:
            proc.terminate()
            proc.wait(30)
    floor = floor_seconds(len(pixels), reps)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes "
        "add time: compare ratios)"
    )
    print(
        f"round trip {size}x{size} rgba8 on loopback, classical outpaint by 8 px; best of {reps} after a warm-up, "
        f"shared memory and wire alternating"
    )
    print(f"{'client':42} {'fill':6} {'shared memory':>14} {'wire':>8} {'wire/shared':>12} {'goal':>7}")
    for name, row in rows.items():
        for fill in fills:
            shared_s, wire_s = row["best"][f"{fill} shared"], row["best"][f"{fill} wire"]
            goal = GOAL_SECONDS.get(fill)
            note = "" if row.get("shared") else "  (shared memory NOT used: wire both times)"
            print(
                f"{name:42} {fill:6} {shared_s:13.3f}s {wire_s:7.3f}s {wire_s / shared_s:11.2f}x "
                f"{'<= %.2fs' % goal if goal else '':>7}{note}"
            )
    print(
        f"this process, CPU seconds per round trip (mean of {reps}; client + server process; steadier than the times "
        "above when others load the machine):"
    )
    for key, (mine, theirs) in cpu.items():
        print(f"  {key:13} {mine / reps:.3f} + {theirs / reps:.3f} = {(mine + theirs) / reps:.3f} s")
    for name, row in list(rows.items())[1:]:
        print(
            f"{name}, client CPU seconds per round trip (mean of {reps}): "
            + ", ".join(f"{key} {spent:.3f}" for key, spent in row.get("cpu", {}).items())
        )
    for fill in fills:
        print(f"server's job time ({fill} fill, result.elapsed, best): {elapsed[fill]:.3f} s")
    print(
        f"floor ({FLOOR_COPIES} numpy copies of {len(pixels) / 2**20:.0f} MiB): {floor:.3f} s; this process's "
        + ", ".join(
            f"{fill} round trip / floor = {rows[next(iter(rows))]['best'][fill + ' shared'] / floor:.2f}"
            for fill in fills
        )
    )


def result_write_paths(size: int, reps: int) -> None:
    """What a result costs the server to put into a shared file, today's way (the engine's array, or its channel swap
    for ``bgra8``, written with ``SharedFolder.put``) beside writing it straight into the file mapped writable (what an
    engine drawing its output into shared memory would pay: the same bytes, through the mapping's page faults). CPU
    time of this process, best of ``reps``; the file's pages are freed outside the timing (the client frees them)."""
    import cv2

    from protocol.shared import SharedFolder

    rgba = np.random.default_rng(2).integers(0, 255, (size + 16, size + 16, 4), dtype=np.uint8)
    folder = SharedFolder.create()

    plain = SharedFolder(folder.path, spares=0)

    def cpu_ms(fn: Callable[[], str]) -> float:
        best = float("inf")
        for _ in range(reps):
            folder.wait_spares()  # (a spare is made in the background between payloads)
            started = time.thread_time()
            name = fn()
            best = min(best, time.thread_time() - started)
            os.unlink(os.path.join(folder.path, name))
        return best * 1000

    def written(swap: bool, into: SharedFolder = plain) -> str:
        return into.put(cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA) if swap else rgba)["name"]

    def mapped(swap: bool) -> str:
        name = f"mapped-{time.perf_counter_ns()}.px"
        fd = os.open(os.path.join(folder.path, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, rgba.nbytes)
            with mmap.mmap(fd, rgba.nbytes) as mapping:
                out = np.frombuffer(mapping, np.uint8).reshape(rgba.shape)
                if swap:
                    cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA, dst=out)
                else:
                    np.copyto(out, rgba)
                del out
        finally:
            os.close(fd)
        return name

    try:
        print(
            f"result into a shared file ({rgba.nbytes / 2**20:.0f} MiB, the writing thread's CPU ms, best of {reps}):"
        )
        for fmt, swap in (("rgba8", False), ("bgra8", True)):
            now, direct = cpu_ms(lambda: written(swap)), cpu_ms(lambda: mapped(swap))
            spared = cpu_ms(lambda: written(swap, folder))
            print(
                f"  {fmt}: {'swap to a new array + ' if swap else ''}os.write into a new file {now:.1f}; into a spare "
                f"(today) {spared:.1f}; straight into a new file mapped {direct:.1f} (spare / new = {spared / now:.2f})"
            )
    finally:
        folder.remove()


def live_overhead(reps: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from factory import make_models_dir

    from protocol.codec import fragments
    from protocol.connection import SERVER, Connection
    from protocol.messages import Result, Welcome, hello
    from server.config import ServerConfig
    from server.core import JobContext
    from server.payloads import encode_layers, job_from_message
    from server.router import Router

    pixels = np.random.default_rng(0).integers(0, 255, (512, 512, 4), dtype=np.uint8).tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models_dir(Path(tmp) / "models", which=("sd15",))
        router = Router(ServerConfig(model_dirs=[models]))
        client = Connection("client")
        server = Connection(SERVER)
        server.receive_data(client.send(hello("bench")))
        client.receive_data(server.send(Welcome("1.1", "bench")))
        rows: List[tuple] = []  # (overhead, total, decode, engine outside the pipeline, encode) per frame
        for i in range(reps + 1):  # the first frame loads the model
            frame = _job_frame(i, pixels)
            t0 = time.perf_counter()
            (msg,) = server.receive_data(frame)
            job = job_from_message(msg)
            t1 = time.perf_counter()
            layers = router.run(job, JobContext())
            t2 = time.perf_counter()
            fragments(server.send_pieces(Result(msg.id, tuple(encode_layers(layers, msg.result_format)), 0.0, {})))
            t3 = time.perf_counter()
            pipeline = float(layers[0].info.get("seconds", 0.0))
            if i:
                rows.append((t3 - t0 - pipeline, t3 - t0, t1 - t0, t2 - t1 - pipeline, t3 - t2))
    overhead, total, decode, engine, encode = (x * 1000 for x in min(rows))
    print(
        f"live frame 512x512 img2img, tiny SD1.5, 1 step (best of {reps}): total {total:.1f} ms; per-frame server "
        f"overhead (all but the pipeline calls) {overhead:.1f} ms (goal <= {OVERHEAD_GOAL_MS:g} ms) = decode "
        f"{decode:.1f} + engine outside the pipeline {engine:.1f} + encode {encode:.1f} ms"
    )


def _job_frame(i: int, pixels: bytes) -> bytes:
    from protocol.codec import encode
    from protocol.images import RGBA8, ImagePayload
    from protocol.messages import Job, Params

    job = Job(
        f"live-{i}",
        "img2img",
        image=ImagePayload(512, 512, RGBA8, pixels),
        params=Params(steps=1, strength=0.5, seed=1),
        live=True,
    )
    return bytes(encode(job.to_wire()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--live-reps", type=int, default=5)
    parser.add_argument(
        "--fills",
        default="patch,telea",
        help="the outpaint's fills, comma-separated (patch: the default; telea: the trivial one)",
    )
    parser.add_argument("--no-hosts", action="store_true", help="only this process's client (no Krita, GIMP rows)")
    parser.add_argument("--no-live", action="store_true", help="skip the per-frame overhead (needs torch)")
    args = parser.parse_args()
    round_trip(args.size, args.reps, [f for f in args.fills.split(",") if f], not args.no_hosts)
    result_write_paths(args.size, max(args.reps, 5))
    if not args.no_live:
        live_overhead(args.live_reps)


if __name__ == "__main__":
    main()
