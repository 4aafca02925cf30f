"""GIMP host checks one per GIMP start beside all of them in one start (``hosts.gimp.run_checks``), in a real GIMP 3
(the Debian 13 root of the host tests) against one classical server, alternately in the same process.

    .venv/bin/python benchmarks/gimp_grouped_checks.py [ROUNDS]

Each round runs the same light checks of tests/hosts/gimp_checks.py both ways; prints each way's wall time and the CPU
time of the GIMP processes (children of this one), and the ratios separate / grouped (larger = grouping saves more).
Times are noisy on a shared machine; the ratios measured side by side are what to compare.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

CHECKS = (
    "outpaint_extends_the_canvas_and_moves_no_pixel",
    "upscale_into_a_new_image_or_a_new_layer",
    "control_layer_from_image",
    "document_data_survives_saving_closing_and_reopening_the_xcf",
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(run) -> tuple:
    wall, cpu = time.perf_counter(), _children_cpu()
    run()
    return time.perf_counter() - wall, _children_cpu() - cpu


def main() -> None:
    from conftest import ServerProcess
    from hosts.gimp import gimp_profile, run_checks
    from hosts.trixie import ensure_trixie_root

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    ensure_trixie_root()
    with tempfile.TemporaryDirectory(prefix="pb-grouped-") as scratch:
        folder = Path(scratch)
        (folder / "models").mkdir()
        server = ServerProcess(["--models", str(folder / "models")], folder / "server.log").start()
        try:
            with gimp_profile() as prof:
                params = {"url": server.url, "plugin_dir": prof.inner(prof.plugin_dir)}

                def separate() -> None:
                    for name in CHECKS:
                        run_checks(prof, [(name, params)]).assert_ok(name)

                def grouped() -> None:
                    run = run_checks(prof, [(name, params) for name in CHECKS])
                    for name in CHECKS:
                        run.assert_ok(name)

                grouped()  # a first start warms GIMP's profile (fonts, plug-in registration)
                for i in range(rounds):
                    (sw, sc), (gw, gc) = _timed(separate), _timed(grouped)
                    print(f"round {i + 1}: {len(CHECKS)} checks, one start each: {sw:.1f} s wall, {sc:.1f} s CPU")
                    print(f"round {i + 1}: {len(CHECKS)} checks, one start:      {gw:.1f} s wall, {gc:.1f} s CPU")
                    print(f"separate / grouped ratio: wall {sw / gw:.2f}, CPU {sc / gc:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
