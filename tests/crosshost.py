"""GIMP's side of the Krita/GIMP comparison (tests/ellipse_case.py): one run in a real GIMP 3, its read-back pixels
kept for this pytest session only.

``gimp_pixels(tmp_path_factory)`` returns what GIMP made of the shared document, running it once per session: GIMP's
host test calls it (and checks the results), the comparison at the end of tests/test_krita_host.py calls it too, so the
comparison always sees this session's GIMP pixels, never a file left by an earlier run, whichever test files run. Under
``pytest -n`` the workers share the one run through a file in the session's own temporary folder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import ellipse_case

REPO = Path(__file__).resolve().parent.parent
_SESSION: Dict[str, np.ndarray] = {}  # this pytest session's GIMP read-backs (the module lives as long as the session)


def _mask_bounds(mask: bytes) -> list:
    sel = np.frombuffer(mask, np.uint8).reshape(ellipse_case.HEIGHT, ellipse_case.WIDTH)
    ys, xs = np.nonzero(sel)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _run_gimp(workdir: Path) -> Dict[str, np.ndarray]:
    """Generate into the shared ellipse and upscale its box in a real GIMP 3 against a real server with the tiny
    SD1.5 model; the two results as straight-alpha RGBA arrays (``generate``: the whole canvas, ``upscale``: the
    new image)."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_check
    from hosts.trixie import HostRootError, ensure_trixie_root, missing_tools, root_ready

    if missing_tools() and not root_ready():
        pytest.skip(f"the GIMP 3 host tests need {', '.join(missing_tools())} (install.py --dev installs them)")
    try:
        ensure_trixie_root()
    except HostRootError as err:
        pytest.fail(f"could not build the Debian 13 root with GIMP 3: {err}")
    models = make_models_dir(workdir / "models", which=("sd15",))
    server = ServerProcess(["--models", str(models)], workdir / "server.log").start()
    try:
        with gimp_profile() as prof:
            mask = ellipse_case.selection()
            (prof.outside / "image.rgba").write_bytes(ellipse_case.pattern())
            (prof.outside / "selection.gray").write_bytes(mask)
            params = {
                "url": server.url,
                "dir": prof.inside,
                "image": f"{prof.inside}/image.rgba",
                "selection": f"{prof.inside}/selection.gray",
                "width": ellipse_case.WIDTH,
                "height": ellipse_case.HEIGHT,
                "mask_bounds": _mask_bounds(mask),
                "model": ellipse_case.MODEL,
                "prompt": ellipse_case.PROMPT,
                "seed": ellipse_case.SEED,
                "steps": ellipse_case.STEPS,
                "upscale_box": list(ellipse_case.UPSCALE_BOX),
                "upscale_scale": ellipse_case.UPSCALE_SCALE,
            }
            run_check(prof, "generate_into_the_shared_ellipse_and_upscale_its_box", timeout=600, **params)
            out = prof.outside
            generate = np.frombuffer((out / "generate.rgba").read_bytes(), np.uint8)
            nw, nh = map(int, (out / "upscale.size").read_text().split())
            upscale = np.frombuffer((out / "upscale.rgba").read_bytes(), np.uint8)
    finally:
        server.stop()
    return {
        "generate": generate.reshape(ellipse_case.HEIGHT, ellipse_case.WIDTH, 4),
        "upscale": upscale.reshape(nh, nw, 4),
    }


def gimp_pixels(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, np.ndarray]:
    """GIMP's read-backs of the shared document in this pytest session (run in a new temporary folder if no process
    of the session has run it yet), also kept as test-artifacts/generate-ellipse-gimp.png and
    upscale-selection-gimp.png."""
    if not _SESSION:
        _SESSION.update(_session_run(tmp_path_factory))
    return dict(_SESSION)


def _session_run(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, np.ndarray]:
    """``_run_gimp`` once for the whole session: the first process to get here runs it and saves its arrays in the
    session's temporary folder (the one above each worker's own under ``pytest -n``); the others wait and read them."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    saved = shared / "gimp-crosscheck.npz"
    with open(shared / "gimp-crosscheck.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if saved.exists():
            with np.load(saved) as arrays:  # plain arrays: np.load refuses pickled objects
                return {name: arrays[name] for name in arrays.files}
        workdir = tmp_path_factory.mktemp("gimp-crosscheck")
        print(f"running GIMP on the shared document in {workdir}")
        pixels = _run_gimp(workdir)
        save_png(pixels["generate"], ellipse_case.ARTIFACT.format(editor="gimp"))
        save_png(pixels["upscale"], ellipse_case.UPSCALE_ARTIFACT.format(editor="gimp"))
        partial = shared / "gimp-crosscheck.partial.npz"
        np.savez(partial, **pixels)
        partial.replace(saved)
        return pixels


def save_png(rgba: np.ndarray, name: str) -> Path:
    """Keep a straight-alpha RGBA array as a PNG under test-artifacts/."""
    from PIL import Image

    path = REPO / "test-artifacts" / name
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(path)
    return path
