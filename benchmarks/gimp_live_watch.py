"""GIMP Live Inpaint's watching cost: one idle tick of the live loop (``capture.live_state``: GIMP's thumbnails of the
selection, the visible layers, a control and a reference layer over the job's box) beside full pixel reads of the same
parts (what a signature built from buffer reads pays), in a real GIMP 3 (the Debian 13 root of the host tests; the check ``live_watch_cost`` of tests/hosts/gimp_checks.py).

    .venv/bin/python benchmarks/gimp_live_watch.py [WIDTH HEIGHT]

The canvas is 3000 x 2000 by default with a 900 x 700 selection (a ~1.4k px context box). Both are timed in the same
GIMP process, alternately, best of 15, with the tick right after a 3x3 dab too; the last line is ``full reads / thumbnails time ratio: X.X`` (larger = the
thumbnails are cheaper). Times are noisy on a shared machine; the ratio is what to compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def main() -> None:
    from hosts.gimp import gimp_profile, run_checks
    from hosts.trixie import ensure_trixie_root

    size = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (3000, 2000)
    ensure_trixie_root()
    with gimp_profile() as prof:
        params = {"size": size, "plugin_dir": prof.inner(prof.plugin_dir)}
        run = run_checks(prof, [("live_watch_cost", params)], timeout=900)
        run.assert_ok("live_watch_cost")
    line = next(line for line in run.batch.stdout.splitlines() if line.startswith("RESULT "))
    r = json.loads(line[len("RESULT ") :])
    print(f"canvas {size[0]}x{size[1]}, job box {r['box'][0]}x{r['box'][1]}, selection + 5 layers")
    print(f"thumbnails (live_state): {r['tokens_s'] * 1000:.1f} ms, {r['token_bytes'] / 1e6:.2f} MB")
    print(f"thumbnails after a dab:  {r['changed_s'] * 1000:.1f} ms (one layer's thumbnail made again)")
    print(f"full reads:              {r['full_s'] * 1000:.1f} ms, {r['full_bytes'] / 1e6:.2f} MB")
    print(
        f"thumbnails at most {r['side']} px a side; a black dab on the pattern seen at "
        + ", ".join(f"{k}x{k}: {'yes' if v else 'no'}" for k, v in r["seen"].items())
    )
    print(f"full reads / thumbnails time ratio: {r['full_s'] / r['tokens_s']:.1f}")


if __name__ == "__main__":
    main()
