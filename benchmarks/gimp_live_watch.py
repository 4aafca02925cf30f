"""GIMP Live Inpaint's watching cost: one idle tick of the live loop (``capture.live_state``: GIMP's thumbnails of the
selection, the visible layers, a control and a reference layer over the job's box) beside full pixel reads of the same
parts (what a signature built from buffer reads pays), in a real GIMP 3 (the Debian 13 root of the host tests).

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

SCRIPT = """
import time
sys.path[:0] = [P["plugin_dir"] + "/vendor", P["plugin_dir"]]
from gimp_plugin import arguments, capture, host
from protocol.geometry import Box
W, H = P["size"]
img = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
layers = [add_layer(img, name, W, H) for name in ("background", "paint", "glaze")]
control = add_layer(img, "control", W, H, visible=False)
reference = add_layer(img, "reference", W, H, visible=False)
for i, layer in enumerate(layers + [control, reference]):
    buf = layer.get_buffer()
    row = bytes((i * 40 + x) % 256 for x in range(W * 4))
    buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, row * H)
    buf.flush()
sx, sy = (W - 900) // 2, (H - 700) // 2
img.select_ellipse(Gimp.ChannelOps.REPLACE, sx, sy, 900, 700)
spec = arguments.BY_NAME[arguments.PREFIX + "live-inpaint"]
values = dict(spec.defaults(), prompt="x", **{"control-layer": control, "reference-layer": reference})
bounds = host.selection_bounds(img)
box = capture.plan_read("inpaint", bounds, W, H).box

def tokens():
    return capture.live_state(spec, img, layers[-1], values, host.selection_bounds(img))

def full_reads():
    out = [host.read_selection(img, bounds)]
    out += [host.read_layer(layer, box) for layer in layers + [control, reference]]
    return out

def best(fn, times):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)

check(not any(isinstance(t, str) for t in tokens()), "the state has no error")
t_tokens, t_full, t_changed = [], [], []
for i in range(15):
    best(tokens, t_tokens)
    best(full_reads, t_full)
    buf = layers[1].get_buffer()  # a 3x3 dab under the selection: its thumbnail is made again
    buf.set(Gegl.Rectangle.new(sx + 450 + i, sy + 350, 3, 3), RGBA, bytes((0, 0, 0, 255)) * 9)
    buf.flush()
    layers[1].update(sx + 450 + i, sy + 350, 3, 3)
    best(tokens, t_changed)
seen = {}
for size in (1, 2, 3):  # the smallest dab the state sees (GIMP's thumbnails are box-filtered mipmaps)
    before = tokens()
    buf = layers[1].get_buffer()
    buf.set(Gegl.Rectangle.new(sx + 300, sy + 200 + 10 * size, size, size), RGBA, bytes((0, 0, 0, 255)) * size * size)
    buf.flush()
    layers[1].update(sx + 300, sy + 200 + 10 * size, size, size)
    seen[size] = tokens() != before
token_bytes = sum(len(p) for t in tokens() for p in t if isinstance(p, bytes))
full_bytes = sum(len(p) for p in full_reads())
print("RESULT " + json.dumps({"box": [box.width, box.height], "tokens_s": min(t_tokens), "full_s": min(t_full),
                              "changed_s": min(t_changed), "seen": seen,
                              "side": host.THUMB_SIDE,
                              "token_bytes": token_bytes, "full_bytes": full_bytes}))
img.delete()
"""


def main() -> None:
    from hosts.gimp import gimp_profile, run_batch
    from hosts.trixie import ensure_trixie_root

    size = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (3000, 2000)
    ensure_trixie_root()
    with gimp_profile() as prof:
        result = run_batch(prof, SCRIPT, {"size": size, "plugin_dir": prof.inner(prof.plugin_dir)}, timeout=900)
        result.assert_ok()
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
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
