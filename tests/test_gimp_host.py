"""The GIMP 3 plug-in in a real GIMP 3.0 (Debian 13 root folder): every procedure driven through the PDB in
NONINTERACTIVE batch runs against the real server on loopback, and one GUI run under Xvfb (dialog, Return, undo).

Each test is one gimp-console batch script whose checks raise on failure (exit status checked here). The plug-in is
installed with the project's installer (``pbsetup.plugins.install_gimp``) into a throw-away GIMP profile.
"""

from __future__ import annotations

import json
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trixie_root():
    from hosts.trixie import HostRootError, ensure_trixie_root, missing_tools, root_ready

    if missing_tools() and not root_ready():
        pytest.skip(f"the GIMP 3 host tests need {', '.join(missing_tools())} (install.py --dev installs them)")
    try:
        return ensure_trixie_root()
    except HostRootError as err:
        pytest.fail(f"could not build the Debian 13 root with GIMP 3: {err}")


@pytest.fixture(scope="module")
def server(trixie_root, tmp_path_factory):
    """One real ``paintbridge serve`` process (classical engine, Lanczos; no checkpoint) for the module."""
    from conftest import ServerProcess

    folder = tmp_path_factory.mktemp("gimp-server")
    models = folder / "models"
    models.mkdir()
    proc = ServerProcess(["--models", str(models)], folder / "server.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def profile(trixie_root):
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        yield prof


def batch(profile, body: str, **params):
    from hosts.gimp import run_batch

    return run_batch(profile, body, params).assert_ok()


# A W x H photo layer outpainted by 16 px left and bottom through the plug-in (img, layer, photo, old are left set).
PHOTO_OUTPAINT = """
img = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(img, "photo", W, H, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(layer, None, 0)
row = b"".join(bytes(((x * 255) // (W - 1), (x * 7) % 256, (x * 13) % 251, 255)) for x in range(W))
photo = b"".join(row[(y % 509) * 4:] + row[:(y % 509) * 4] for y in range(H))  # rows shifted: no two alike nearby
buf = layer.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, photo)
buf.flush()
img.set_selected_layers([layer])
old = img.get_layers()
expect_ok("plug-in-paintbridge-outpaint", img, [layer], model="classical", extend=16, extend_left=True,
          extend_right=False, extend_bottom=True, server=P["url"])
"""


PLUGIN_PATH = """
sys.path[:0] = [P["plugin_dir"] + "/vendor", P["plugin_dir"]]
from protocol.geometry import Box, context_box
"""


def test_inpaint_selection_keeps_everything_outside_the_soft_mask(profile, server):
    batch(
        profile,
        PLUGIN_PATH
        + """
img, (bottom, top) = make_image(120, 96, layers=2)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 24, 30, 44, 36)
Gimp.Selection.feather(img, 6.0)
sel = selection_mask(img)
check(any(0 < v < 255 for v in sel), "the feathered selection has soft values")
ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(img)
box = context_box(Box(x1, y1, x2 - x1, y2 - y1), 120, 96)
check(box.width < 120 or box.height < 96, "the context box is smaller than the canvas")
before = composite(img)
user_pixels = [read(l, 0, 0, 120, 96) for l in (bottom, top)]
old = img.get_layers()

expect_ok("plug-in-paintbridge-inpaint", img, [bottom], prompt="a red apple", model="classical",
          grow=0, feather=0, server=P["url"])

layers = img.get_layers()
added = new_layers(img, old)
check(len(added) == 1, "one new layer, got %r" % layer_summary(img))
res = added[0]
check(res.get_name() == "a red apple (classical, patch)", "named after the prompt: %r" % res.get_name())
check([l.get_id() for l in layers] == [top.get_id(), res.get_id(), bottom.get_id()],
      "inserted just above the active layer: %r" % layer_summary(img))
check(tuple(res.get_offsets()[1:]) == (box.x, box.y), "at the context box offsets %r: %r" % (box, res.get_offsets()))
check((res.get_width(), res.get_height()) == (box.width, box.height), "the context box's size")
check([read(l, 0, 0, 120, 96) for l in (bottom, top)] == user_pixels, "the user's layers are not modified")
check(selection_mask(img) == sel, "the selection is unchanged")
alpha = read(res, box.x, box.y, box.width, box.height)[3::4]
inside = bytes(sel[(box.y + y) * 120 + box.x + x] for y in range(box.height) for x in range(box.width))
check(alpha == inside, "the result's alpha is the soft selection mask, soft edges kept")
after = composite(img)
outside_same = all(after[i * 4:i * 4 + 4] == before[i * 4:i * 4 + 4] for i in range(120 * 96) if sel[i] == 0)
check(outside_same, "pixels outside the mask are exactly the original ones")
changed = sum(1 for i in range(120 * 96) if sel[i] == 255 and after[i * 4:i * 4 + 3] != before[i * 4:i * 4 + 3])
check(changed > 50, "the selected area was repainted (%d px changed)" % changed)
img.delete()
""",
        url=server.url,
        plugin_dir=profile.inner(profile.plugin_dir),
    )


def test_layer_mask_and_active_layer_as_inputs_and_gray_images(profile, server):
    batch(
        profile,
        PLUGIN_PATH
        + """
img, (bottom, top) = make_image(96, 64, layers=2)
mask = bottom.create_mask(Gimp.AddMaskType.BLACK)
bottom.add_mask(mask)
buf = mask.get_buffer()
buf.set(Gegl.Rectangle.new(10, 12, 20, 14), GRAY, bytes([255]) * (20 * 14))
buf.flush()
old = img.get_layers()
bottom_px = read(bottom, 0, 0, 96, 64)
# the layer mask (white = repaint) marks the area; the active layer, not the composite, is what the model sees
expect_ok("plug-in-paintbridge-inpaint", img, [mask], model="classical", source="layer", mask_source="layer-mask",
          grow=0, feather=0, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1, "one new layer: %r" % layer_summary(img))
res = added[0]
check(res.get_name() == "Inpaint (classical, patch)", "named after the mode without a prompt: %r" % res.get_name())
ok, rx, ry = res.get_offsets()
w, h = res.get_width(), res.get_height()
check(rx <= 10 and ry <= 12 and rx + w >= 30 and ry + h >= 26, "the box holds the mask's white area")
px = read(res, rx, ry, w, h)
src = read(bottom, rx, ry, w, h)
m = read(mask, rx, ry, w, h, GRAY)
check(px[3::4] == m, "alpha follows the layer mask")
check(all(px[i * 4:i * 4 + 3] == src[i * 4:i * 4 + 3] for i in range(w * h) if m[i] == 0),
      "outside the mask the result holds the active layer's own pixels")
check(read(bottom, 0, 0, 96, 64) == bottom_px, "the active layer is not modified")
check(bottom.get_mask() is not None, "its mask is still there")
img.delete()

# the live preview is left out of what the model sees: host.read_visible(hide=...) finds it in the image's copy
from gimp_plugin import host
from protocol.geometry import Box
img, (bottom, top) = make_image(48, 32, layers=2)
group = Gimp.GroupLayer.new(img, "group")
img.insert_layer(group, None, 0)
inner = Gimp.Layer.new(img, "inner", 48, 32, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(inner, group, 0)
inner.fill(Gimp.FillType.WHITE)
full = Box(0, 0, 48, 32)
only_bottom = read(bottom, 0, 0, 48, 32)
check(host.read_visible(img, full, hide=[top, inner]) == only_bottom, "hidden layers are left out, also in groups")
check(host.read_visible(img, full, hide=[top]) == bytes([255]) * (48 * 32 * 4), "the white group layer shows")
check(top.get_visible() and inner.get_visible(), "the image's own layers stay visible")
img.delete()

gimg, (glayer,) = make_image(64, 64, gray=True)
gimg.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 20, 16, 12)
old = gimg.get_layers()
expect_ok("plug-in-paintbridge-inpaint", gimg, [glayer], model="classical", fill="ns", server=P["url"])
added = new_layers(gimg, old)
check(len(added) == 1 and added[0].is_gray() and added[0].has_alpha(), "a gray image gets a gray layer with alpha")
gimg.delete()
""",
        url=server.url,
        plugin_dir=profile.inner(profile.plugin_dir),
    )


def test_outpaint_extends_the_canvas_and_moves_no_pixel(profile, server):
    batch(
        profile,
        """
img, (layer,) = make_image(64, 48)
before = composite(img)
layer_px = read(layer, 0, 0, 64, 48)
old = img.get_layers()
expect_ok("plug-in-paintbridge-outpaint", img, [layer], model="classical", extend=16, extend_left=True,
          extend_right=False, extend_bottom=True, server=P["url"])
check((img.get_width(), img.get_height()) == (80, 64), "canvas grew by 16 px left and bottom")
check(tuple(layer.get_offsets()[1:]) == (16, 0), "the user's layer moved with the canvas")
check(read(layer, 16, 0, 64, 48) == layer_px, "and kept its pixels")
added = new_layers(img, old)
check(len(added) == 1, "one new layer")
res = added[0]
check(tuple(res.get_offsets()[1:]) == (0, 0) and (res.get_width(), res.get_height()) == (80, 64),
      "the result covers the new canvas: %r" % layer_summary(img))
check(res.get_name() == "Outpaint (classical, patch)", "named: %r" % res.get_name())
after = composite(img)
same = all(after[((y * 80) + x + 16) * 4:((y * 80) + x + 16) * 4 + 4] == before[(y * 64 + x) * 4:(y * 64 + x) * 4 + 4]
           for y in range(48) for x in range(64))
check(same, "the original area is exactly as before")
new_alpha = [after[((y * 80) + x) * 4 + 3] for y in range(64) for x in range(80) if x < 16 or y >= 48]
check(min(new_alpha) == 255, "the new area is filled")
img.delete()
""",
        url=server.url,
    )


def test_outpaint_travels_through_shared_memory_with_the_wire_paths_pixels(profile, server, trixie_root):
    """GIMP's plug-in and the server on one machine: with this machine's /dev/shm seen inside the GIMP root, the
    3 MB layer goes to the server as a file of the connection's shared folder and the result comes back as one (the
    server's log says so); without it the plug-in cannot see the folder and keeps to the wire, and the result layer is
    the same, byte for byte."""
    from hosts.trixie import shared_dev_shm

    body = (
        "import hashlib\nW, H = 1000, 800\n"
        + PHOTO_OUTPAINT
        + """
added = new_layers(img, old)
check(len(added) == 1 and (added[0].get_width(), added[0].get_height()) == (W + 16, H + 16), "one result layer")
with open(P["digest"], "w") as f:
    f.write(hashlib.sha256(read(added[0], 0, 0, W + 16, H + 16)).hexdigest())
img.delete()
"""
    )
    digests, logs = {}, {}
    for shared in (True, False):
        before = server.log_path.read_text(errors="replace")
        name = f"digest-{shared}.txt"
        if shared:
            with shared_dev_shm(trixie_root) as mounted:
                if not mounted:
                    pytest.skip("cannot bind-mount /dev/shm into the GIMP root (needs root)")
                batch(profile, body, url=server.url, digest=f"{profile.inside}/{name}")
        else:
            batch(profile, body, url=server.url, digest=f"{profile.inside}/{name}")
        time.sleep(0.5)  # the server's log lines of the job
        logs[shared] = server.log_path.read_text(errors="replace")[len(before) :]
        digests[shared] = (profile.outside / name).read_text()
    assert "payload(s) read from shared memory" in logs[True] and "written to shared memory" in logs[True]
    assert "shared memory" not in logs[False]
    assert digests[True] == digests[False]


def test_a_seamless_upscale_keeps_a_texture_seamless(profile, server):
    """GIMP's Upscale with *Seamless texture* on a texture that wraps: the result still wraps (the seam check of
    ``server.seamless``), and without the option it does not."""
    import numpy as np

    from server import seamless
    from test_seamless import texture

    tex = texture(40, 32, seed=4)
    (profile.outside / "texture.raw").write_bytes(tex.tobytes())
    batch(
        profile,
        """
img, (layer,) = make_image(40, 32)
buf = layer.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, 40, 32), RGBA, open(P["dir"] + "/texture.raw", "rb").read())
buf.flush()
for tileable in (True, False):
    new = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=2.5, tileable=tileable, server=P["url"]).index(1)
    check((new.get_width(), new.get_height()) == (100, 80), "a new 100x80 image")
    open(P["dir"] + "/upscaled-%s.raw" % tileable, "wb").write(read(new.get_layers()[0], 0, 0, 100, 80))
    new.delete()
img.delete()
""",
        url=server.url,
        dir=profile.inside,
    )
    for tileable in (True, False):
        out = np.frombuffer((profile.outside / f"upscaled-{tileable}.raw").read_bytes(), np.uint8).reshape(80, 100, 4)
        report = seamless.seam_check(out[..., :3])
        assert (seamless.continuous(report, 0.1) is None) is tileable, (tileable, report)


def test_upscale_into_a_new_image_or_a_new_layer(profile, server):
    batch(
        profile,
        """
img, (layer,) = make_image(40, 30)
summary = layer_summary(img)
result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=2.0, server=P["url"])
new = result.index(1)
check(new is not None and (new.get_width(), new.get_height()) == (80, 60), "a new 80x60 image")
check(len(new.get_layers()) == 1 and new.get_layers()[0].get_name() == "Upscale", "with one layer: %r" % layer_summary(new))
check(layer_summary(img) == summary and (img.get_width(), img.get_height()) == (40, 30), "the source is untouched")
big = read(new.get_layers()[0], 0, 0, 80, 60)
small = read(layer, 0, 0, 40, 30)
diff = sum(abs(big[((2 * y) * 80 + 2 * x) * 4 + c] - small[(y * 40 + x) * 4 + c])
           for y in range(5, 25) for x in range(5, 35) for c in range(3)) / (20 * 30 * 3)
check(diff < 24, "the upscaled image looks like the original (mean difference %.1f)" % diff)
new.delete()

img.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 10, 8)
result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=3.0, server=P["url"])
new = result.index(1)
check((new.get_width(), new.get_height()) == (30, 24), "a selection upscales its bounds")
new.delete()
Gimp.Selection.none(img)

old = img.get_layers()
result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=2.0, target="layer", server=P["url"])
check(result.index(1) is None, "no new image when the result goes into a layer")
check((img.get_width(), img.get_height()) == (80, 60), "the canvas is enlarged by the scale")
added = new_layers(img, old)
check(len(added) == 1 and tuple(added[0].get_offsets()[1:]) == (0, 0) and added[0].get_width() == 80,
      "one 80x60 layer at (0, 0): %r" % layer_summary(img))
check(read(layer, 0, 0, 40, 30) == small and tuple(layer.get_offsets()[1:]) == (0, 0), "the user's layer is untouched")
img.delete()
""",
        url=server.url,
    )


def test_a_6000x4000_photo_is_outpainted_and_upscaled(profile, server):
    """A whole 24-megapixel document through the real plug-in: outpaint (the canvas grows, no pixel of the photo moves)
    and a 2x upscale into a new 12000x8000 image."""
    from hosts.gimp import run_batch

    run_batch(
        profile,
        "W, H = 6000, 4000\n"
        + PHOTO_OUTPAINT
        + """
check((img.get_width(), img.get_height()) == (W + 16, H + 16), "canvas grew by 16 px left and bottom")
check(read(layer, 16, 0, W, H) == photo, "the photo moved with the canvas and kept every pixel")
added = new_layers(img, old)
check(len(added) == 1 and (added[0].get_width(), added[0].get_height()) == (W + 16, H + 16),
      "one result layer over the new canvas: %r" % layer_summary(img))
inside = read(added[0], 16, 0, W, H)
check(all(inside[c::4] == photo[c::4] for c in range(3)) and inside[3::4].count(0) == W * H,
      "the result keeps the photo's pixels exactly, transparent over them")
band = read(added[0], 0, 0, 16, H + 16) + read(added[0], 16, H, W, 16)
check(band[3::4].count(255) == len(band) // 4, "the new area is filled")
img.delete()

img = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(img, "photo", W, H, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(layer, None, 0)
buf = layer.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, photo)
buf.flush()
img.set_selected_layers([layer])
result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=2.0, server=P["url"])
new = result.index(1)
check(new is not None and (new.get_width(), new.get_height()) == (2 * W, 2 * H), "a new 12000x8000 image")
(up,) = new.get_layers()
check((up.get_width(), up.get_height()) == (2 * W, 2 * H), "holding the upscaled photo: %r" % layer_summary(new))
line = read(up, 0, 4000, 2 * W, 1)
reds = [line[x * 4] for x in range(1000, 2 * W - 1000, 1000)]
check(all(a < b for a, b in zip(reds, reds[1:])), "the photo's red ramp is still a ramp: %r" % reds)
check(line[3::4].count(255) == 2 * W, "and opaque")
new.delete()
img.delete()
""",
        {"url": server.url},
        timeout=900,
    ).assert_ok()


def test_control_layer_from_image(profile, server):
    batch(
        profile,
        """
img, (layer,) = make_image(64, 48)
old = img.get_layers()
expect_ok("plug-in-paintbridge-control-layer", img, [layer], preprocessor="canny", low_threshold=50,
          high_threshold=120, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and added[0].get_name() == "Control: canny", "one control layer: %r" % layer_summary(img))
res = added[0]
check(tuple(res.get_offsets()[1:]) == (0, 0) and (res.get_width(), res.get_height()) == (64, 48), "over the canvas")
px = read(res, 0, 0, 64, 48)
check(set(px[3::4]) == {255}, "opaque")
check(set(px[0::4]) <= {0, 255} and 255 in px[0::4] and 0 in px[0::4], "black with white edges")
img.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 20, 12)
old = img.get_layers()
expect_ok("plug-in-paintbridge-control-layer", img, [layer], preprocessor="lineart", server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and tuple(added[0].get_offsets()[1:]) == (8, 8) and added[0].get_width() == 20,
      "a selection makes a control layer of its bounds: %r" % layer_summary(img))
old = img.get_layers()
expect_ok("plug-in-paintbridge-control-layer", img, [], preprocessor="scribble", server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and img.get_layers()[0].get_id() == added[0].get_id(),
      "without an active layer the result goes on top: %r" % layer_summary(img))
img.delete()
""",
        url=server.url,
    )


def test_failures_end_with_a_clear_message_and_an_untouched_image(profile, server):
    result = batch(
        profile,
        """
img, (layer,) = make_image(64, 64)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 20, 16, 16)
expect_failure("plug-in-paintbridge-inpaint", img, [layer], "execution-error", "Cannot reach the Paintbridge server",
               model="classical", server=P["down_url"])
expect_failure("plug-in-paintbridge-img2img", img, [layer], "execution-error", "classical engine cannot do 'img2img'",
               model="classical", server=P["url"])
expect_failure("plug-in-paintbridge-generate", img, [layer], "execution-error", "needs a diffusion checkpoint",
               server=P["url"])
# The model argument is a choice of the installed models: a name the server does not list is not taken (GIMP keeps
# the server's default), so an unknown model cannot even be sent.
cfg = PDB.lookup_procedure("plug-in-paintbridge-inpaint").create_config()
cfg.set_property("model", "not-a-model")
check(cfg.get_property("model") == "default", "an unknown model is not a choice: %r" % cfg.get_property("model"))
cfg.set_property("model", "classical")
check(cfg.get_property("model") == "classical", "the built-in engine is a choice")
expect_failure("plug-in-paintbridge-inpaint", img, [layer], "calling-error", "has no layer mask",
               model="classical", mask_source="layer-mask", server=P["url"])
expect_failure("plug-in-paintbridge-outpaint", img, [layer], "calling-error", "at least one side",
               model="classical", extend_right=False, server=P["url"])
expect_failure("plug-in-paintbridge-inpaint", img, [], "calling-error", "needs an active layer",
               model="classical", source="layer", server=P["url"])
Gimp.Selection.none(img)
expect_failure("plug-in-paintbridge-inpaint", img, [layer], "calling-error", "needs a selection",
               model="classical", server=P["url"])
img.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, 8, 8)
Gimp.edit_copy([layer])
floating = Gimp.edit_paste(layer, False)[0]
check(img.get_floating_sel() is not None, "a floating selection for the next check")
status, message, _r = run_proc("plug-in-paintbridge-inpaint", img, [layer], model="classical", server=P["url"])
check(status == "calling-error" and "floating selection" in message, "a floating selection is named: %s" % message)
img.delete()
""",
        url=server.url,
        down_url=f"ws://127.0.0.1:{_free_port()}",
    )
    # Gimp.message (a dialog in the GUI, the console in batch mode) says the same, and no traceback is printed
    assert "Paintbridge: Cannot reach the Paintbridge server" in result.output
    assert "Traceback" not in result.output


def test_a_connection_cut_mid_job_still_delivers_the_layer(profile, server):
    """The network drops once while the job runs (a proxy cuts the connection right after the server queued it): the
    plug-in reconnects with its session id, the server re-sends what it missed, and the layer arrives."""
    from cutproxy import CuttingProxy

    with CuttingProxy(server.port) as proxy:
        batch(
            profile,
            """
img, (layer,) = make_image(120, 96)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 40, 30)
old = img.get_layers()
expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt="over a flaky network", model="classical",
          grow=0, feather=0, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1, "the layer arrived after the reconnect: %r" % layer_summary(img))
check(added[0].get_name() == "over a flaky network (classical, patch)", "named: %r" % layer_summary(img))
img.delete()
""",
            url=proxy.url,
        )
        assert proxy.cuts == 1 and proxy.connections >= 2, (proxy.cuts, proxy.connections)
    assert "resumed with 1 open job(s)" in server.log_path.read_text()


def test_server_address_is_remembered_between_runs(profile, server):
    from hosts.gimp import gimp_profile, run_batch

    body = """
img, (layer,) = make_image(64, 64)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 20, 16, 16)
expect_ok("plug-in-paintbridge-inpaint", img, [layer], model="classical", server=P["server"])
img.delete()
"""
    with gimp_profile() as fresh:
        run_batch(fresh, body, {"server": server.url}).assert_ok()
        saved = json.loads((fresh.gimp_dir / "paintbridge.json").read_text())
        assert saved["server"] == server.url
        run_batch(fresh, body, {"server": ""}).assert_ok()  # empty = the remembered address


def test_tiny_diffusion_model_generate_batch_and_control_layer(trixie_root, tmp_path):
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("sd15", "cn-sd15-canny"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
img, (layer, sketch) = make_image(64, 64, layers=2)
sketch.set_visible(False)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 12, 40, 36)
sel = selection_mask(img)
before = composite(img)
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a tiny house", seed=1234, batch=2, steps=2,
          grow=0, feather=0,
          server=P["url"])
added = new_layers(img, old)
names = [l.get_name() for l in added]
check(len(added) == 2, "a batch of 2 gives two layers: %r" % layer_summary(img))
check(names[0] == "a tiny house (seed 1234)" and names[1].startswith("a tiny house (seed ") and names[0] != names[1],
      "named after prompt and seed: %r" % names)
after = composite(img)
check(all(after[i * 4:i * 4 + 4] == before[i * 4:i * 4 + 4] for i in range(64 * 64) if sel[i] == 0),
      "outside the selection nothing changed")
for res in added:
    ok, rx, ry = res.get_offsets()
    w, h = res.get_width(), res.get_height()
    alpha = read(res, rx, ry, w, h)[3::4]
    inside = bytes(sel[(ry + y) * 64 + rx + x] for y in range(h) for x in range(w))
    check(alpha == inside, "generate into a selection: the layer's alpha is the soft selection (server-composited)")

old = img.get_layers()
expect_ok("plug-in-paintbridge-img2img", img, [layer], prompt="a tiny house", seed=7, steps=2, strength=0.5,
          control_layer=sketch, control_type="canny", control_strength=0.8, control_preprocess=True,
          control_2_layer=layer, control_2_type="canny", control_2_strength=0.4, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and added[0].get_name() == "a tiny house (seed 7)", "img2img with two control layers: %r"
      % layer_summary(img))

old = img.get_layers()
expect_ok("plug-in-paintbridge-outpaint", img, [layer], prompt="a tiny house", seed=3, steps=2, extend=16,
          extend_right=False, extend_top=True, server=P["url"])
check((img.get_width(), img.get_height()) == (64, 80), "outpaint with the diffusion model grew the canvas")
added = new_layers(img, old)
check(len(added) == 1 and added[0].get_name() == "a tiny house (seed 3)" and added[0].get_height() == 80,
      "one outpaint layer over the new canvas: %r" % layer_summary(img))

Gimp.Selection.none(img)
result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=2.0, refine=0.3, steps=2, seed=11,
                   prompt="a tiny house", server=P["url"])
new = result.index(1)
check((new.get_width(), new.get_height()) == (128, 160), "upscale and refine: a new 128x160 image")
check(new.get_layers()[0].get_name() == "a tiny house (seed 11)", "named: %r" % layer_summary(new))
new.delete()
img.delete()
""",
                {"url": proc.url},
                timeout=600,
            ).assert_ok()
            _generate_matches_the_client_core_job(prof, run_batch, proc.url)
    finally:
        proc.stop()


def test_a_pose_layer_made_from_the_image_guides_img2img_and_its_edits_count(trixie_root, tmp_path):
    """*Control Layer from Image* with the pose preprocessor (the OpenPose files constructed by tests/tiny_pose.py,
    whose body model finds nobody: a black layer), that layer as img2img's pose control (a tiny pose ControlNet,
    found by its name), then the painter's green block on the pose layer changes what the same seed paints."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("sd15", "cn-sd15-openpose", "pose-annotators"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
img, (layer,) = make_image(64, 64)
old = img.get_layers()
expect_ok("plug-in-paintbridge-control-layer", img, [layer], preprocessor="pose", server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and added[0].get_name() == "Control: pose", "one pose layer: %r" % layer_summary(img))
pose = added[0]
px = read(pose, 0, 0, 64, 64)
check(set(px[3::4]) == {255} and set(px[0::4]) | set(px[1::4]) | set(px[2::4]) == {0}, "opaque black: nobody found")
before = read(layer, 0, 0, 64, 64)

def img2img(seed):
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-img2img", img, [layer], prompt="a dancer", seed=seed, steps=2, strength=0.8,
              control_layer=pose, control_type="pose", control_strength=1.0, server=P["url"])
    (new,) = new_layers(img, old)
    data = read(new, *new.get_offsets()[1:], new.get_width(), new.get_height())
    img.remove_layer(new)
    return data

made = img2img(7)
check(img2img(7) == made, "the same job twice paints the same pixels")
buf = pose.get_buffer()
buf.set(Gegl.Rectangle.new(16, 21, 32, 21), RGBA, bytes((0, 255, 0, 255)) * (32 * 21))  # the painter's green block
buf.flush()
edited = img2img(7)
check(len(made) == len(edited) and edited != made, "the edited pose layer reaches the job")
check(read(layer, 0, 0, 64, 64) == before, "the user's layer is untouched")
img.delete()
""",
                {"url": proc.url},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


def test_tiny_flux_model_generate_into_a_selection(trixie_root, tmp_path):
    """A Flux.1 model kept as ComfyUI users keep it (transformer in diffusion_models/, text encoders, VAE): generate
    into a selection from GIMP, the layer composited by the selection, nothing outside it changed. Then the same job
    with a reference layer in slot 1 runs through Flux Redux (a ComfyUI style_models/ file and SigLIP tower): same
    seed, other pixels."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("flux-split", "redux-file"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
img, (layer,) = make_image(64, 64)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 12, 40, 36)
sel = selection_mask(img)
before = composite(img)
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a tiny house", seed=5, steps=2, grow=0, feather=0,
          server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and added[0].get_name() == "a tiny house (seed 5)", "one Flux layer: %r" % layer_summary(img))
after = composite(img)
check(all(after[i * 4:i * 4 + 4] == before[i * 4:i * 4 + 4] for i in range(64 * 64) if sel[i] == 0),
      "outside the selection nothing changed")
check(any(after[i * 4:i * 4 + 3] != before[i * 4:i * 4 + 3] for i in range(64 * 64) if sel[i] == 255),
      "inside the selection the Flux model painted")
plain = read(added[0], 0, 0, 64, 64)
picture = Gimp.Layer.new(img, "Reference", 64, 64, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(picture, None, 0)
buf = picture.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, 64, 64), RGBA, bytes((220, 40, 30, 255)) * (64 * 64))
buf.flush()
picture.set_visible(False)
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a tiny house", seed=5, steps=2, grow=0, feather=0,
          server=P["url"], **{"reference-layer": picture, "reference-type": "style", "reference-strength": 1.0})
guided = new_layers(img, old)
check(len(guided) == 1, "one layer guided by the reference: %r" % layer_summary(img))
check(read(guided[0], 0, 0, 64, 64) != plain, "the Redux reference changed the Flux layer at the same seed")
img.delete()
""",
                {"url": proc.url},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


def test_instruction_edit_on_a_tiny_kontext_model(trixie_root, tmp_path):
    """Filters > Paintbridge > Edit Selection from Instruction: its model choice lists only models whose listing says
    they can edit (a tiny Flux.1 Kontext, not the tiny Flux.1 dev beside it); the server's default (dev) is refused
    before anything is sent; the edit of an ellipse comes back as one layer composited by the selection."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from gimp_plugin import settings as gimp_settings
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("flux", "flux-kontext"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            gimp_settings.remember(prof.gimp_dir, proc.url, None)  # GIMP registers the choices from this server
            run_batch(
                prof,
                """
img, (layer,) = make_image(64, 64)
cfg = PDB.lookup_procedure("plug-in-paintbridge-edit").create_config()
cfg.set_property("model", "tiny-flux")
check(cfg.get_property("model") == "default", "a model that cannot edit is no choice: %r" % cfg.get_property("model"))
cfg.set_property("model", "tiny-flux-kontext")
check(cfg.get_property("model") == "tiny-flux-kontext", "the Kontext model is a choice")
expect_failure("plug-in-paintbridge-edit", img, [layer], "calling-error", "needs a model that edits from an instruction",
               prompt="make it red", server=P["url"])
img.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 12, 40, 36)
sel = selection_mask(img)
before = composite(img)
old = img.get_layers()
expect_ok("plug-in-paintbridge-edit", img, [layer], model="tiny-flux-kontext", prompt="make the roof red", seed=5,
          steps=2, grow=0, feather=0, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1 and added[0].get_name() == "make the roof red (seed 5)", "one edited layer: %r" % layer_summary(img))
after = composite(img)
check(all(after[i * 4:i * 4 + 4] == before[i * 4:i * 4 + 4] for i in range(64 * 64) if sel[i] == 0),
      "outside the selection nothing changed")
check(any(after[i * 4:i * 4 + 3] != before[i * 4:i * 4 + 3] for i in range(64 * 64) if sel[i] == 255),
      "inside the selection the Kontext model edited")
img.delete()
""",
                {"url": proc.url},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


def _generate_matches_the_client_core_job(prof, run_batch, url: str) -> None:
    """Generate into a soft ellipse in GIMP gives exactly the layer the client core's own job gives for the same
    pixels and selection (the Krita host test checks its side against the same core path)."""
    from client import jobs, session, settings as cs
    from clientdoc import MemoryDocument, Reader

    run_batch(
        prof,
        """
img, (layer,) = make_image(96, 72)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 20, 14, 52, 40)
Gimp.Selection.feather(img, 8.0)
old = img.get_layers()
open(P["dir"] + "/image.rgba", "wb").write(composite(img))
open(P["dir"] + "/selection.gray", "wb").write(selection_mask(img))
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a tiny house", seed=77, steps=2, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1, "one generated layer: %r" % layer_summary(img))
res = added[0]
ok, rx, ry = res.get_offsets()
w, h = res.get_width(), res.get_height()
open(P["dir"] + "/layer.box", "w").write("%d %d %d %d" % (rx, ry, w, h))
open(P["dir"] + "/layer.rgba", "wb").write(read(res, rx, ry, w, h))
img.delete()
""",
        {"url": url, "dir": prof.inside},
        timeout=600,
    ).assert_ok()
    out = prof.outside
    doc = MemoryDocument(96, 72, (out / "image.rgba").read_bytes(), (out / "selection.gray").read_bytes())
    s = cs.Settings(mode="generate", prompt="a tiny house", seed=77, steps=2)
    inputs = jobs.capture(s, doc.selection_bounds(), 96, 72, Reader(doc, "rgba8"))
    client = session.open_client(url, None, "test", "0")
    try:
        welcome = client.welcome
        job = jobs.build_job(
            s,
            inputs,
            cs.Defaults.from_welcome(welcome),
            cs.model_entry(welcome.models, ""),
            job_id=session.new_job_id("core"),
        )
        (layer,), _params = session.run_job(client, job)
    finally:
        client.close()
    x, y, w, h = map(int, (out / "layer.box").read_text().split())
    assert (layer.x, layer.y, layer.width, layer.height) == (x, y, w, h)
    assert any(0 < a < 255 for a in layer.data[3::4]), "the soft selection shapes the layer"
    assert layer.data == (out / "layer.rgba").read_bytes(), "GIMP's layer is the client core job's layer"


def test_generate_into_the_shared_ellipse_and_upscale_its_box(trixie_root, tmp_path):
    """GIMP's side of the comparison with Krita (tests/ellipse_case.py, compared at the end of test_krita_host.py):
    the soft selection shapes the generated layer, the upscale is the selection's box at twice its size."""
    import numpy as np

    import ellipse_case
    from crosshost import gimp_pixels

    got = gimp_pixels(tmp_path)
    w, h = ellipse_case.WIDTH, ellipse_case.HEIGHT
    expected = np.frombuffer(ellipse_case.selection(), np.uint8).reshape(h, w)
    alpha = got["generate"][..., 3].astype(int)
    assert (alpha[expected == 255] == 255).all()  # fully generated inside
    soft = (expected > 0) & (expected < 255)
    assert ((alpha[soft] > 0) & (alpha[soft] < 255)).mean() > 0.5  # the feathered rim stays soft
    assert alpha[expected == 0].mean() < 16
    bx, by, bw, bh = ellipse_case.UPSCALE_BOX
    scale = int(ellipse_case.UPSCALE_SCALE)
    assert got["upscale"].shape == (bh * scale, bw * scale, 4)
    source = np.frombuffer(ellipse_case.pattern(), np.uint8).reshape(h, w, 4)[by : by + bh, bx : bx + bw].astype(float)
    blocks = got["upscale"].astype(float).reshape(bh, scale, bw, scale, 4).mean(axis=(1, 3))
    assert np.abs(blocks[..., :3] - source[..., :3]).mean() < 12  # the selected part, not the canvas


GUI_SCRIPT = """
import os, time
def marker(name):
    open(P["dir"] + "/" + name, "w").close()
def wait_marker(name, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(P["dir"] + "/" + name):
        check(time.time() < end, "the test wrote %s in time" % name)
        time.sleep(0.2)

img, (layer,) = make_image(320, 240)
Gimp.Display.new(img)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 110, 70, 100, 90)
Gimp.Selection.feather(img, 10.0)
Gimp.displays_flush()
before_layers = layer_summary(img)
before = composite(img)
proc = PDB.lookup_procedure("plug-in-paintbridge-inpaint")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [layer])
cfg.set_property("prompt", "a quiet lake")
cfg.set_property("model", "classical")
cfg.set_property("server", P["url"])
result = proc.run(cfg)
check(result.index(0) == Gimp.PDBStatusType.SUCCESS, "the dialog's run succeeded: %r" % (result.index(0),))
check(len(img.get_layers()) == 2 and img.get_layers()[0].get_name() == "a quiet lake (classical, patch)",
      "one new layer: %r" % layer_summary(img))
check(composite(img) != before, "the image shows the result")
Gimp.displays_flush()
marker("inserted")
wait_marker("undo-pressed")
end = time.time() + 30
while layer_summary(img) != before_layers and time.time() < end:
    time.sleep(0.2)
check(layer_summary(img) == before_layers, "one undo step removes the result: %r" % layer_summary(img))
check(composite(img) == before, "and restores the original pixels")
check(img.get_parasite("paintbridge-history") is not None, "the undone result stays in the image's history")
marker("verified")
"""


def test_gui_inpaint_dialog_runs_with_return_and_undoes_in_one_step(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start(GUI_SCRIPT, {"url": server.url, "dir": profile.inside})
        dialog = session.wait_window("Paintbridge: Inpaint Selection", timeout=120)
        time.sleep(1.0)  # let it draw
        session.screenshot(artifacts_dir / "gimp-inpaint-dialog.png")
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "Return")
        session.wait_file("inserted", timeout=120)
        time.sleep(1.0)
        session.screenshot(artifacts_dir / "gimp-inpaint-result.png")
        image_window = session.wait_window(r"\[Untitled\].* GIMP$", timeout=30)
        session.xdotool("windowfocus", "--sync", image_window)
        session.xdotool("key", "--clearmodifiers", "ctrl+z")
        (profile.outside / "undo-pressed").touch()
        session.wait_file("verified", timeout=60)
        session.screenshot(artifacts_dir / "gimp-inpaint-undone.png")
    except BaseException:
        session.screenshot_quietly(artifacts_dir / "gimp-inpaint-failure.png")
        raise
    finally:
        session.stop()


LIVE_SCRIPT = """
import os, time
sys.path[:0] = [P["plugin_dir"] + "/vendor", P["plugin_dir"]]
from protocol.geometry import Box, context_box
def marker(name):
    open(P["dir"] + "/" + name, "w").close()
def wait_marker(name, timeout=120):
    end = time.time() + timeout
    while not os.path.exists(P["dir"] + "/" + name):
        check(time.time() < end, "the test wrote %s in time" % name)
        time.sleep(0.2)

img, (layer,) = make_image(320, 240)
Gimp.Display.new(img)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 40, 40, 80, 70)
Gimp.displays_flush()
first_bounds = tuple(Gimp.Selection.bounds(img)[2:])
before_layers = layer_summary(img)
before = composite(img)
proc = PDB.lookup_procedure("plug-in-paintbridge-live-inpaint")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [layer])
cfg.set_property("prompt", "live lake")
cfg.set_property("model", "classical")
cfg.set_property("server", P["url"])
result = proc.run(cfg)
check(result.index(0) == Gimp.PDBStatusType.SUCCESS, "OK kept a result: %r" % (result.index(0),))
ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(img)
check((x1, y1, x2, y2) != first_bounds, "the test changed the selection while the dialog was open")
box = context_box(Box(x1, y1, x2 - x1, y2 - y1), 320, 240)
layers = img.get_layers()
check(len(layers) == 2 and layers[0].get_name() == "live lake (classical, patch)", "one kept layer, no preview left: %r"
      % layer_summary(img))
check(tuple(layers[0].get_offsets()[1:]) == (box.x, box.y) and layers[0].get_width() == box.width,
      "the kept result is the one for the changed selection: %r vs %r" % (layer_summary(img), box))
marker("kept")
wait_marker("undo-pressed")
end = time.time() + 30
while layer_summary(img) != before_layers and time.time() < end:
    time.sleep(0.2)
check(layer_summary(img) == before_layers, "one undo step removes the kept result (previews left no undo steps)")
check(composite(img) == before, "and restores the original pixels")
check(img.get_parasite("paintbridge-history") is not None, "the live result stays in the image's history")
marker("verified")
"""


def test_gui_live_inpaint_reruns_on_selection_change_and_keeps_one_layer(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start(
            LIVE_SCRIPT, {"url": server.url, "dir": profile.inside, "plugin_dir": profile.inner(profile.plugin_dir)}
        )
        dialog = session.wait_window("Paintbridge: Live Inpaint", timeout=120)
        session.xdotool("windowmove", "--sync", dialog, "820", "0")  # no window manager: keep it off the canvas
        # The first preview arrives without pressing anything: the image title then counts 2 layers.
        session.wait_window(r"\[Untitled\].*2 layers.* GIMP$", timeout=60)
        time.sleep(1.0)
        session.screenshot(artifacts_dir / "gimp-live-first.png")
        image_window = session.wait_window(r"\[Untitled\].* GIMP$", timeout=30)
        session.xdotool("windowfocus", "--sync", image_window)
        session.xdotool("key", "--clearmodifiers", "ctrl+a")  # Select > All: the live dialog repaints for it
        time.sleep(4.0)
        session.screenshot(artifacts_dir / "gimp-live-second.png")
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "Return")
        session.wait_file("kept", timeout=120)
        session.xdotool("windowfocus", "--sync", image_window)
        session.xdotool("key", "--clearmodifiers", "ctrl+z")
        (profile.outside / "undo-pressed").touch()
        session.wait_file("verified", timeout=60)
    except BaseException:
        session.screenshot_quietly(artifacts_dir / "gimp-live-failure.png")
        raise
    finally:
        session.stop()


def test_download_models_pulls_through_the_server_and_the_model_shows_up(profile, tmp_path):
    """Filters > Paintbridge > Download Models in a real GIMP: a preset is pulled through the protocol from the local
    hub stand-in onto the server's machine, and the plug-in then sees the model in the server's listing."""
    from conftest import ServerProcess
    from server.downloads import Catalogue
    from tests.hubstandin import Hub, payload

    upscaler = Catalogue.load().files["upscaler-4x-ultrasharp"]
    models = tmp_path / "models"
    models.mkdir()
    data = payload(150_000, seed=9)
    with Hub() as hub:
        hub.files[(upscaler.repo, upscaler.file)] = data
        proc = ServerProcess(["--models", str(models)], tmp_path / "server.log", env=hub.env).start()
        try:
            result = batch(
                profile,
                PLUGIN_PATH
                + """
from client import models as cm
from client.session import fetch_models
img, (layer,) = make_image(32, 32)
before, statuses = cm.fetch_listing(P["url"], None, "host-test", "0", 10.0)
check("4x-UltraSharp" not in [m["name"] for m in before], "not installed before")
check(not {s.name: s for s in statuses}["upscaler"].complete, "the upscaler preset lacks its file")
status, message, _r = run_proc("plug-in-paintbridge-download-models", img, [], names="", server=P["url"])
check(status == "calling-error" and "at least one preset" in message, "an empty name is refused: %s" % message)
expect_ok("plug-in-paintbridge-download-models", img, [], names="upscaler", server=P["url"])
after = fetch_models(P["url"], None, "host-test", "0", 10.0)
check(("4x-UltraSharp", "upscaler") in [(m["name"], m["kind"]) for m in after], "listed after the pull: %r" % after)
_l, statuses = cm.fetch_listing(P["url"], None, "host-test", "0", 10.0)
check({s.name: s for s in statuses}["upscaler"].complete, "the upscaler preset is complete now")
status, message, _r = run_proc("plug-in-paintbridge-download-models", img, [], names="nonsense", server=P["url"])
check(status == "execution-error" and "'nonsense' is not in the catalogue" in message, "unknown name: %s" % message)
img.delete()
""",
                url=proc.url,
                plugin_dir=profile.inner(profile.plugin_dir),
            )
        finally:
            proc.stop()
    assert (models / upscaler.target).read_bytes() == data
    assert any(method == "GET" for method, _path, _range in hub.requests), "the file came from the stand-in hub"
    recorded = json.loads((profile.gimp_dir / "paintbridge-models.json").read_text())
    assert {"name": "4x-UltraSharp", "kind": "upscaler"} in recorded["models"]
    assert "download complete" in result.output and "4x-UltraSharp" in result.output


def test_reference_layers_guide_generate_and_missing_adapters_are_named(trixie_root, tmp_path):
    """Reference images (issue 15): the same seed with and without a reference layer (type style, strength 1.5) gives
    different pixels; a face reference without a face adapter fails with a message naming it, image untouched."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("sd15", "ipa-sd15-plus"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
img, (layer, picture) = make_image(64, 64, layers=2)
picture.set_visible(False)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 48, 40)
results = {}
for name, extra in (("plain", {}), ("style", dict(reference_layer=picture, reference_type="style",
                                                    reference_strength=1.5))):
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a tiny house", seed=5, steps=3, grow=0, feather=0,
              server=P["url"], **extra)
    added = new_layers(img, old)
    check(len(added) == 1, "one layer (%s): %r" % (name, layer_summary(img)))
    ok, rx, ry = added[0].get_offsets()
    results[name] = read(added[0], rx, ry, added[0].get_width(), added[0].get_height())
check(results["plain"] != results["style"], "the reference layer changed the result of the same seed")
expect_failure("plug-in-paintbridge-img2img", img, [layer], "execution-error", "face", prompt="a tiny house",
               steps=2, reference_layer=picture, reference_type="face", server=P["url"])
img.delete()
""",
                {"url": proc.url},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


def test_detail_faces_and_hands_procedure_and_hires_generate_on_a_portrait(trixie_root, tmp_path):
    """Hires fix and detailer on the tiny SD1.5 model: Filters > Paintbridge > Detail Faces on a portrait with a
    drawn face and hand (found by the tests' YuNet- and palm-detector-format networks, tests/tiny_yunet.py and
    tests/tiny_palm.py) repaints both in one job and only around them, its Find choice offering hands because the
    server (remembered in the profile) lists a hand detector; generate with the hires fix differs from one pass."""
    from PIL import Image

    import tiny_palm
    import tiny_yunet
    from conftest import ServerProcess
    from factory import make_models_dir
    from gimp_plugin import settings as gimp_settings
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("sd15",))
    tiny_yunet.write_detector(models / "detectors")
    tiny_palm.write_detector(models / "detectors")
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            photo = tiny_yunet.portrait()  # the face at 180,66 88x104
            tiny_palm.draw_hand(photo, 373, 352, 64)  # the hand found at 302,249 142x142
            Image.fromarray(photo).save(prof.outside / "portrait.png")
            gimp_settings.remember(prof.gimp_dir, proc.url, None)  # the listing GIMP registers the choices from
            run_batch(
                prof,
                """
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(P["photo"]))
layer = img.get_layers()[0]
check((img.get_width(), img.get_height()) == (512, 512), "the portrait loaded")
spec = Gimp.get_pdb().lookup_procedure("plug-in-paintbridge-detail").find_argument("detail-targets")
nicks = list(Gimp.param_spec_choice_get_choice(spec).list_nicks())
check(nicks == ["face", "hand", "face-hand"], "hands offered with the server's hand detector: %r" % nicks)
before = composite(img)
old = img.get_layers()
expect_ok("plug-in-paintbridge-detail", img, [layer], prompt="a portrait", seed=5, steps=4, detail_strength=0.6,
          detail_prompt="a smiling face", detail_targets="face-hand", server=P["url"])
added = new_layers(img, old)
check(len(added) == 1, "one layer with the repainted face and hand: %r" % layer_summary(img))
res = added[0]
ok, rx, ry = res.get_offsets()
w, h = res.get_width(), res.get_height()
alpha = read(res, rx, ry, w, h)[3::4]
outside = [(rx + i % w, ry + i // w) for i in range(w * h) if alpha[i]
           and not (100 < rx + i % w < 330 and ry + i // w < 260)  # the face's crop
           and not (250 < rx + i % w < 490 and 200 < ry + i // w < 440)]  # the hand's crop
check(not outside, "only around the face and the hand: %r" % outside[:5])
check(alpha[(66 + 52 - ry) * w + 180 + 44 - rx] == 255, "the face's centre is repainted")
check(alpha[(320 - ry) * w + 373 - rx] == 255, "the hand's centre is repainted")
after = composite(img)
check(after != before, "the face and the hand changed")
check(all(after[i * 4:i * 4 + 4] == before[i * 4:i * 4 + 4] for i in range(0, 512 * 512, 7) if i // 512 > 440),
      "below the hand nothing changed")

res.set_visible(False)
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a portrait", seed=3, steps=4, server=P["url"])
plain = new_layers(img, old)[0]
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a portrait", seed=3, steps=4, hires=True,
          hires_upscaler="lanczos", hires_scale=2.0, hires_strength=0.5, server=P["url"])
two = new_layers(img, old)
check(len(two) == 1 and (two[0].get_width(), two[0].get_height()) == (512, 512), "hires: one 512x512 layer: %r"
      % layer_summary(img))
check(read(two[0], 0, 0, 512, 512) != read(plain, 0, 0, 512, 512), "two passes paint differently from one")
img.delete()
""",
                {"url": proc.url, "photo": prof.inside + "/portrait.png"},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


# --- history (issue 13): Paintbridge data and results kept inside the .xcf --------------------------------------------


def test_document_data_survives_saving_closing_and_reopening_the_xcf(profile):
    batch(
        profile,
        PLUGIN_PATH
        + """
import os, tempfile
from client.docdata import DocumentDataError
from gimp_plugin import host
img, (layer,) = make_image(64, 48)
payload = os.urandom(2000000) + bytes(1000)
host.save_document_data(img, "history", payload)
host.save_document_data(img, "regions", b"region prompts")
host.save_document_data(img, "gone", b"removed before saving")
host.save_document_data(img, "gone", None)
img.attach_parasite(Gimp.Parasite.new("paintbridge-foreign", Gimp.PARASITE_PERSISTENT, list(b"another program")))
path = tempfile.mkdtemp() + "/docdata.xcf"
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
img.delete()
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
check(os.path.getsize(path) > 2000000, "the .xcf holds the data")
check(host.load_document_data(img, "history") == payload, "2 MB of random bytes come back byte for byte")
check(host.load_document_data(img, "regions") == b"region prompts", "a second key comes back")
check(host.load_document_data(img, "gone") is None, "a removed key is gone")
check(host.load_document_data(img, "never") is None, "a key never set reads as None")
try:
    host.load_document_data(img, "foreign")
    check(False, "foreign data is refused")
except DocumentDataError as err:
    check("not written by Paintbridge" in str(err) and "'foreign'" in str(err), "a clear message: %s" % err)
check(img.get_parasite("paintbridge-history").get_flags() & Gimp.PARASITE_PERSISTENT, "the parasite is persistent")
img.delete()
""",
        plugin_dir=profile.inner(profile.plugin_dir),
    )


# --- regions (issue 15): a prompt kept on a layer or channel, saved in the .xcf ---------------------------------------


def test_region_prompts_on_a_layer_and_a_channel_steer_inpaint_and_survive_the_xcf(trixie_root, tmp_path):
    """Bind a prompt to a layer (its alpha is the area) through the procedure's arguments, inpaint; save the .xcf,
    close, reopen: the layer still carries its region and the same job gives the same pixels; a channel works as a
    region too; with regions off the pixels differ. Outside the selection nothing changes."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("sd15",))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                PLUGIN_PATH
                + """
import tempfile
W, H = 64, 48
img, (layer,) = make_image(W, H)
car = Gimp.Layer.new(img, "Car", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(car, None, 0)
left = b"".join(b"\\xff\\x00\\x00\\xff" if x < W // 2 else b"\\x00\\x00\\x00\\x00" for y in range(H) for x in range(W))
buf = car.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), "R'G'B'A u8", left)
buf.flush()
img.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, W - 8, H - 8)
sel = selection_mask(img)
args = dict(prompt="a street", seed=11, steps=3, grow=0, feather=0, server=P["url"])

def inpaint(**extra):
    old = img.get_layers()
    before = composite(img)
    expect_ok("plug-in-paintbridge-inpaint", img, [layer], **dict(args, **extra))
    added = new_layers(img, old)
    check(len(added) == 1, "one result layer: %r" % layer_summary(img))
    after = composite(img)
    check(all(after[i * 4:i * 4 + 4] == before[i * 4:i * 4 + 4] for i in range(W * H) if sel[i] == 0),
          "outside the selection nothing changed")
    pixels = read(added[0], 0, 0, W, H)
    img.remove_layer(added[0])
    return pixels

with_region = inpaint(region_layer=car, region_prompt="a red sports car")
check(car.get_parasite("paintbridge-region") is not None, "the prompt is kept on the layer")
without = inpaint(use_regions=False)
check(without != with_region, "the region's prompt changed the result")

path = tempfile.mkdtemp() + "/regions.xcf"
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
img.delete()
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
layer = next(l for l in img.get_layers() if l.get_name() != "Car")
car = next(l for l in img.get_layers() if l.get_name() == "Car")
from client.regions import binding_from_bytes
from gimp_plugin import host as gimp_host
region = binding_from_bytes(gimp_host.load_region(car))
check(region is not None and region.prompt == "a red sports car", "the region came back with the .xcf: %r" % region)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, W - 8, H - 8)
check(inpaint() == with_region, "after reopening, the same job gives the same pixels")

sky = Gimp.Channel.new(img, "Sky", W, H, 100.0, Gegl.Color.new("white"))
img.insert_channel(sky, None, 0)
top = b"".join(b"\\xff" if y < H // 2 else b"\\x00" for y in range(H) for x in range(W))
sbuf = sky.get_buffer()
sbuf.set(Gegl.Rectangle.new(0, 0, W, H), "Y u8", top)
sbuf.flush()
img.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, W - 8, H - 8)
with_channel = inpaint(region_layer=sky, region_prompt="a blue sky")
check(with_channel != with_region, "the channel's region changed the result")
check(gimp_host.read_opacity(sky, Box(0, 0, W, H)) == top, "a channel's value is its region's area")
inpaint(region_layer=sky, region_prompt="")
check(sky.get_parasite("paintbridge-region") is None, "an empty region prompt removes the channel's region")
img.delete()
""",
                {"url": proc.url, "plugin_dir": prof.inner(prof.plugin_dir)},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


def test_a_result_undone_survives_the_xcf_and_applies_again_with_the_same_pixels(profile, server):
    batch(
        profile,
        PLUGIN_PATH
        + """
import json, tempfile
img, (bottom,) = make_image(120, 96)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 40, 30)
old = img.get_layers()
expect_ok("plug-in-paintbridge-inpaint", img, [bottom], prompt="kept for later", model="classical", fill="ns",
          steps=4, server=P["url"])
(made,) = new_layers(img, old)
ok, ox, oy = made.get_offsets()
w, h = made.get_width(), made.get_height()
first = read(made, ox, oy, w, h)
name = made.get_name()
img.remove_layer(made)  # the painter did not keep it
check(len(img.get_layers()) == 1, "the result layer is gone")
path = tempfile.mkdtemp() + "/history.xcf"
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
img.delete()
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
(bottom,) = img.get_layers()
listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list").index(1))
check(len(listed) == 1, "one entry after reopening: %r" % listed)
entry = listed[0]
check(entry["prompt"] == "kept for later" and entry["mode"] == "inpaint" and entry["model"] == "classical",
      "the entry says what the job was: %r" % entry)
check(entry["layers"] == [[name, ox, oy, w, h]], "and where its layer went: %r" % entry["layers"])
check(entry["settings"]["steps"] == 4 and entry["settings"]["fill"] == "ns", "with the job's settings")
print("stored bytes", entry["stored_bytes"], "xcf parasite", len(img.get_parasite("paintbridge-history").get_data()))

old = img.get_layers()
expect_ok("plug-in-paintbridge-history", img, [bottom], action="apply", index=0)
(again,) = new_layers(img, old)
check(again.get_name() == name and tuple(again.get_offsets()[1:]) == (ox, oy), "applied where it was made")
check(read(again, ox, oy, w, h) == first, "with exactly the same pixels")

settings = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="reuse").index(2))
check(settings["prompt"] == "kept for later" and settings["steps"] == 4 and settings["mode"] == "inpaint",
      "reuse gives the job's settings: %r" % settings)
waiting = json.load(open(Gimp.directory() + "/paintbridge-reuse.json"))
check(waiting["procedure"] == "plug-in-paintbridge-inpaint" and waiting["values"]["prompt"] == "kept for later",
      "and keeps them for the inpaint dialog: %r" % waiting)

expect_failure("plug-in-paintbridge-history", img, [bottom], "calling-error", "there is no entry 3", index=3)
expect_ok("plug-in-paintbridge-history", img, [bottom], action="delete", index=0)
check(json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list").index(1)) == [],
      "deleted")
check(img.get_parasite("paintbridge-history") is None, "nothing left in the image")

img.attach_parasite(Gimp.Parasite.new("paintbridge-history", Gimp.PARASITE_PERSISTENT, list(b"garbage")))
check(json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list").index(1)) == [],
      "unreadable history data lists as empty, with a message, and is not fatal")
expect_ok("plug-in-paintbridge-inpaint", img, [bottom], prompt="a new one", model="classical", server=P["url"])
listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", limit_mb=0).index(1))
check(listed == [], "a limit of 0 MB keeps nothing")
expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", limit_mb=64)  # back to the default
img.delete()
""",
        url=server.url,
        plugin_dir=profile.inner(profile.plugin_dir),
    )


def test_the_history_search_finds_a_result_by_a_word_of_its_prompt(profile, server):
    batch(
        profile,
        PLUGIN_PATH
        + """
import json
img, (bottom,) = make_image(96, 80)
made = {}
for prompt in ("a mossy stone", "a rusty gate"):
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 16, 30, 24)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-inpaint", img, [bottom], prompt=prompt, model="classical",
              fill="telea" if "stone" in prompt else "ns", server=P["url"])
    (layer,) = new_layers(img, old)
    ok, x, y = layer.get_offsets()
    made[prompt] = read(layer, x, y, layer.get_width(), layer.get_height())
    img.remove_layer(layer)
listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", search="MOSSY").index(1))
check([e["prompt"] for e in listed] == ["a mossy stone"], "a word of its prompt finds the older entry: %r" % listed)
listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list",
                              search="mode:inpaint model:classical").index(1))
check([e["prompt"] for e in listed] == ["a rusty gate", "a mossy stone"], "fields narrow too, newest first")
check(json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", search="zebra").index(1))
      == [], "a word no prompt has finds nothing")
old = img.get_layers()
expect_ok("plug-in-paintbridge-history", img, [bottom], action="apply", index=0, search="stone")
(again,) = new_layers(img, old)
ok, x, y = again.get_offsets()
check(read(again, x, y, again.get_width(), again.get_height()) == made["a mossy stone"],
      "index 0 of the search is the entry it found, applied pixel for pixel")
expect_failure("plug-in-paintbridge-history", img, [bottom], "calling-error", "matches 'zebra'", search="zebra")
expect_failure("plug-in-paintbridge-history", img, [bottom], "calling-error", "whole number", search="seed:abc")
img.delete()
""",
        url=server.url,
        plugin_dir=profile.inner(profile.plugin_dir),
    )


def test_an_xcf_whose_history_holds_zlib_bombs_opens_and_names_the_damaged_part(profile, server):
    """A thumbnail and a layer that would each inflate to 1 GiB (tests/docbombs.py) in the .xcf's history: the image
    opens, the history the History dialog shows has the good result and a note naming the damaged part, the reading
    process's peak memory hardly grows, and GIMP goes on (the good result applies again)."""
    import docbombs

    blob, _good, _bad = docbombs.bomb_history()
    (profile.outside / "bomb-history.bin").write_bytes(blob)
    done = batch(
        profile,
        PLUGIN_PATH
        + """
import json, resource, tempfile
from gimp_plugin import history, host
img, (layer,) = make_image(64, 48)
host.save_document_data(img, "history", open(P["bomb"], "rb").read())
path = tempfile.mkdtemp() + "/bomb.xcf"
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
img.delete()
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
(layer,) = img.get_layers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kept = history.of(img)  # what the History dialog shows: its entries, and ``problem`` as its note
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print("peak memory growth reading the bomb history: %.1f MiB" % (growth / 2 ** 20))
check(growth < 128 << 20, "bounded: an unbounded read takes at least 1 GiB, this took %d bytes" % growth)
check([e.prompt for e in kept.entries] == ["kept"], "the good result is read: %r" % [e.prompt for e in kept.entries])
check("the thumbnail of result 1 of history entry" in kept.problem and "decompresses to more than" in kept.problem,
      "the note names the damaged part: %s" % kept.problem)
listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [layer], action="list").index(1))
check([e["prompt"] for e in listed] == ["kept"], "the History procedure lists the good result: %r" % listed)
old = img.get_layers()
expect_ok("plug-in-paintbridge-history", img, [layer], action="apply", index=0)
check(len(new_layers(img, old)) == 1, "and applies it again: GIMP and the plug-in stay up")
img.delete()
""",
        plugin_dir=profile.inner(profile.plugin_dir),
        bomb=profile.inside + "/bomb-history.bin",
    )
    print(next(line for line in done.output.splitlines() if line.startswith("peak memory growth")))


RUN_HISTORY_DIALOG = """
def run_history_dialog(img, drawables):
    proc = PDB.lookup_procedure("plug-in-paintbridge-history")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", drawables)
    result = proc.run(cfg)
    check(result.index(0) == Gimp.PDBStatusType.SUCCESS, "the History dialog closed normally: %r" % (result.index(0),))
"""

HISTORY_GUI_SCRIPT = (
    RUN_HISTORY_DIALOG
    + """
import os, time
def marker(name):
    open(P["dir"] + "/" + name, "w").close()

img, (layer,) = make_image(320, 240)
Gimp.Display.new(img)
kept = {}
for prompt in ("a first try", "a second try"):
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 100, 60, 80, 70)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt=prompt, model="classical", server=P["url"])
    (made,) = new_layers(img, old)
    ok, x, y = made.get_offsets()
    kept[prompt] = (made.get_name(), x, y, read(made, x, y, made.get_width(), made.get_height()))
    img.remove_layer(made)
Gimp.displays_flush()
old = img.get_layers()
run_history_dialog(img, [layer])
added = new_layers(img, old)
check(len(added) == 2, "Apply again, then Reuse settings ran the inpaint dialog once: %r" % layer_summary(img))
name, x, y, pixels = kept["a second try"]
again = [l for l in added if read(l, x, y, l.get_width(), l.get_height()) == pixels]
check(len(again) == 2, "both are the newest entry's result, pixel for pixel: %r" % layer_summary(img))
check(all(l.get_name().startswith(name) for l in added), "named as it was (GIMP numbers the twin): %r"
      % layer_summary(img))
marker("verified")
"""
)


def test_gui_history_dialog_lists_results_and_applies_again(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start(HISTORY_GUI_SCRIPT, {"url": server.url, "dir": profile.inside})
        dialog = session.wait_window("Paintbridge: History", timeout=120)
        time.sleep(1.0)
        session.screenshot(artifacts_dir / "gimp-history-dialog.png")
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "alt+a")  # Apply again (the newest is selected)
        time.sleep(1.5)
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "alt+r")  # Reuse settings: the inpaint dialog opens, filled in
        inpaint = session.wait_window("Paintbridge: Inpaint Selection", timeout=60)
        time.sleep(1.0)
        session.screenshot(artifacts_dir / "gimp-history-reuse.png")
        session.xdotool("windowfocus", "--sync", inpaint)
        session.xdotool("key", "--clearmodifiers", "Return")
        session.wait_file("verified", timeout=90)
    except BaseException:
        session.screenshot_quietly(artifacts_dir / "gimp-history-failure.png")
        raise
    finally:
        session.stop()


HISTORY_SEARCH_GUI_SCRIPT = (
    RUN_HISTORY_DIALOG
    + """
def marker(name):
    open(P["dir"] + "/" + name, "w").close()

img, (layer,) = make_image(320, 240)
Gimp.Display.new(img)
kept = {}
for prompt, fill in (("a first try", "telea"), ("a second try", "ns")):
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 100, 60, 80, 70)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt=prompt, model="classical", fill=fill,
              server=P["url"])
    (made,) = new_layers(img, old)
    ok, x, y = made.get_offsets()
    kept[prompt] = (x, y, made.get_width(), made.get_height(), read(made, x, y, made.get_width(), made.get_height()))
    img.remove_layer(made)
Gimp.displays_flush()
old = img.get_layers()
run_history_dialog(img, [layer])
(added,) = new_layers(img, old)
x, y, w, h, pixels = kept["a first try"]
check(read(added, x, y, w, h) == pixels and pixels != kept["a second try"][4],
      "Apply again took the entry the search found (the older one), pixel for pixel")
marker("verified-search")
"""
)


def test_gui_history_dialog_searches_by_a_word_of_the_prompt(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start(HISTORY_SEARCH_GUI_SCRIPT, {"url": server.url, "dir": profile.inside})
        dialog = session.wait_window("Paintbridge: History", timeout=120)
        time.sleep(1.0)
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("type", "--delay", "60", "FIRST")  # into the search entry, which has the focus
        time.sleep(1.5)
        session.screenshot(artifacts_dir / "gimp-history-search.png")
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "alt+a")  # Apply again: the one entry the search lists
        time.sleep(1.5)
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "alt+c")  # Close
        session.wait_file("verified-search", timeout=90)
    except BaseException:
        session.screenshot_quietly(artifacts_dir / "gimp-history-search-failure.png")
        raise
    finally:
        session.stop()


BOMB_GUI_SCRIPT = (
    RUN_HISTORY_DIALOG
    + """
from array import array
img, (layer,) = make_image(320, 240)
blob = open(P["bomb"], "rb").read()
img.attach_parasite(Gimp.Parasite.new("paintbridge-history", Gimp.PARASITE_PERSISTENT, array("b", blob).tolist()))
Gimp.Display.new(img)
Gimp.displays_flush()
run_history_dialog(img, [layer])
open(P["dir"] + "/verified", "w").close()
"""
)


def test_gui_history_dialog_opens_on_an_image_whose_history_holds_zlib_bombs(profile, artifacts_dir):
    """The History dialog on an image with the bombs of ``docbombs`` opens (its note names the damaged part: the
    screenshot shows it; the batch test above checks the note's text), and closes normally."""
    import docbombs
    from hosts.gimp import GuiSession

    (profile.outside / "bomb-packed.bin").write_bytes(docbombs.packed_bomb_history())
    session = GuiSession(profile)
    try:
        session.start(BOMB_GUI_SCRIPT, {"bomb": profile.inside + "/bomb-packed.bin", "dir": profile.inside})
        dialog = session.wait_window("Paintbridge: History", timeout=120)
        time.sleep(1.0)
        session.screenshot(artifacts_dir / "gimp-history-bomb-dialog.png")
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "alt+c")  # Close
        session.wait_file("verified", timeout=90)
    except BaseException:
        session.screenshot_quietly(artifacts_dir / "gimp-history-bomb-failure.png")
        raise
    finally:
        session.stop()


# --- sampling (issue 13) ---------------------------------------------------------------------------------------------


def test_sampler_schedule_batch_count_vae_and_clip_skip_as_procedure_arguments(trixie_root, tmp_path):
    """Generate from GIMP with a sampler and a schedule chosen apart, a batch count, a VAE and CLIP skip: one layer
    per image with its seed, each exactly the server's own image for those parameters; an impossible pair is refused
    naming both."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch
    from protocol.client import Client

    models = make_models_dir(tmp_path / "models", which=("sd15", "vae-file"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
img, (layer,) = make_image(64, 64)
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a tiny house", seed=21, steps=3, cfg=7.0, batch=1,
          batch_count=2, sampler="euler", scheduler="karras", vae_name="tiny-vae-ft-mse", clip_skip=2,
          server=P["url"])
added = new_layers(img, old)
names = sorted(l.get_name() for l in added)
check(names == ["a tiny house (seed 21)", "a tiny house (seed 22)"], "two calls, one layer each: %r" % names)
for res in added:
    ok, rx, ry = res.get_offsets()
    check((rx, ry, res.get_width(), res.get_height()) == (0, 0, 64, 64), "the whole canvas")
    seed = res.get_name().rsplit(" ", 1)[1].strip(")")
    open(P["dir"] + "/layer-" + seed + ".rgba", "wb").write(read(res, 0, 0, 64, 64))
expect_failure("plug-in-paintbridge-generate", img, [layer], "calling-error", "'DDIM'", prompt="x", steps=2,
               sampler="ddim", scheduler="karras", server=P["url"])
img.delete()
""",
                {"url": proc.url, "dir": prof.inside},
                timeout=600,
            ).assert_ok()
            with Client(proc.url, client_name="gimp-sampling-check") as client:
                for seed in (21, 22):
                    result = client.run(
                        {
                            "mode": "generate",
                            "model": "",
                            "prompt": "a tiny house",
                            "params": {
                                "seed": seed,
                                "steps": 3,
                                "cfg": 7.0,
                                "sampler": "Euler",
                                "scheduler": "Karras",
                                "vae": "tiny-vae-ft-mse",
                                "clip_skip": 2,
                                "width": 64,
                                "height": 64,
                            },
                        },
                        timeout=300,
                    )
                    assert result.layers[0].info["vae"] == "tiny-vae-ft-mse"
                    assert result.layers[0].data == (prof.outside / f"layer-{seed}.rgba").read_bytes(), seed
    finally:
        proc.stop()


# --- reference images on every procedure, bound to regions, in live (issue 15) ----------------------------------------


@contextmanager
def recording_server(models: Path):
    """A real server in this process whose router keeps every job it is given (``router.jobs``) before running it."""
    from protocol.messages import Limits
    from server.app import ServerThread
    from server.config import ServerConfig
    from server.router import Router

    class RecordingRouter(Router):
        def __init__(self, config) -> None:
            super().__init__(config)
            self.jobs: list = []

        def run(self, job, ctx):
            self.jobs.append(job)
            return super().run(job, ctx)

    config = ServerConfig(host="127.0.0.1", port=0, model_dirs=[models], limits=Limits())
    router = RecordingRouter(config)
    thread = ServerThread(config, router=router).start()
    try:
        yield thread, router
    finally:
        thread.stop()


REF_W, REF_H = 64, 48
REF_COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40))


def car_alpha(x: int, y: int) -> int:
    """The region layer's alpha: opaque on the left third, half on the next sixth, empty on the right half."""
    return 255 if x < REF_W // 3 else 128 if x < REF_W // 2 else 0


def test_outpaint_sends_four_references_and_a_regions_opacity_masks_its_reference(trixie_root, tmp_path):
    """Outpaint with all four reference slots set: the server receives four references in slot order with their
    types, strengths and step ranges and each layer's pixels; slot 1 is bound to a region layer (its mask is the
    layer's alpha, the same as that region's own mask), slot 2 to a channel (its mask is the channel's value)."""
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_batch

    models = make_models_dir(tmp_path / "models", which=("sd15", "ipa-sd15-plus"))
    with recording_server(models) as (thread, router), gimp_profile() as prof:
        run_batch(
            prof,
            """
W, H = %d, %d
COLOURS = %r
img, (layer,) = make_image(W, H)
pictures = []
for i, colour in enumerate(COLOURS):
    pic = Gimp.Layer.new(img, "picture %%d" %% i, W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(pic, None, 0)
    buf = pic.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, bytes(list(colour) + [255]) * (W * H))
    buf.flush()
    pic.set_visible(False)
    pictures.append(pic)
car = Gimp.Layer.new(img, "Car", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(car, None, 0)
alpha = [255 if x < W // 3 else 128 if x < W // 2 else 0 for x in range(W)]
buf = car.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, b"".join(bytes((250, 0, 0, alpha[x])) for y in range(H) for x in range(W)))
buf.flush()
sky = Gimp.Channel.new(img, "Sky", W, H, 100.0, Gegl.Color.new("white"))
img.insert_channel(sky, None, 0)
sbuf = sky.get_buffer()
sbuf.set(Gegl.Rectangle.new(0, 0, W, H), GRAY, b"".join(b"\\xff" if y < H // 2 else b"\\x00" for y in range(H) for x in range(W)))
sbuf.flush()
img.set_selected_layers([layer])
old = img.get_layers()
expect_ok("plug-in-paintbridge-outpaint", img, [layer], prompt="a street", seed=3, steps=2, extend=16,
          extend_right=True, server=P["url"], region_layer=car, region_prompt="a red car",
          reference_layer=pictures[0], reference_type="content", reference_region=car,
          reference_2_layer=pictures[1], reference_2_type="style", reference_2_strength=1.5, reference_2_region=sky,
          reference_3_layer=pictures[2], reference_3_type="composition", reference_3_start=0.25, reference_3_end=0.75,
          reference_4_layer=pictures[3], reference_4_strength=0.5)
check(len(new_layers(img, old)) == 1 and img.get_width() == W + 16, "one result layer, canvas extended: %%r"
      %% layer_summary(img))
sys.path[:0] = [P["plugin_dir"] + "/vendor", P["plugin_dir"]]
from gimp_plugin import host as gimp_host
mask = car.create_mask(Gimp.AddMaskType.WHITE)
car.add_mask(mask)
for item in (car, sky, mask, pictures[2]):  # what a reference slot names survives as the item's tattoo
    check(gimp_host.item_by_stable_id(img, gimp_host.stable_id(item)) == item, "found by tattoo: %%r" %% item)
check(gimp_host.layer_by_stable_id(img, gimp_host.stable_id(sky)) is None, "a channel is not a reference layer")
img.delete()
"""
            % (REF_W, REF_H, REF_COLOURS),
            {"url": thread.url, "plugin_dir": prof.inner(prof.plugin_dir)},
            timeout=600,
        ).assert_ok()
        jobs = [job for job in router.jobs if job.mode == "outpaint"]
    assert len(jobs) == 1, [job.mode for job in router.jobs]
    job = jobs[0]
    refs = job.references
    assert [(r.type, r.strength, r.start, r.end) for r in refs] == [
        ("content", 1.0, 0.0, 1.0),
        ("style", 1.5, 0.0, 1.0),
        ("composition", 1.0, 0.25, 0.75),
        ("content", 0.5, 0.0, 1.0),
    ]
    assert (job.x, job.y) == (0, 0) and job.image.shape[:2] == (REF_H, REF_W)  # outpaint reads the whole canvas
    for ref, colour in zip(refs, REF_COLOURS):  # the server holds a reference as RGB, the job's size here
        assert ref.image.shape == (REF_H, REF_W, 3) and (ref.image == colour).all()
    car_mask = bytes(car_alpha(x, y) for y in range(REF_H) for x in range(REF_W))
    sky_mask = bytes(255 if y < REF_H // 2 else 0 for y in range(REF_H) for x in range(REF_W))
    assert refs[0].mask is not None and refs[0].mask.shape == (REF_H, REF_W) and refs[0].mask.tobytes() == car_mask
    assert [r.mask.tobytes() for r in job.regions] == [car_mask]  # the region's own mask: the same read
    assert refs[1].mask is not None and refs[1].mask.tobytes() == sky_mask
    assert refs[2].mask is None and refs[3].mask is None


@contextmanager
def live_dialog(prof, script: str, params: dict, failure_shot: Path):
    """GIMP under Xvfb running ``script``, which opens Live Inpaint: yields (session, dialog) with the dialog moved
    off the canvas; on the way out Escape closes the dialog and the script's "verified" marker is awaited. A failure
    leaves a screenshot at ``failure_shot``."""
    from hosts.gimp import GuiSession

    session = GuiSession(prof)
    try:
        session.start(script, params)
        dialog = session.wait_window("Paintbridge: Live Inpaint", timeout=120)
        session.xdotool("windowmove", "--sync", dialog, "820", "0")  # no window manager: keep it off the canvas
        yield session, dialog
        session.xdotool("windowfocus", "--sync", dialog)
        session.xdotool("key", "--clearmodifiers", "Escape")
        session.wait_file("verified", timeout=120)
    except BaseException:
        session.screenshot_quietly(failure_shot)
        raise
    finally:
        session.stop()


LIVE_REFERENCE_SCRIPT = """
import os, time
sys.path[:0] = [P["plugin_dir"] + "/vendor", P["plugin_dir"]]
def marker(name):
    open(P["dir"] + "/" + name, "w").close()

W, H = 96, 80
img, (layer,) = make_image(W, H)
picture = Gimp.Layer.new(img, "Reference", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(picture, None, 0)
buf = picture.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, bytes((30, 160, 220, 255)) * (W * H))
buf.flush()
img.set_selected_layers([picture])
Gimp.Display.new(img)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 24, 20, 40, 36)
Gimp.displays_flush()
proc = PDB.lookup_procedure("plug-in-paintbridge-live-inpaint")
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", [picture])
cfg.set_property("prompt", "live lake")
cfg.set_property("steps", 2)
cfg.set_property("server", P["url"])
cfg.set_property("reference-layer", picture)
cfg.set_property("reference-type", "style")
result = proc.run(cfg)
check(result.index(0) == Gimp.PDBStatusType.CANCEL, "the dialog was cancelled: %r" % (result.index(0),))
check([l.get_name() for l in img.get_layers()] == ["Reference", "user layer 1"], "no preview left: %r"
      % layer_summary(img))
marker("verified")
"""


def test_gui_live_inpaint_carries_the_reference_and_reruns_when_its_layer_is_painted(
    trixie_root, tmp_path, artifacts_dir
):
    """Live Inpaint with a reference layer in a real GIMP under Xvfb: the live frame carries the reference (the
    layer's pixels over the box); filling the selection on the reference layer (Edit > Fill with FG Color, ctrl+,),
    which changes neither the selection nor a setting nor the active layer, makes a new frame with the new pixels."""
    from factory import make_models_dir
    from hosts.gimp import gimp_profile

    models = make_models_dir(tmp_path / "models", which=("sd15", "ipa-sd15-plus"))
    with (
        recording_server(models) as (thread, router),
        gimp_profile() as prof,
        live_dialog(
            prof,
            LIVE_REFERENCE_SCRIPT,
            {"url": thread.url, "dir": prof.inside, "plugin_dir": prof.inner(prof.plugin_dir)},
            artifacts_dir / "gimp-live-reference-failure.png",
        ) as (session, _dialog),
    ):
        session.wait_window(r"\[Untitled\].*3 layers.* GIMP$", timeout=120)  # the first preview is in
        first = router.jobs[-1]
        assert first.id.startswith("gimp-live") and first.mode == "inpaint"  # a live frame
        assert len(first.references) == 1 and first.references[0].type == "style"
        assert (first.references[0].image == (30, 160, 220)).all()  # the layer over the frame's box
        frames = len(router.jobs)
        time.sleep(2.0)
        assert len(router.jobs) == frames, "no new frame while nothing changes"
        image_window = session.wait_window(r"\[Untitled\].* GIMP$", timeout=30)
        session.xdotool("windowfocus", "--sync", image_window)
        session.xdotool("key", "--clearmodifiers", "ctrl+comma")  # Edit > Fill with FG Color (black)
        deadline = time.monotonic() + 120
        while len(router.jobs) == frames and time.monotonic() < deadline:
            time.sleep(0.2)
        session.screenshot(artifacts_dir / "gimp-live-reference.png")
        assert len(router.jobs) > frames, "painting on the reference layer started a new live frame"
        later = router.jobs[-1].references[0].image
        black = int((later == 0).all(axis=2).sum())
        assert black == 40 * 36  # the filled selection, seen in the reference


# --- live follows the brush: change tokens from GIMP's thumbnails, counted pixel reads -------------------------------

LIVE_STATE_SCRIPT = (
    PLUGIN_PATH
    + """
from gimp_plugin import arguments, capture, host
W, H = 600, 400
img, (layer,) = make_image(W, H)
above, control = add_layer(img, "above", W, H), add_layer(img, "control", W, H, visible=False)
preview, far = add_layer(img, "preview", W, H), add_layer(img, "far away", W, H)
far.resize(40, 40, 0, 0)  # a 40x40 layer in the corner, outside the job's box
def paint(drawable, x, y, w, h, rgba=(0, 0, 0, 255), fmt=RGBA):
    buf = drawable.get_buffer()
    buf.set(Gegl.Rectangle.new(x, y, w, h), fmt, bytes(rgba) * (w * h))
    buf.flush()
    drawable.update(x, y, w, h)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 200, 120, 240, 160)
bounds = host.selection_bounds(img)
box = context_box(bounds, W, H)
check(max(box.width, box.height) > 2 * host.THUMB_SIDE, "the box is downsampled for its thumbnail: %r" % (box,))
spec = arguments.BY_NAME[arguments.PREFIX + "live-inpaint"]
values = dict(spec.defaults(), prompt="x", **{"control-layer": control})
def state(**changes):
    v = dict(values)
    v.update({k.replace("_", "-"): x for k, x in changes.items()})
    return capture.live_state(spec, img, layer, v, host.selection_bounds(img), hide=[preview])
reads = host.pixel_reads()
first = state()
check(not any(isinstance(part, str) for part in first), "no error in the state: %r" % first[:1])
check(first == state(), "nothing changed: the same state")
def changed_by(what, change, **settings):
    before = state(**settings)
    change()
    after = state(**settings)
    check(after != before, what + " is a change")
    return after
changed_by("a 1-px write under the selection on the active layer", lambda: paint(layer, 300, 200, 1, 1))
changed_by("a 3x3 write on a visible layer above it", lambda: paint(above, 250, 150, 3, 3, (255, 255, 255, 255)))
changed_by("a 2-px write on the hidden control layer", lambda: paint(control, 420, 260, 2, 1, (255, 0, 0, 255)))
changed_by("a 2-px write on the painted layer with Source = Active layer", lambda: paint(layer, 210, 130, 2, 1),
           source="layer")
changed_by("hiding a visible layer", lambda: above.set_visible(False))
changed_by("growing the selection by one pixel", lambda: img.select_rectangle(Gimp.ChannelOps.ADD, 199, 120, 1, 1))
mask = layer.create_mask(Gimp.AddMaskType.WHITE)
layer.add_mask(mask)
changed_by("a 2-px write on the active layer's mask with Mask = layer mask", lambda: paint(mask, 10, 10, 2, 1, (0,), GRAY),
           mask_source="layer-mask")
region = add_layer(img, "region", W, H, visible=False)
from client.regions import RegionBinding, binding_to_bytes
host.save_region(region, binding_to_bytes(RegionBinding("", "a red car", "")))
changed_by("a 3x3 write on a hidden layer bound as a region", lambda: paint(region, 300, 200, 3, 3))
same = state()
paint(preview, 300, 200, 20, 20)
check(state() == same, "painting the preview layer (skipped, as in the frame's read) is no change")
paint(far, 0, 0, 10, 10)
check(state() == same, "painting outside the job's box is no change")
paint(above, 250, 150, 3, 3, (9, 9, 9, 255))
check(state() == same, "painting a hidden layer that is no control is no change")
paint(layer, 250, 150, 3, 3, (1, 2, 3, 255))
check(state(source="layer") != same, "and a 3x3 write outside the selection but inside the box is")
check(host.pixel_reads() == reads, "no full pixel read for any of it: %d" % (host.pixel_reads() - reads))
host.read_layer(layer, bounds)
check(host.pixel_reads() == reads + 1, "a full read is counted")
img.delete()
"""
)


def test_live_state_sees_one_pixel_under_the_selection_without_reading_pixels(profile):
    """The live loop's change signal in a real GIMP: equal while nothing changes, different after a 1-px or 3x3
    write on the layers the frame reads (the source, a hidden control layer, the selection), the same after writes
    the frame would not see (the preview, outside the box, a hidden unused layer); never a full pixel read."""
    batch(profile, LIVE_STATE_SCRIPT, plugin_dir=profile.inner(profile.plugin_dir))


LIVE_BRUSH_SCRIPT = """
import os, time
def marker(name):
    open(P["dir"] + "/" + name, "w").close()

W, H = P["size"]
img = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(img, "painted", W, H, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(layer, None, 0)
buf = layer.get_buffer()
buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, bytes((255, 0, 255, 255)) * (W * H))
buf.flush()
img.set_selected_layers([layer])
Gimp.Display.new(img)
img.select_rectangle(Gimp.ChannelOps.REPLACE, *P["selection"])
Gimp.displays_flush()
status, _message, _result = run_proc("plug-in-paintbridge-live-inpaint", img, [layer], Gimp.RunMode.INTERACTIVE,
                                     prompt="live brush", model="classical", server=P["url"])
check(status == "cancel", "the dialog was cancelled: %r" % status)
check([l.get_name() for l in img.get_layers()] == ["painted"], "no preview left: %r" % layer_summary(img))
marker("verified")
"""
# A stroke starts a frame within the live loop's budget: one poll (live.POLL_MS, 0.15 s), the scheduler's largest
# debounce (0.6 s), reading and sending the frame; the rest is room for a shared test machine.
LIVE_BUDGET_S = 5.0
FRAME_LOG = re.compile(r"paintbridge live: frame (\S+) after (\d+) pixel reads while idle")


def _canvas_on_screen(shot: Path, size) -> tuple:
    """(left, top, scale) of the image on the screen, from the magenta of its one layer in a screenshot."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    magenta = (pixels[..., 0] > 230) & (pixels[..., 1] < 30) & (pixels[..., 2] > 230)
    assert magenta.any(), "the image is on the screen"
    # the canvas holds far more magenta per row and column than the thumbnails of the image tab and the layers list
    columns, rows = magenta.sum(axis=0), magenta.sum(axis=1)
    xs, ys = np.nonzero(columns > 0.6 * columns.max())[0], np.nonzero(rows > 0.6 * rows.max())[0]
    return int(xs.min()), int(ys.min()), (int(xs.max()) - int(xs.min()) + 1) / size[0]


def test_gui_live_inpaint_reruns_on_a_brush_stroke_under_the_selection_without_reading_pixels_while_idle(
    trixie_root, tmp_path, artifacts_dir
):
    """Live Inpaint in a real GIMP under Xvfb: while nothing changes no frame starts and no pixel is read in full
    (the plug-in's per-frame log line counts them); a pencil stroke dragged with the mouse across the selection on the
    active layer starts a new frame within the live loop's budget, and that frame carries the stroke's pixels."""
    from hosts.gimp import gimp_profile

    size, (sx, sy, sw, sh) = (200, 160), (60, 50, 80, 60)
    models = tmp_path / "models"
    models.mkdir()
    with recording_server(models) as (thread, router), gimp_profile() as prof:
        with live_dialog(
            prof,
            LIVE_BRUSH_SCRIPT,
            {"url": thread.url, "dir": prof.inside, "size": size, "selection": (sx, sy, sw, sh)},
            artifacts_dir / "gimp-live-brush-failure.png",
        ) as (session, _dialog):
            session.wait_window(r"\[Untitled\].*2 layers.* GIMP$", timeout=120)  # the first preview is in
            first = router.jobs[-1]
            assert first.id.startswith("gimp-live") and len(router.jobs) == 1
            frames = len(router.jobs)
            time.sleep(3.0)  # 20 polls with nothing changed
            assert len(router.jobs) == frames, "no new frame while nothing changes"
            left, top, scale = _canvas_on_screen(session.screenshot(artifacts_dir / "gimp-live-brush-before.png"), size)
            image_window = session.wait_window(r"\[Untitled\].* GIMP$", timeout=30)
            session.xdotool("windowfocus", "--sync", image_window)
            session.xdotool("key", "--clearmodifiers", "n")  # the pencil tool; black is the foreground colour
            row = sy + sh // 2

            def at(x: int) -> list:
                return [str(left + round((x + 0.5) * scale)), str(top + round((row + 0.5) * scale))]

            session.xdotool("mousemove", "--sync", *at(sx + 5))
            session.xdotool("mousedown", "1")
            for x in range(sx + 10, sx + sw - 5, 5):
                session.xdotool("mousemove", "--sync", *at(x))
            session.xdotool("mouseup", "1")
            painted = time.monotonic()
            while len(router.jobs) == frames and time.monotonic() < painted + 60:
                time.sleep(0.05)
            waited = time.monotonic() - painted
            session.screenshot(artifacts_dir / "gimp-live-brush-after.png")
            assert len(router.jobs) > frames, "the brush stroke under the selection started a new live frame"
            print(f"a new frame reached the server {waited:.2f} s after the stroke")
            assert waited < LIVE_BUDGET_S, f"the frame came {waited:.1f} s after the stroke"
            later = router.jobs[-1]
            inside = later.image[sy - later.y : sy - later.y + sh, sx - later.x : sx - later.x + sw, :3]
            before = first.image[sy - first.y : sy - first.y + sh, sx - first.x : sx - first.x + sw, :3]
            assert not (before < 40).all(axis=2).any()
            assert int((inside < 40).all(axis=2).sum()) >= sw // 2, "the new frame carries the stroke's pixels"
        logged = {m.group(1): int(m.group(2)) for m in FRAME_LOG.finditer(session.log.read_text())}
        assert first.id in logged and later.id in logged, f"each frame logs its reads: {logged}"
        assert logged[first.id] == 0 and logged[later.id] == 0, f"no full pixel read while idle: {logged}"


# --- reuse settings refills every slot ------------------------------------------------------------------------------

REUSE_SLOTS_SCRIPT = (
    PLUGIN_PATH
    + """
import tempfile
from client.settings import Settings
from gimp_plugin import arguments, host, procedures, values
W, H = 64, 48
img, (bottom,) = make_image(W, H)
sketch, depth, photo, face = (add_layer(img, name, W, H) for name in ("sketch", "depth", "photo", "face"))
sky = Gimp.Channel.new(img, "Sky", W, H, 100.0, Gegl.Color.new("white"))
img.insert_channel(sky, None, 0)
spec = arguments.BY_MODE["inpaint"]
chosen = dict(spec.defaults(), prompt="again", vae="default", **{
    "control-layer": sketch, "control-type": "scribble", "control-strength": 0.6, "control-end": 0.7,
    "control-5-layer": depth, "control-5-type": "depth", "control-5-start": 0.2, "control-5-preprocess": True,
    "reference-layer": photo, "reference-type": "style", "reference-region": sky,
    "reference-3-layer": face, "reference-3-type": "face", "reference-3-strength": 0.5})
kept = values.settings_from_values(spec, chosen, host.stable_id)
stored = Settings.from_dict(json.loads(json.dumps(kept.to_dict())))  # as the history keeps it
path = tempfile.mkdtemp() + "/reuse.xcf"
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
img.delete()
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))  # tattoos survive the .xcf
by_name = {l.get_name(): l for l in img.get_layers()}
by_name["Sky"] = img.get_channels()[0]
def reuse_into_a_new_config():
    values.save_reuse(host.profile_dir(), spec.name, values.values_from_settings(spec, stored))
    cfg = PDB.lookup_procedure(spec.name).create_config()
    procedures.apply_reuse(spec, cfg, img)
    return cfg
cfg = reuse_into_a_new_config()
def item(name):
    found = cfg.get_property(name)
    return None if found is None else found.get_name()
# the kept slots come back in order (an empty slot between set ones is skipped, as in the job)
check([item("control-layer"), item("control-2-layer"), item("reference-layer"), item("reference-region"),
       item("reference-2-layer")] == ["sketch", "depth", "photo", "Sky", "face"],
      "every slot's layer found again in the reopened image: %r" % [item("control-layer"), item("control-2-layer")])
check(all(cfg.get_property("control-%d-layer" % i) is None for i in range(3, 9)), "the other slots off")
check((cfg.get_property("control-type"), cfg.get_property("control-strength"), cfg.get_property("control-end"))
      == ("scribble", 0.6, 0.7), "with their settings")
check((cfg.get_property("control-2-type"), cfg.get_property("control-2-start"),
       cfg.get_property("control-2-preprocess")) == ("depth", 0.2, True), "the second one too")
check((cfg.get_property("reference-2-type"), cfg.get_property("reference-2-strength")) == ("face", 0.5),
      "and the references' settings")
again = values.settings_from_values(spec, {a.name: cfg.get_property(a.name) for a in spec.args}, host.stable_id)
check(again.controls == stored.controls and again.references == stored.references and again.prompt == "again",
      "the same settings come back")
img.remove_layer(by_name["depth"])
cfg = reuse_into_a_new_config()
check(cfg.get_property("control-2-layer") is None and item("control-layer") == "sketch",
      "a layer the image lost leaves its slot empty, the others refilled")
img.delete()
"""
)


def test_reuse_settings_refills_control_and_reference_slots_by_tattoo_after_reopening_the_xcf(profile):
    """History's "Reuse settings" path in a real GIMP: the settings a job keeps (eight control slots, references
    and their regions by tattoo) fill a new procedure config with the same layers of the image, also after the .xcf
    was saved and opened again; a slot whose layer was deleted stays empty."""
    batch(profile, REUSE_SLOTS_SCRIPT, plugin_dir=profile.inner(profile.plugin_dir))


def test_describe_fills_the_prompt_of_the_next_run_with_the_captioners_words(trixie_root, tmp_path):
    """Prompt from the picture: Filters › Paintbridge › Describe… on a tiny random BLIP returns the captioner's words
    for the selection's bounds (a sentence, or tags), keeps them, and the next run without a prompt of its own uses
    them (its history entry says so); a run with a prompt of its own leaves them waiting."""
    import numpy as np

    import tiny_blip
    from conftest import ServerProcess
    from hosts.gimp import gimp_profile, run_batch
    from server.caption.tags import as_tags
    from test_caption import direct_caption

    models = tmp_path / "models"
    tiny_blip.install(models)
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
import json, os
img, (layer,) = make_image(64, 48)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 6, 40, 30)
whole = composite(img)
box = b"".join(whole[((6 + y) * 64 + 8) * 4:((6 + y) * 64 + 48) * 4] for y in range(30))
open(P["dir"] + "/box.bin", "wb").write(box)
kept = Gimp.directory() + "/paintbridge-description.json"
old = img.get_layers()
sentence = expect_ok("plug-in-paintbridge-describe", img, [layer], server=P["url"]).index(1)
check(sentence.strip() != "", "Describe returns words: %r" % sentence)
check(img.get_layers() == old and composite(img) == whole, "Describe adds and changes nothing in the image")
check(json.load(open(kept))["prompt"] == sentence, "and keeps them for the next run's prompt")
tags = expect_ok("plug-in-paintbridge-describe", img, [layer], caption_style="tags", server=P["url"]).index(1)
open(P["dir"] + "/captions.json", "w").write(json.dumps({"sentence": sentence, "tags": tags}))
check(json.load(open(kept))["prompt"] == tags, "the newest words wait")

expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt="my own words", model="classical", server=P["url"])
check(os.path.exists(kept), "a run with a prompt of its own leaves the words waiting")
expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt="", model="classical", server=P["url"])
check(not os.path.exists(kept), "the next run without a prompt took them")
expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt="", model="classical", server=P["url"])
listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [layer], action="list").index(1))
check([e["prompt"] for e in listed] == ["", tags, "my own words"], "the runs' prompts: %r"
      % [e["prompt"] for e in listed])
img.delete()
""",
                {"url": proc.url, "dir": prof.inside},
                timeout=300,
            ).assert_ok()
            captions = json.loads((prof.outside / "captions.json").read_text())
            box = np.frombuffer((prof.outside / "box.bin").read_bytes(), np.uint8).reshape(30, 40, 4)
    finally:
        proc.stop()
    sentence = direct_caption(tiny_blip.captioner_folder(), np.ascontiguousarray(box))
    assert captions == {"sentence": sentence, "tags": as_tags(sentence)}


def test_generate_with_a_transparent_layer_arrives_with_the_decoders_alpha(trixie_root, tmp_path):
    """Transparent layers: Generate into Selection with 'Transparent layer' on a tiny SD1.5 model with LayerDiffuse
    files of the published layouts; the new layer's alpha is the decoder's inside the selection, 0 outside; Img2img of
    that layer (Source: active layer) brings real alpha back."""
    import factory
    import tiny_layerdiffuse
    from conftest import ServerProcess
    from hosts.gimp import gimp_profile, run_batch

    models = factory.make_models_dir(tmp_path / "models", ("sd15",))
    tiny_layerdiffuse.install(models, "sd15")
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            run_batch(
                prof,
                """
img, (layer,) = make_image(96, 64)
img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 8, 48, 40)
before = composite(img)
user_pixels = read(layer, 0, 0, 96, 64)
old = img.get_layers()
expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a glass bottle", transparent=True, seed=3, steps=2,
          grow=0, feather=0, server=P["url"])
added = new_layers(img, old)
check(len(added) == 1, "one new layer: %r" % layer_summary(img))
res = added[0]
ok, rx, ry = res.get_offsets()
w, h = res.get_width(), res.get_height()
alpha = read(res, rx, ry, w, h)[3::4]
inside = [alpha[(y - ry) * w + (x - rx)] for y in range(8, 48) for x in range(16, 64)]
outside = [alpha[i] for i in range(w * h) if not (8 <= ry + i // w < 48 and 16 <= rx + i % w < 64)]
check(len(set(inside)) > 2, "the layer carries the decoder's alpha inside the selection: %r" % sorted(set(inside))[:8])
check(not any(outside), "and nothing outside it")
check(composite(img) != before, "the layer shows")
check(read(layer, 0, 0, 96, 64) == user_pixels, "the user's layer is untouched")

# img2img of the new transparent layer itself (Source: active layer): its alpha goes in and comes back redrawn
Gimp.Selection.none(img)
old = img.get_layers()
expect_ok("plug-in-paintbridge-img2img", img, [res], prompt="a glass bottle", transparent=True, source="layer",
          strength=0.5, seed=4, steps=2, server=P["url"])
(again,) = new_layers(img, old)
ok, ax, ay = again.get_offsets()
alpha2 = read(again, ax, ay, again.get_width(), again.get_height())[3::4]
check(len(set(alpha2)) > 2, "img2img with a transparent layer gives real alpha back: %r" % sorted(set(alpha2))[:8])
img.delete()
""",
                {"url": proc.url},
                timeout=600,
            ).assert_ok()
    finally:
        proc.stop()


# Every job dialog on default settings, one after another; the test measures each window and closes it with Escape.
DIALOGS = (
    ("inpaint", "Paintbridge: Inpaint Selection"),
    ("live-inpaint", "Paintbridge: Live Inpaint"),
    ("img2img", "Paintbridge: Img2img"),
    ("outpaint", "Paintbridge: Outpaint"),
    ("generate", "Paintbridge: Generate into Selection"),
    ("detail", "Paintbridge: Detail Faces"),
    ("edit", "Paintbridge: Edit from Instruction"),
    ("upscale", "Paintbridge: Upscale"),
    ("control-layer", "Paintbridge: Control Layer"),
    ("describe", "Paintbridge: Describe"),
    ("download-models", "Paintbridge: Download Models"),
)
DIALOGS_SCRIPT = """
import os, time
def marker(name):
    open(P["dir"] + "/" + name, "w").close()

img, (layer,) = make_image(320, 240)
Gimp.Display.new(img)
img.select_ellipse(Gimp.ChannelOps.REPLACE, 110, 70, 100, 90)
Gimp.displays_flush()
for i, name in enumerate(P["names"]):
    proc = PDB.lookup_procedure("plug-in-paintbridge-" + name)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    cfg.set_property("server", P["url"])
    marker("open-%d" % i)
    result = proc.run(cfg)
    check(result.index(0) == Gimp.PDBStatusType.CANCEL, "%s: Escape cancels its dialog: %r" % (name, result.index(0)))
    marker("closed-%d" % i)
marker("verified")
"""
SCREEN = (1280, 800)  # an ordinary laptop screen


def test_gui_every_dialog_shows_its_ok_button_without_scrolling(profile, server, artifacts_dir):
    """Each dialog on default settings fits a 1280 x 800 screen: its window, whose bottom row holds OK, lies inside
    the screen (GIMP's procedure dialogs do not scroll: a taller window would put OK below the screen's edge)."""
    from hosts.gimp import GuiSession

    session = GuiSession(profile, screen=f"{SCREEN[0]}x{SCREEN[1]}x24")
    sizes = {}
    try:
        session.start(DIALOGS_SCRIPT, {"url": server.url, "dir": profile.inside, "names": [n for n, _ in DIALOGS]})
        for i, (name, title) in enumerate(DIALOGS):
            session.wait_file(f"open-{i}", timeout=120)
            dialog = session.wait_window(title, timeout=120)
            time.sleep(1.0)  # let it draw
            session.screenshot(artifacts_dir / f"gimp-dialog-{name}.png")
            shell = session.xdotool("getwindowgeometry", "--shell", dialog).stdout
            geometry = dict(line.split("=", 1) for line in shell.split() if "=" in line)
            x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
            sizes[name] = (x, y, w, h)
            session.xdotool("windowfocus", "--sync", dialog)
            session.xdotool("key", "--clearmodifiers", "Escape")
            session.wait_file(f"closed-{i}", timeout=60)
        session.wait_file("verified", timeout=60)
    except BaseException:
        session.screenshot_quietly(artifacts_dir / "gimp-dialogs-failure.png")
        raise
    finally:
        session.stop()
    print("dialog windows (x, y, width, height):", sizes)
    outside = {
        name: box
        for name, box in sizes.items()
        if box[0] < 0 or box[1] < 0 or box[0] + box[2] > SCREEN[0] or box[1] + box[3] > SCREEN[1]
    }
    assert not outside, f"dialogs reaching past the {SCREEN[0]}x{SCREEN[1]} screen (OK hidden): {outside}"
