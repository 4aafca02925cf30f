"""The GIMP host checks, called by name inside GIMP 3 (gimp-console's python-fu-eval) by ``hosts.gimp.run_checks``:
each takes its parameters ``P`` (a dict), drives the plug-in through the PDB and raises on the first failed ``check``.
tests/test_gimp_host.py names which checks run in one GIMP start and with which server.
"""

import json
import os
import sys
import time

from gimp_prelude import (  # noqa: F401 - the checks' vocabulary
    CHECKS,
    GRAY,
    PDB,
    RGBA,
    Gegl,
    Gimp,
    add_layer,
    check,
    composite,
    expect_failure,
    expect_ok,
    layer_summary,
    make_image,
    new_layers,
    pattern_pixel,
    read,
    run_proc,
    selection_mask,
)
from gi.repository import Gio  # after the prelude's gi.require_version


def use_plugin(P):
    """Import the installed plug-in's packages (``P["plugin_dir"]``, as GIMP sees it) and its vendored client core."""
    for folder in (P["plugin_dir"], P["plugin_dir"] + "/vendor"):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def outpaint_a_photo(P, W, H):
    """A W x H photo layer outpainted by 16 px left and bottom through the plug-in: (image, layer, photo bytes, the
    layers before)."""
    img = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, "photo", W, H, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    row = b"".join(bytes(((x * 255) // (W - 1), (x * 7) % 256, (x * 13) % 251, 255)) for x in range(W))
    photo = b"".join(row[(y % 509) * 4 :] + row[: (y % 509) * 4] for y in range(H))  # rows shifted: no two alike nearby
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, W, H), RGBA, photo)
    buf.flush()
    img.set_selected_layers([layer])
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-outpaint",
        img,
        [layer],
        model="classical",
        extend=16,
        extend_left=True,
        extend_right=False,
        extend_bottom=True,
        server=P["url"],
    )
    return img, layer, photo, old


def inpaint_selection_keeps_everything_outside_the_soft_mask(P):
    use_plugin(P)
    from protocol.geometry import Box, context_box

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

    expect_ok(
        "plug-in-paintbridge-inpaint",
        img,
        [bottom],
        prompt="a red apple",
        model="classical",
        grow=0,
        feather=0,
        server=P["url"],
    )

    layers = img.get_layers()
    added = new_layers(img, old)
    check(len(added) == 1, "one new layer, got %r" % layer_summary(img))
    res = added[0]
    check(res.get_name() == "a red apple (classical, patch)", "named after the prompt: %r" % res.get_name())
    check(
        [l.get_id() for l in layers] == [top.get_id(), res.get_id(), bottom.get_id()],
        "inserted just above the active layer: %r" % layer_summary(img),
    )
    check(
        tuple(res.get_offsets()[1:]) == (box.x, box.y), "at the context box offsets %r: %r" % (box, res.get_offsets())
    )
    check((res.get_width(), res.get_height()) == (box.width, box.height), "the context box's size")
    check([read(l, 0, 0, 120, 96) for l in (bottom, top)] == user_pixels, "the user's layers are not modified")
    check(selection_mask(img) == sel, "the selection is unchanged")
    alpha = read(res, box.x, box.y, box.width, box.height)[3::4]
    inside = bytes(sel[(box.y + y) * 120 + box.x + x] for y in range(box.height) for x in range(box.width))
    check(alpha == inside, "the result's alpha is the soft selection mask, soft edges kept")
    after = composite(img)
    outside_same = all(after[i * 4 : i * 4 + 4] == before[i * 4 : i * 4 + 4] for i in range(120 * 96) if sel[i] == 0)
    check(outside_same, "pixels outside the mask are exactly the original ones")
    changed = sum(1 for i in range(120 * 96) if sel[i] == 255 and after[i * 4 : i * 4 + 3] != before[i * 4 : i * 4 + 3])
    check(changed > 50, "the selected area was repainted (%d px changed)" % changed)
    img.delete()


def layer_mask_and_active_layer_as_inputs_and_gray_images(P):
    use_plugin(P)
    from protocol.geometry import Box

    img, (bottom, top) = make_image(96, 64, layers=2)
    mask = bottom.create_mask(Gimp.AddMaskType.BLACK)
    bottom.add_mask(mask)
    buf = mask.get_buffer()
    buf.set(Gegl.Rectangle.new(10, 12, 20, 14), GRAY, bytes([255]) * (20 * 14))
    buf.flush()
    old = img.get_layers()
    bottom_px = read(bottom, 0, 0, 96, 64)
    # the layer mask (white = repaint) marks the area; the active layer, not the composite, is what the model sees
    expect_ok(
        "plug-in-paintbridge-inpaint",
        img,
        [mask],
        model="classical",
        source="layer",
        mask_source="layer-mask",
        grow=0,
        feather=0,
        server=P["url"],
    )
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
    check(
        all(px[i * 4 : i * 4 + 3] == src[i * 4 : i * 4 + 3] for i in range(w * h) if m[i] == 0),
        "outside the mask the result holds the active layer's own pixels",
    )
    check(read(bottom, 0, 0, 96, 64) == bottom_px, "the active layer is not modified")
    check(bottom.get_mask() is not None, "its mask is still there")
    img.delete()

    # the live preview is left out of what the model sees: host.read_visible(hide=...) finds it in the image's copy
    from gimp_plugin import host

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


def outpaint_extends_the_canvas_and_moves_no_pixel(P):
    img, (layer,) = make_image(64, 48)
    before = composite(img)
    layer_px = read(layer, 0, 0, 64, 48)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-outpaint",
        img,
        [layer],
        model="classical",
        extend=16,
        extend_left=True,
        extend_right=False,
        extend_bottom=True,
        server=P["url"],
    )
    check((img.get_width(), img.get_height()) == (80, 64), "canvas grew by 16 px left and bottom")
    check(tuple(layer.get_offsets()[1:]) == (16, 0), "the user's layer moved with the canvas")
    check(read(layer, 16, 0, 64, 48) == layer_px, "and kept its pixels")
    added = new_layers(img, old)
    check(len(added) == 1, "one new layer")
    res = added[0]
    check(
        tuple(res.get_offsets()[1:]) == (0, 0) and (res.get_width(), res.get_height()) == (80, 64),
        "the result covers the new canvas: %r" % layer_summary(img),
    )
    check(res.get_name() == "Outpaint (classical, patch)", "named: %r" % res.get_name())
    after = composite(img)
    same = all(
        after[((y * 80) + x + 16) * 4 : ((y * 80) + x + 16) * 4 + 4] == before[(y * 64 + x) * 4 : (y * 64 + x) * 4 + 4]
        for y in range(48)
        for x in range(64)
    )
    check(same, "the original area is exactly as before")
    new_alpha = [after[((y * 80) + x) * 4 + 3] for y in range(64) for x in range(80) if x < 16 or y >= 48]
    check(min(new_alpha) == 255, "the new area is filled")
    img.delete()


def outpaint_travels_through_shared_memory_with_the_wire_paths_pixels(P):
    import hashlib

    W, H = 1000, 800

    img, layer, photo, old = outpaint_a_photo(P, W, H)
    added = new_layers(img, old)
    check(len(added) == 1 and (added[0].get_width(), added[0].get_height()) == (W + 16, H + 16), "one result layer")
    with open(P["digest"], "w") as f:
        f.write(hashlib.sha256(read(added[0], 0, 0, W + 16, H + 16)).hexdigest())
    img.delete()


def a_seamless_upscale_keeps_a_texture_seamless(P):
    img, (layer,) = make_image(40, 32)
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, 40, 32), RGBA, open(P["dir"] + "/texture.raw", "rb").read())
    buf.flush()
    for tileable in (True, False):
        new = expect_ok(
            "plug-in-paintbridge-upscale", img, [layer], scale=2.5, tileable=tileable, server=P["url"]
        ).index(1)
        check((new.get_width(), new.get_height()) == (100, 80), "a new 100x80 image")
        open(P["dir"] + "/upscaled-%s.raw" % tileable, "wb").write(read(new.get_layers()[0], 0, 0, 100, 80))
        new.delete()
    img.delete()


def upscale_into_a_new_image_or_a_new_layer(P):
    img, (layer,) = make_image(40, 30)
    summary = layer_summary(img)
    result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=2.0, server=P["url"])
    new = result.index(1)
    check(new is not None and (new.get_width(), new.get_height()) == (80, 60), "a new 80x60 image")
    check(
        len(new.get_layers()) == 1 and new.get_layers()[0].get_name() == "Upscale",
        "with one layer: %r" % layer_summary(new),
    )
    check(layer_summary(img) == summary and (img.get_width(), img.get_height()) == (40, 30), "the source is untouched")
    big = read(new.get_layers()[0], 0, 0, 80, 60)
    small = read(layer, 0, 0, 40, 30)
    diff = sum(
        abs(big[((2 * y) * 80 + 2 * x) * 4 + c] - small[(y * 40 + x) * 4 + c])
        for y in range(5, 25)
        for x in range(5, 35)
        for c in range(3)
    ) / (20 * 30 * 3)
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
    check(
        len(added) == 1 and tuple(added[0].get_offsets()[1:]) == (0, 0) and added[0].get_width() == 80,
        "one 80x60 layer at (0, 0): %r" % layer_summary(img),
    )
    check(
        read(layer, 0, 0, 40, 30) == small and tuple(layer.get_offsets()[1:]) == (0, 0), "the user's layer is untouched"
    )
    img.delete()


def a_6000x4000_photo_is_outpainted_and_upscaled(P):
    W, H = 6000, 4000

    img, layer, photo, old = outpaint_a_photo(P, W, H)
    check((img.get_width(), img.get_height()) == (W + 16, H + 16), "canvas grew by 16 px left and bottom")
    check(read(layer, 16, 0, W, H) == photo, "the photo moved with the canvas and kept every pixel")
    added = new_layers(img, old)
    check(
        len(added) == 1 and (added[0].get_width(), added[0].get_height()) == (W + 16, H + 16),
        "one result layer over the new canvas: %r" % layer_summary(img),
    )
    inside = read(added[0], 16, 0, W, H)
    check(
        all(inside[c::4] == photo[c::4] for c in range(3)) and inside[3::4].count(0) == W * H,
        "the result keeps the photo's pixels exactly, transparent over them",
    )
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


def control_layer_from_image(P):
    img, (layer,) = make_image(64, 48)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-control-layer",
        img,
        [layer],
        preprocessor="canny",
        low_threshold=50,
        high_threshold=120,
        server=P["url"],
    )
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
    check(
        len(added) == 1 and tuple(added[0].get_offsets()[1:]) == (8, 8) and added[0].get_width() == 20,
        "a selection makes a control layer of its bounds: %r" % layer_summary(img),
    )
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-control-layer", img, [], preprocessor="scribble", server=P["url"])
    added = new_layers(img, old)
    check(
        len(added) == 1 and img.get_layers()[0].get_id() == added[0].get_id(),
        "without an active layer the result goes on top: %r" % layer_summary(img),
    )
    img.delete()


def failures_end_with_a_clear_message_and_an_untouched_image(P):
    img, (layer,) = make_image(64, 64)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 20, 16, 16)
    expect_failure(
        "plug-in-paintbridge-inpaint",
        img,
        [layer],
        "execution-error",
        "Cannot reach the Paintbridge server",
        model="classical",
        server=P["down_url"],
    )
    expect_failure(
        "plug-in-paintbridge-img2img",
        img,
        [layer],
        "execution-error",
        "classical engine cannot do 'img2img'",
        model="classical",
        server=P["url"],
    )
    expect_failure(
        "plug-in-paintbridge-generate", img, [layer], "execution-error", "needs a diffusion checkpoint", server=P["url"]
    )
    # The model argument is a choice of the installed models: a name the server does not list is not taken (GIMP keeps
    # the server's default), so an unknown model cannot even be sent.
    cfg = PDB.lookup_procedure("plug-in-paintbridge-inpaint").create_config()
    cfg.set_property("model", "not-a-model")
    check(cfg.get_property("model") == "default", "an unknown model is not a choice: %r" % cfg.get_property("model"))
    cfg.set_property("model", "classical")
    check(cfg.get_property("model") == "classical", "the built-in engine is a choice")
    expect_failure(
        "plug-in-paintbridge-inpaint",
        img,
        [layer],
        "calling-error",
        "has no layer mask",
        model="classical",
        mask_source="layer-mask",
        server=P["url"],
    )
    expect_failure(
        "plug-in-paintbridge-outpaint",
        img,
        [layer],
        "calling-error",
        "at least one side",
        model="classical",
        extend_right=False,
        server=P["url"],
    )
    expect_failure(
        "plug-in-paintbridge-inpaint",
        img,
        [],
        "calling-error",
        "needs an active layer",
        model="classical",
        source="layer",
        server=P["url"],
    )
    Gimp.Selection.none(img)
    expect_failure(
        "plug-in-paintbridge-inpaint",
        img,
        [layer],
        "calling-error",
        "needs a selection",
        model="classical",
        server=P["url"],
    )
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, 8, 8)
    Gimp.edit_copy([layer])
    Gimp.edit_paste(layer, False)
    check(img.get_floating_sel() is not None, "a floating selection for the next check")
    status, message, _r = run_proc("plug-in-paintbridge-inpaint", img, [layer], model="classical", server=P["url"])
    check(status == "calling-error" and "floating selection" in message, "a floating selection is named: %s" % message)
    img.delete()


def a_connection_cut_mid_job_still_delivers_the_layer(P):
    img, (layer,) = make_image(120, 96)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 40, 30)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-inpaint",
        img,
        [layer],
        prompt="over a flaky network",
        model="classical",
        grow=0,
        feather=0,
        server=P["url"],
    )
    added = new_layers(img, old)
    check(len(added) == 1, "the layer arrived after the reconnect: %r" % layer_summary(img))
    check(added[0].get_name() == "over a flaky network (classical, patch)", "named: %r" % layer_summary(img))
    img.delete()


def server_address_is_remembered_between_runs(P):
    img, (layer,) = make_image(64, 64)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 20, 16, 16)
    expect_ok("plug-in-paintbridge-inpaint", img, [layer], model="classical", server=P["server"])
    img.delete()


def tiny_diffusion_model_generate_batch_and_control_layer(P):
    img, (layer, sketch) = make_image(64, 64, layers=2)
    sketch.set_visible(False)
    img.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 12, 40, 36)
    sel = selection_mask(img)
    before = composite(img)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a tiny house",
        seed=1234,
        batch=2,
        steps=2,
        grow=0,
        feather=0,
        server=P["url"],
    )
    added = new_layers(img, old)
    names = [l.get_name() for l in added]
    check(len(added) == 2, "a batch of 2 gives two layers: %r" % layer_summary(img))
    check(
        names[0] == "a tiny house (seed 1234)" and names[1].startswith("a tiny house (seed ") and names[0] != names[1],
        "named after prompt and seed: %r" % names,
    )
    after = composite(img)
    check(
        all(after[i * 4 : i * 4 + 4] == before[i * 4 : i * 4 + 4] for i in range(64 * 64) if sel[i] == 0),
        "outside the selection nothing changed",
    )
    for res in added:
        ok, rx, ry = res.get_offsets()
        w, h = res.get_width(), res.get_height()
        alpha = read(res, rx, ry, w, h)[3::4]
        inside = bytes(sel[(ry + y) * 64 + rx + x] for y in range(h) for x in range(w))
        check(alpha == inside, "generate into a selection: the layer's alpha is the soft selection (server-composited)")

    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-img2img",
        img,
        [layer],
        prompt="a tiny house",
        seed=7,
        steps=2,
        strength=0.5,
        control_layer=sketch,
        control_type="canny",
        control_strength=0.8,
        control_preprocess=True,
        control_2_layer=layer,
        control_2_type="canny",
        control_2_strength=0.4,
        server=P["url"],
    )
    added = new_layers(img, old)
    check(
        len(added) == 1 and added[0].get_name() == "a tiny house (seed 7)",
        "img2img with two control layers: %r" % layer_summary(img),
    )

    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-outpaint",
        img,
        [layer],
        prompt="a tiny house",
        seed=3,
        steps=2,
        extend=16,
        extend_right=False,
        extend_top=True,
        server=P["url"],
    )
    check((img.get_width(), img.get_height()) == (64, 80), "outpaint with the diffusion model grew the canvas")
    added = new_layers(img, old)
    check(
        len(added) == 1 and added[0].get_name() == "a tiny house (seed 3)" and added[0].get_height() == 80,
        "one outpaint layer over the new canvas: %r" % layer_summary(img),
    )

    Gimp.Selection.none(img)
    result = expect_ok(
        "plug-in-paintbridge-upscale",
        img,
        [layer],
        scale=2.0,
        refine=0.3,
        steps=2,
        seed=11,
        prompt="a tiny house",
        server=P["url"],
    )
    new = result.index(1)
    check((new.get_width(), new.get_height()) == (128, 160), "upscale and refine: a new 128x160 image")
    check(new.get_layers()[0].get_name() == "a tiny house (seed 11)", "named: %r" % layer_summary(new))
    new.delete()
    img.delete()


def a_pose_layer_made_from_the_image_guides_img2img_and_its_edits_count(P):
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
        expect_ok(
            "plug-in-paintbridge-img2img",
            img,
            [layer],
            prompt="a dancer",
            seed=seed,
            steps=2,
            strength=0.8,
            control_layer=pose,
            control_type="pose",
            control_strength=1.0,
            server=P["url"],
        )
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


def tiny_flux_model_generate_into_a_selection(P):
    img, (layer,) = make_image(64, 64)
    img.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 12, 40, 36)
    sel = selection_mask(img)
    before = composite(img)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a tiny house",
        seed=5,
        steps=2,
        grow=0,
        feather=0,
        server=P["url"],
    )
    added = new_layers(img, old)
    check(len(added) == 1 and added[0].get_name() == "a tiny house (seed 5)", "one Flux layer: %r" % layer_summary(img))
    after = composite(img)
    check(
        all(after[i * 4 : i * 4 + 4] == before[i * 4 : i * 4 + 4] for i in range(64 * 64) if sel[i] == 0),
        "outside the selection nothing changed",
    )
    check(
        any(after[i * 4 : i * 4 + 3] != before[i * 4 : i * 4 + 3] for i in range(64 * 64) if sel[i] == 255),
        "inside the selection the Flux model painted",
    )
    plain = read(added[0], 0, 0, 64, 64)
    picture = Gimp.Layer.new(img, "Reference", 64, 64, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(picture, None, 0)
    buf = picture.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, 64, 64), RGBA, bytes((220, 40, 30, 255)) * (64 * 64))
    buf.flush()
    picture.set_visible(False)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a tiny house",
        seed=5,
        steps=2,
        grow=0,
        feather=0,
        server=P["url"],
        **{"reference-layer": picture, "reference-type": "style", "reference-strength": 1.0},
    )
    guided = new_layers(img, old)
    check(len(guided) == 1, "one layer guided by the reference: %r" % layer_summary(img))
    check(read(guided[0], 0, 0, 64, 64) != plain, "the Redux reference changed the Flux layer at the same seed")
    img.delete()


def offers_only(procedure, refused, offered):
    """A procedure of a mode only some models run lists ``offered`` in its model choice, and not ``refused``."""
    cfg = PDB.lookup_procedure(procedure).create_config()
    cfg.set_property("model", refused)
    check(cfg.get_property("model") == "default", "%s is no choice: %r" % (refused, cfg.get_property("model")))
    cfg.set_property("model", offered)
    check(cfg.get_property("model") == offered, "%s is a choice" % offered)


def instruction_edit_on_a_tiny_kontext_model(P):
    img, (layer,) = make_image(64, 64)
    offers_only("plug-in-paintbridge-edit", refused="tiny-flux", offered="tiny-flux-kontext")
    expect_failure(
        "plug-in-paintbridge-edit",
        img,
        [layer],
        "calling-error",
        "needs a model that edits from an instruction",
        prompt="make it red",
        server=P["url"],
    )
    img.select_ellipse(Gimp.ChannelOps.REPLACE, 12, 12, 40, 36)
    sel = selection_mask(img)
    before = composite(img)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-edit",
        img,
        [layer],
        model="tiny-flux-kontext",
        prompt="make the roof red",
        seed=5,
        steps=2,
        grow=0,
        feather=0,
        server=P["url"],
    )
    added = new_layers(img, old)
    check(
        len(added) == 1 and added[0].get_name() == "make the roof red (seed 5)",
        "one edited layer: %r" % layer_summary(img),
    )
    after = composite(img)
    check(
        all(after[i * 4 : i * 4 + 4] == before[i * 4 : i * 4 + 4] for i in range(64 * 64) if sel[i] == 0),
        "outside the selection nothing changed",
    )
    check(
        any(after[i * 4 : i * 4 + 3] != before[i * 4 : i * 4 + 3] for i in range(64 * 64) if sel[i] == 255),
        "inside the selection the Kontext model edited",
    )
    img.delete()


def the_new_group(img, old, layer, name, names):
    """The one layer group added since ``old`` (the image's layers before), right above ``layer``, named ``name`` and
    holding layers named ``names`` (bottom first): its layers, top first as GIMP lists a stack."""
    added = new_layers(img, old)
    check(len(added) == 1 and added[0].is_group(), "one new layer group: %r" % layer_summary(img))
    group = added[0]
    check(group.get_name() == name, "the group's name: %r" % group.get_name())
    check(
        img.get_item_position(group) == img.get_item_position(layer) - 1,
        "the group lies right above the active layer: %r" % layer_summary(img),
    )
    children = group.get_children()
    got = [c.get_name() for c in children]
    check(got == list(names)[::-1], "the layers, bottom one last: %r" % got)
    return children


def decompose_arrives_as_a_layer_group_with_names_in_order_and_alpha(P):
    img, (layer,) = make_image(96, 64)
    offers_only("plug-in-paintbridge-decompose", refused="tiny-qwen", offered="tiny-qwen-layered")
    expect_failure(
        "plug-in-paintbridge-decompose",
        img,
        [layer],
        "calling-error",
        "needs a model that splits a picture into layers",
        model_name="tiny-qwen",
        server=P["url"],
    )
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 8, 48, 40)
    user = read(layer, 0, 0, 96, 64)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-decompose",
        img,
        [layer],
        model="tiny-qwen-layered",
        prompt="a house with a red roof",
        layer_count=3,
        seed=9,
        steps=2,
        server=P["url"],
    )
    names = ["Layer 1 (bottom)", "Layer 2", "Layer 3 (top)"]
    children = the_new_group(img, old, layer, "a house with a red roof (seed 9)", names)
    seen = []
    for child in children:
        ok, cx, cy = child.get_offsets()
        check((cx, cy, child.get_width(), child.get_height()) == (16, 8, 48, 40), "at the selection's bounds")
        check(child.has_alpha(), "%s has an alpha channel" % child.get_name())
        alpha = read(child, 16, 8, 48, 40)[3::4]
        check(
            min(alpha) < 255 and len(set(alpha)) > 8,
            "%s carries the model's alpha: %r" % (child.get_name(), sorted(set(alpha))[:8]),
        )
        seen.append(read(child, 16, 8, 48, 40))
    check(len(set(seen)) == 3, "three different layers")
    check(read(layer, 0, 0, 96, 64) == user, "the user's layer is untouched")
    img.delete()


def download_models_pulls_through_the_server_and_the_model_shows_up(P):
    use_plugin(P)
    from client import downloads as cm
    from client.connect import fetch_models

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


def reference_layers_guide_generate_and_missing_adapters_are_named(P):
    img, (layer, picture) = make_image(64, 64, layers=2)
    picture.set_visible(False)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 8, 48, 40)
    results = {}
    for name, extra in (
        ("plain", {}),
        ("style", dict(reference_layer=picture, reference_type="style", reference_strength=1.5)),
    ):
        old = img.get_layers()
        expect_ok(
            "plug-in-paintbridge-generate",
            img,
            [layer],
            prompt="a tiny house",
            seed=5,
            steps=3,
            grow=0,
            feather=0,
            server=P["url"],
            **extra,
        )
        added = new_layers(img, old)
        check(len(added) == 1, "one layer (%s): %r" % (name, layer_summary(img)))
        ok, rx, ry = added[0].get_offsets()
        results[name] = read(added[0], rx, ry, added[0].get_width(), added[0].get_height())
    check(results["plain"] != results["style"], "the reference layer changed the result of the same seed")
    expect_failure(
        "plug-in-paintbridge-img2img",
        img,
        [layer],
        "execution-error",
        "face",
        prompt="a tiny house",
        steps=2,
        reference_layer=picture,
        reference_type="face",
        server=P["url"],
    )
    img.delete()


def detail_faces_and_hands_procedure_and_hires_generate_on_a_portrait(P):
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(P["photo"]))
    layer = img.get_layers()[0]
    check((img.get_width(), img.get_height()) == (512, 512), "the portrait loaded")
    spec = Gimp.get_pdb().lookup_procedure("plug-in-paintbridge-detail").find_argument("detail-targets")
    nicks = list(Gimp.param_spec_choice_get_choice(spec).list_nicks())
    check(nicks == ["face", "hand", "face-hand"], "hands offered with the server's hand detector: %r" % nicks)
    before = composite(img)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-detail",
        img,
        [layer],
        prompt="a portrait",
        seed=5,
        steps=4,
        detail_strength=0.6,
        detail_prompt="a smiling face",
        detail_targets="face-hand",
        server=P["url"],
    )
    added = new_layers(img, old)
    check(len(added) == 1, "one layer with the repainted face and hand: %r" % layer_summary(img))
    res = added[0]
    ok, rx, ry = res.get_offsets()
    w, h = res.get_width(), res.get_height()
    alpha = read(res, rx, ry, w, h)[3::4]
    outside = [
        (rx + i % w, ry + i // w)
        for i in range(w * h)
        if alpha[i]
        and not (100 < rx + i % w < 330 and ry + i // w < 260)  # the face's crop
        and not (250 < rx + i % w < 490 and 200 < ry + i // w < 440)
    ]  # the hand's crop
    check(not outside, "only around the face and the hand: %r" % outside[:5])
    check(alpha[(66 + 52 - ry) * w + 180 + 44 - rx] == 255, "the face's centre is repainted")
    check(alpha[(320 - ry) * w + 373 - rx] == 255, "the hand's centre is repainted")
    after = composite(img)
    check(after != before, "the face and the hand changed")
    check(
        all(after[i * 4 : i * 4 + 4] == before[i * 4 : i * 4 + 4] for i in range(0, 512 * 512, 7) if i // 512 > 440),
        "below the hand nothing changed",
    )

    res.set_visible(False)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a portrait", seed=3, steps=4, server=P["url"])
    plain = new_layers(img, old)[0]
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a portrait",
        seed=3,
        steps=4,
        hires=True,
        hires_upscaler="lanczos",
        hires_scale=2.0,
        hires_strength=0.5,
        server=P["url"],
    )
    two = new_layers(img, old)
    check(
        len(two) == 1 and (two[0].get_width(), two[0].get_height()) == (512, 512),
        "hires: one 512x512 layer: %r" % layer_summary(img),
    )
    check(read(two[0], 0, 0, 512, 512) != read(plain, 0, 0, 512, 512), "two passes paint differently from one")
    img.delete()


def document_data_survives_saving_closing_and_reopening_the_xcf(P):
    use_plugin(P)
    import os
    import tempfile
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


def region_prompts_on_a_layer_and_a_channel_steer_inpaint_and_survive_the_xcf(P):
    use_plugin(P)
    from protocol.geometry import Box
    import tempfile

    W, H = 64, 48
    img, (layer,) = make_image(W, H)
    car = Gimp.Layer.new(img, "Car", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(car, None, 0)
    left = b"".join(b"\xff\x00\x00\xff" if x < W // 2 else b"\x00\x00\x00\x00" for y in range(H) for x in range(W))
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
        check(
            all(after[i * 4 : i * 4 + 4] == before[i * 4 : i * 4 + 4] for i in range(W * H) if sel[i] == 0),
            "outside the selection nothing changed",
        )
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
    top = b"".join(b"\xff" if y < H // 2 else b"\x00" for y in range(H) for x in range(W))
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


def a_result_undone_survives_the_xcf_and_applies_again_with_the_same_pixels(P):
    use_plugin(P)
    import json
    import tempfile

    img, (bottom,) = make_image(120, 96)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 40, 30)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-inpaint",
        img,
        [bottom],
        prompt="kept for later",
        model="classical",
        fill="ns",
        steps=4,
        server=P["url"],
    )
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
    check(
        entry["prompt"] == "kept for later" and entry["mode"] == "inpaint" and entry["model"] == "classical",
        "the entry says what the job was: %r" % entry,
    )
    check(entry["layers"] == [[name, ox, oy, w, h]], "and where its layer went: %r" % entry["layers"])
    check(entry["settings"]["steps"] == 4 and entry["settings"]["fill"] == "ns", "with the job's settings")
    print(
        "stored bytes", entry["stored_bytes"], "xcf parasite", len(img.get_parasite("paintbridge-history").get_data())
    )

    old = img.get_layers()
    expect_ok("plug-in-paintbridge-history", img, [bottom], action="apply", index=0)
    (again,) = new_layers(img, old)
    check(again.get_name() == name and tuple(again.get_offsets()[1:]) == (ox, oy), "applied where it was made")
    check(read(again, ox, oy, w, h) == first, "with exactly the same pixels")

    settings = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="reuse").index(2))
    check(
        settings["prompt"] == "kept for later" and settings["steps"] == 4 and settings["mode"] == "inpaint",
        "reuse gives the job's settings: %r" % settings,
    )
    waiting = json.load(open(Gimp.directory() + "/paintbridge-reuse.json"))
    check(
        waiting["procedure"] == "plug-in-paintbridge-inpaint" and waiting["values"]["prompt"] == "kept for later",
        "and keeps them for the inpaint dialog: %r" % waiting,
    )

    expect_failure("plug-in-paintbridge-history", img, [bottom], "calling-error", "there is no entry 3", index=3)
    expect_ok("plug-in-paintbridge-history", img, [bottom], action="delete", index=0)
    check(json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list").index(1)) == [], "deleted")
    check(img.get_parasite("paintbridge-history") is None, "nothing left in the image")

    img.attach_parasite(Gimp.Parasite.new("paintbridge-history", Gimp.PARASITE_PERSISTENT, list(b"garbage")))
    check(
        json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list").index(1)) == [],
        "unreadable history data lists as empty, with a message, and is not fatal",
    )
    expect_ok("plug-in-paintbridge-inpaint", img, [bottom], prompt="a new one", model="classical", server=P["url"])
    listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", limit_mb=0).index(1))
    check(listed == [], "a limit of 0 MB keeps nothing")
    expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", limit_mb=64)  # back to the default
    img.delete()


def the_history_search_finds_a_result_by_a_word_of_its_prompt(P):
    use_plugin(P)
    import json

    img, (bottom,) = make_image(96, 80)
    made = {}
    for prompt in ("a mossy stone", "a rusty gate"):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 16, 30, 24)
        old = img.get_layers()
        expect_ok(
            "plug-in-paintbridge-inpaint",
            img,
            [bottom],
            prompt=prompt,
            model="classical",
            fill="telea" if "stone" in prompt else "ns",
            server=P["url"],
        )
        (layer,) = new_layers(img, old)
        ok, x, y = layer.get_offsets()
        made[prompt] = read(layer, x, y, layer.get_width(), layer.get_height())
        img.remove_layer(layer)
    listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", search="MOSSY").index(1))
    check([e["prompt"] for e in listed] == ["a mossy stone"], "a word of its prompt finds the older entry: %r" % listed)
    listed = json.loads(
        expect_ok(
            "plug-in-paintbridge-history", img, [bottom], action="list", search="mode:inpaint model:classical"
        ).index(1)
    )
    check([e["prompt"] for e in listed] == ["a rusty gate", "a mossy stone"], "fields narrow too, newest first")
    check(
        json.loads(expect_ok("plug-in-paintbridge-history", img, [bottom], action="list", search="zebra").index(1))
        == [],
        "a word no prompt has finds nothing",
    )
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-history", img, [bottom], action="apply", index=0, search="stone")
    (again,) = new_layers(img, old)
    ok, x, y = again.get_offsets()
    check(
        read(again, x, y, again.get_width(), again.get_height()) == made["a mossy stone"],
        "index 0 of the search is the entry it found, applied pixel for pixel",
    )
    expect_failure("plug-in-paintbridge-history", img, [bottom], "calling-error", "matches 'zebra'", search="zebra")
    expect_failure("plug-in-paintbridge-history", img, [bottom], "calling-error", "whole number", search="seed:abc")
    img.delete()


def an_xcf_whose_history_holds_zlib_bombs_opens_and_names_the_damaged_part(P):
    use_plugin(P)
    import json
    import resource
    import tempfile
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
    print("peak memory growth reading the bomb history: %.1f MiB" % (growth / 2**20))
    check(growth < 128 << 20, "bounded: an unbounded read takes at least 1 GiB, this took %d bytes" % growth)
    check(
        [e.prompt for e in kept.entries] == ["kept"], "the good result is read: %r" % [e.prompt for e in kept.entries]
    )
    check(
        "the thumbnail of result 1 of history entry" in kept.problem and "decompresses to more than" in kept.problem,
        "the note names the damaged part: %s" % kept.problem,
    )
    listed = json.loads(expect_ok("plug-in-paintbridge-history", img, [layer], action="list").index(1))
    check([e["prompt"] for e in listed] == ["kept"], "the History procedure lists the good result: %r" % listed)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-history", img, [layer], action="apply", index=0)
    check(len(new_layers(img, old)) == 1, "and applies it again: GIMP and the plug-in stay up")
    img.delete()


def sampler_schedule_batch_count_vae_and_clip_skip_as_procedure_arguments(P):
    img, (layer,) = make_image(64, 64)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a tiny house",
        seed=21,
        steps=3,
        cfg=7.0,
        batch=1,
        batch_count=2,
        sampler="euler",
        scheduler="karras",
        vae_name="tiny-vae-ft-mse",
        clip_skip=2,
        server=P["url"],
    )
    added = new_layers(img, old)
    names = sorted(l.get_name() for l in added)
    check(names == ["a tiny house (seed 21)", "a tiny house (seed 22)"], "two calls, one layer each: %r" % names)
    for res in added:
        ok, rx, ry = res.get_offsets()
        check((rx, ry, res.get_width(), res.get_height()) == (0, 0, 64, 64), "the whole canvas")
        seed = res.get_name().rsplit(" ", 1)[1].strip(")")
        open(P["dir"] + "/layer-" + seed + ".rgba", "wb").write(read(res, 0, 0, 64, 64))
    expect_failure(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        "calling-error",
        "'DDIM'",
        prompt="x",
        steps=2,
        sampler="ddim",
        scheduler="karras",
        server=P["url"],
    )
    img.delete()


def speed_fast_as_a_procedure_argument(P):
    """Generate with ``speed`` ``fast`` on the tiny SD1.5 model: the result's ``info.speed`` (as the image's history
    keeps it) says the level ran with deep features reused."""
    use_plugin(P)
    from gimp_plugin import history

    img, (layer,) = make_image(64, 64)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a tiny house",
        seed=23,
        steps=4,
        batch=1,
        speed="fast",
        server=P["url"],
    )
    added = new_layers(img, old)
    check(len(added) == 1, "one new layer: %r" % layer_summary(img))
    info = history.newest_first(history.of(img))[0].layers[0].info
    speed = info.get("speed") or {}
    check(speed.get("level") == "fast" and speed.get("reused_steps", 0) > 0, "info.speed says fast: %r" % info)
    img.delete()


def live_state_sees_one_pixel_under_the_selection_without_reading_pixels(P):
    use_plugin(P)
    from protocol.geometry import context_box
    from gimp_plugin import argspec, arguments, capture, host

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
    spec = arguments.BY_NAME[argspec.PREFIX + "live-inpaint"]
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
    changed_by(
        "a 2-px write on the painted layer with Source = Active layer",
        lambda: paint(layer, 210, 130, 2, 1),
        source="layer",
    )
    changed_by("hiding a visible layer", lambda: above.set_visible(False))
    changed_by("growing the selection by one pixel", lambda: img.select_rectangle(Gimp.ChannelOps.ADD, 199, 120, 1, 1))
    mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(mask)
    changed_by(
        "a 2-px write on the active layer's mask with Mask = layer mask",
        lambda: paint(mask, 10, 10, 2, 1, (0,), GRAY),
        mask_source="layer-mask",
    )
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


def reuse_settings_refills_control_and_reference_slots_by_tattoo_after_reopening_the_xcf(P):
    use_plugin(P)
    import tempfile
    from client.settings import Settings
    from gimp_plugin import arguments, host, procedures, values

    W, H = 64, 48
    img, (bottom,) = make_image(W, H)
    sketch, depth, photo, face = (add_layer(img, name, W, H) for name in ("sketch", "depth", "photo", "face"))
    sky = Gimp.Channel.new(img, "Sky", W, H, 100.0, Gegl.Color.new("white"))
    img.insert_channel(sky, None, 0)
    spec = arguments.BY_MODE["inpaint"]
    chosen = dict(
        spec.defaults(),
        prompt="again",
        vae="default",
        **{
            "control-layer": sketch,
            "control-type": "scribble",
            "control-strength": 0.6,
            "control-end": 0.7,
            "control-5-layer": depth,
            "control-5-type": "depth",
            "control-5-start": 0.2,
            "control-5-preprocess": True,
            "reference-layer": photo,
            "reference-type": "style",
            "reference-region": sky,
            "reference-3-layer": face,
            "reference-3-type": "face",
            "reference-3-strength": 0.5,
        },
    )
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
    check(
        [
            item("control-layer"),
            item("control-2-layer"),
            item("reference-layer"),
            item("reference-region"),
            item("reference-2-layer"),
        ]
        == ["sketch", "depth", "photo", "Sky", "face"],
        "every slot's layer found again in the reopened image: %r" % [item("control-layer"), item("control-2-layer")],
    )
    check(all(cfg.get_property("control-%d-layer" % i) is None for i in range(3, 9)), "the other slots off")
    check(
        (cfg.get_property("control-type"), cfg.get_property("control-strength"), cfg.get_property("control-end"))
        == ("scribble", 0.6, 0.7),
        "with their settings",
    )
    check(
        (
            cfg.get_property("control-2-type"),
            cfg.get_property("control-2-start"),
            cfg.get_property("control-2-preprocess"),
        )
        == ("depth", 0.2, True),
        "the second one too",
    )
    check(
        (cfg.get_property("reference-2-type"), cfg.get_property("reference-2-strength")) == ("face", 0.5),
        "and the references' settings",
    )
    again = values.settings_from_values(spec, {a.name: cfg.get_property(a.name) for a in spec.args}, host.stable_id)
    check(
        again.controls == stored.controls and again.references == stored.references and again.prompt == "again",
        "the same settings come back",
    )
    img.remove_layer(by_name["depth"])
    cfg = reuse_into_a_new_config()
    check(
        cfg.get_property("control-2-layer") is None and item("control-layer") == "sketch",
        "a layer the image lost leaves its slot empty, the others refilled",
    )
    img.delete()


def describe_fills_the_prompt_of_the_next_run_with_the_captioners_words(P):
    import json
    import os

    img, (layer,) = make_image(64, 48)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 8, 6, 40, 30)
    whole = composite(img)
    box = b"".join(whole[((6 + y) * 64 + 8) * 4 : ((6 + y) * 64 + 48) * 4] for y in range(30))
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
    check(
        [e["prompt"] for e in listed] == ["", tags, "my own words"],
        "the runs' prompts: %r" % [e["prompt"] for e in listed],
    )
    img.delete()


def generate_with_a_transparent_layer_arrives_with_the_decoders_alpha(P):
    img, (layer,) = make_image(96, 64)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 8, 48, 40)
    before = composite(img)
    user_pixels = read(layer, 0, 0, 96, 64)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        prompt="a glass bottle",
        transparent=True,
        seed=3,
        steps=2,
        grow=0,
        feather=0,
        server=P["url"],
    )
    added = new_layers(img, old)
    check(len(added) == 1, "one new layer: %r" % layer_summary(img))
    res = added[0]
    ok, rx, ry = res.get_offsets()
    w, h = res.get_width(), res.get_height()
    alpha = read(res, rx, ry, w, h)[3::4]
    inside = [alpha[(y - ry) * w + (x - rx)] for y in range(8, 48) for x in range(16, 64)]
    outside = [alpha[i] for i in range(w * h) if not (8 <= ry + i // w < 48 and 16 <= rx + i % w < 64)]
    check(
        len(set(inside)) > 2, "the layer carries the decoder's alpha inside the selection: %r" % sorted(set(inside))[:8]
    )
    check(not any(outside), "and nothing outside it")
    check(composite(img) != before, "the layer shows")
    check(read(layer, 0, 0, 96, 64) == user_pixels, "the user's layer is untouched")

    # img2img of the new transparent layer itself (Source: active layer): its alpha goes in and comes back redrawn
    Gimp.Selection.none(img)
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-img2img",
        img,
        [res],
        prompt="a glass bottle",
        transparent=True,
        source="layer",
        strength=0.5,
        seed=4,
        steps=2,
        server=P["url"],
    )
    (again,) = new_layers(img, old)
    ok, ax, ay = again.get_offsets()
    alpha2 = read(again, ax, ay, again.get_width(), again.get_height())[3::4]
    check(len(set(alpha2)) > 2, "img2img with a transparent layer gives real alpha back: %r" % sorted(set(alpha2))[:8])
    img.delete()


def generate_into_a_soft_ellipse(P):
    """Generate into a feathered ellipse; the image, the selection and the result layer are written to ``P["dir"]``
    (the test compares them with the client core's own job)."""
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


def outpaint_sends_four_references_and_a_regions_opacity_masks_its_reference(P):
    W, H = P["size"]
    COLOURS = P["colours"]
    img, (layer,) = make_image(W, H)
    pictures = []
    for i, colour in enumerate(COLOURS):
        pic = Gimp.Layer.new(img, "picture %d" % i, W, H, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
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
    buf.set(
        Gegl.Rectangle.new(0, 0, W, H), RGBA, b"".join(bytes((250, 0, 0, alpha[x])) for y in range(H) for x in range(W))
    )
    buf.flush()
    sky = Gimp.Channel.new(img, "Sky", W, H, 100.0, Gegl.Color.new("white"))
    img.insert_channel(sky, None, 0)
    sbuf = sky.get_buffer()
    sbuf.set(
        Gegl.Rectangle.new(0, 0, W, H),
        GRAY,
        b"".join(b"\xff" if y < H // 2 else b"\x00" for y in range(H) for x in range(W)),
    )
    sbuf.flush()
    img.set_selected_layers([layer])
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-outpaint",
        img,
        [layer],
        prompt="a street",
        seed=3,
        steps=2,
        extend=16,
        extend_right=True,
        server=P["url"],
        region_layer=car,
        region_prompt="a red car",
        reference_layer=pictures[0],
        reference_type="content",
        reference_region=car,
        reference_2_layer=pictures[1],
        reference_2_type="style",
        reference_2_strength=1.5,
        reference_2_region=sky,
        reference_3_layer=pictures[2],
        reference_3_type="composition",
        reference_3_start=0.25,
        reference_3_end=0.75,
        reference_4_layer=pictures[3],
        reference_4_strength=0.5,
    )
    check(
        len(new_layers(img, old)) == 1 and img.get_width() == W + 16,
        "one result layer, canvas extended: %r" % layer_summary(img),
    )
    use_plugin(P)
    from gimp_plugin import host as gimp_host

    mask = car.create_mask(Gimp.AddMaskType.WHITE)
    car.add_mask(mask)
    for item in (car, sky, mask, pictures[2]):  # what a reference slot names survives as the item's tattoo
        check(gimp_host.item_by_stable_id(img, gimp_host.stable_id(item)) == item, "found by tattoo: %r" % item)
    check(gimp_host.layer_by_stable_id(img, gimp_host.stable_id(sky)) is None, "a channel is not a reference layer")
    img.delete()


def marker(P, name):
    """Tell the test (waiting outside GIMP) that ``name`` happened: an empty file in ``P["dir"]``."""
    open(P["dir"] + "/" + name, "w").close()


def wait_marker(P, name, timeout=120):
    """Wait until the test writes ``name`` in ``P["dir"]`` (it pressed a key, painted a stroke...)."""
    end = time.time() + timeout
    while not os.path.exists(P["dir"] + "/" + name):
        check(time.time() < end, "the test wrote %s in time" % name)
        time.sleep(0.2)


def run_history_dialog(img, drawables):
    proc = PDB.lookup_procedure("plug-in-paintbridge-history")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", drawables)
    result = proc.run(cfg)
    check(result.index(0) == Gimp.PDBStatusType.SUCCESS, "the History dialog closed normally: %r" % (result.index(0),))


def gui_inpaint_dialog(P):
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
    check(
        len(img.get_layers()) == 2 and img.get_layers()[0].get_name() == "a quiet lake (classical, patch)",
        "one new layer: %r" % layer_summary(img),
    )
    check(composite(img) != before, "the image shows the result")
    Gimp.displays_flush()
    marker(P, "inserted")
    wait_marker(P, "undo-pressed")
    end = time.time() + 30
    while layer_summary(img) != before_layers and time.time() < end:
        time.sleep(0.2)
    check(layer_summary(img) == before_layers, "one undo step removes the result: %r" % layer_summary(img))
    check(composite(img) == before, "and restores the original pixels")
    check(img.get_parasite("paintbridge-history") is not None, "the undone result stays in the image's history")
    marker(P, "verified")


def gui_live_inpaint_on_a_changing_selection(P):
    use_plugin(P)
    from protocol.geometry import Box, context_box

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
    check(
        len(layers) == 2 and layers[0].get_name() == "live lake (classical, patch)",
        "one kept layer, no preview left: %r" % layer_summary(img),
    )
    check(
        tuple(layers[0].get_offsets()[1:]) == (box.x, box.y) and layers[0].get_width() == box.width,
        "the kept result is the one for the changed selection: %r vs %r" % (layer_summary(img), box),
    )
    marker(P, "kept")
    wait_marker(P, "undo-pressed")
    end = time.time() + 30
    while layer_summary(img) != before_layers and time.time() < end:
        time.sleep(0.2)
    check(layer_summary(img) == before_layers, "one undo step removes the kept result (previews left no undo steps)")
    check(composite(img) == before, "and restores the original pixels")
    check(img.get_parasite("paintbridge-history") is not None, "the live result stays in the image's history")
    marker(P, "verified")


def gui_history_dialog_applies_again(P):
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
    check(
        all(l.get_name().startswith(name) for l in added),
        "named as it was (GIMP numbers the twin): %r" % layer_summary(img),
    )
    marker(P, "verified")


def gui_history_dialog_searches(P):
    img, (layer,) = make_image(320, 240)
    Gimp.Display.new(img)
    kept = {}
    for prompt, fill in (("a first try", "telea"), ("a second try", "ns")):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, 100, 60, 80, 70)
        old = img.get_layers()
        expect_ok(
            "plug-in-paintbridge-inpaint", img, [layer], prompt=prompt, model="classical", fill=fill, server=P["url"]
        )
        (made,) = new_layers(img, old)
        ok, x, y = made.get_offsets()
        kept[prompt] = (
            x,
            y,
            made.get_width(),
            made.get_height(),
            read(made, x, y, made.get_width(), made.get_height()),
        )
        img.remove_layer(made)
    Gimp.displays_flush()
    old = img.get_layers()
    run_history_dialog(img, [layer])
    (added,) = new_layers(img, old)
    x, y, w, h, pixels = kept["a first try"]
    check(
        read(added, x, y, w, h) == pixels and pixels != kept["a second try"][4],
        "Apply again took the entry the search found (the older one), pixel for pixel",
    )
    marker(P, "verified-search")


def gui_history_dialog_on_zlib_bombs(P):
    from array import array

    img, (layer,) = make_image(320, 240)
    blob = open(P["bomb"], "rb").read()
    img.attach_parasite(Gimp.Parasite.new("paintbridge-history", Gimp.PARASITE_PERSISTENT, array("b", blob).tolist()))
    Gimp.Display.new(img)
    Gimp.displays_flush()
    run_history_dialog(img, [layer])
    open(P["dir"] + "/verified", "w").close()


def gui_live_inpaint_with_a_reference(P):
    use_plugin(P)

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
    check(
        [l.get_name() for l in img.get_layers()] == ["Reference", "user layer 1"],
        "no preview left: %r" % layer_summary(img),
    )
    marker(P, "verified")


def gui_live_inpaint_under_a_brush(P):
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
    status, _message, _result = run_proc(
        "plug-in-paintbridge-live-inpaint",
        img,
        [layer],
        Gimp.RunMode.INTERACTIVE,
        prompt="live brush",
        model="classical",
        server=P["url"],
    )
    check(status == "cancel", "the dialog was cancelled: %r" % status)
    check([l.get_name() for l in img.get_layers()] == ["painted"], "no preview left: %r" % layer_summary(img))
    marker(P, "verified")


def generate_into_the_shared_ellipse_and_upscale_its_box(P):
    """The cross-host case (tests/crosshost.py): generate into the shared soft ellipse, upscale a box of a fresh copy;
    both results are written to ``P["dir"]``."""
    w, h = P["width"], P["height"]
    image_px, mask = open(P["image"], "rb").read(), open(P["selection"], "rb").read()

    def shared_document():
        img = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
        layer = Gimp.Layer.new(img, "Paint", w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, None, 0)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, w, h), RGBA, image_px)
        buf.flush()
        layer.update(0, 0, w, h)
        img.set_selected_layers([layer])
        check(read(layer, 0, 0, w, h) == image_px, "the layer holds the shared pattern")
        return img, layer

    # Generate into the soft elliptical selection, written into the selection channel as it is.
    img, layer = shared_document()
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, w, h)
    channel = img.get_selection()
    buf = channel.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), GRAY, mask)
    buf.flush()
    channel.update(0, 0, w, h)
    check(selection_mask(img) == mask, "GIMP keeps the soft selection byte for byte")
    ok, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(img)
    check(
        non_empty and [x1, y1, x2, y2] == P["mask_bounds"],
        "selection bounds %r, expected %r" % ([x1, y1, x2, y2], P["mask_bounds"]),
    )
    old = img.get_layers()
    expect_ok(
        "plug-in-paintbridge-generate",
        img,
        [layer],
        model=P["model"],
        prompt=P["prompt"],
        seed=P["seed"],
        steps=P["steps"],
        server=P["url"],
    )
    added = new_layers(img, old)
    check(len(added) == 1, "one generated layer: %r" % layer_summary(img))
    check(added[0].get_name().startswith(P["prompt"]), "named after the prompt: %r" % added[0].get_name())
    open(P["dir"] + "/generate.rgba", "wb").write(read(added[0], 0, 0, w, h))
    img.delete()

    # Upscale of a rectangular selection on a fresh copy of the document: a new image.
    img, layer = shared_document()
    bx, by, bw, bh = P["upscale_box"]
    img.select_rectangle(Gimp.ChannelOps.REPLACE, bx, by, bw, bh)
    result = expect_ok("plug-in-paintbridge-upscale", img, [layer], scale=P["upscale_scale"], server=P["url"])
    new = result.index(1)
    check(new is not None and len(new.get_layers()) == 1, "a new image with one layer")
    nw, nh = new.get_width(), new.get_height()
    open(P["dir"] + "/upscale.size", "w").write("%d %d" % (nw, nh))
    open(P["dir"] + "/upscale.rgba", "wb").write(read(new.get_layers()[0], 0, 0, nw, nh))
    new.delete()
    img.delete()


def live_watch_cost(P):
    """benchmarks/gimp_live_watch.py: one idle tick of the live loop beside full pixel reads of the same parts, best of
    15 each; prints ``RESULT {json}``."""
    use_plugin(P)
    from gimp_plugin import argspec, arguments, capture, host

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
    spec = arguments.BY_NAME[argspec.PREFIX + "live-inpaint"]
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
        buf.set(
            Gegl.Rectangle.new(sx + 300, sy + 200 + 10 * size, size, size), RGBA, bytes((0, 0, 0, 255)) * size * size
        )
        buf.flush()
        layers[1].update(sx + 300, sy + 200 + 10 * size, size, size)
        seen[size] = tokens() != before
    token_bytes = sum(len(p) for t in tokens() for p in t if isinstance(p, bytes))
    full_bytes = sum(len(p) for p in full_reads())
    print(
        "RESULT "
        + json.dumps(
            {
                "box": [box.width, box.height],
                "tokens_s": min(t_tokens),
                "full_s": min(t_full),
                "changed_s": min(t_changed),
                "seen": seen,
                "side": host.THUMB_SIDE,
                "token_bytes": token_bytes,
                "full_bytes": full_bytes,
            }
        )
    )
    img.delete()


def gui_every_dialog_on_default_settings(P):
    """Open each dialog of ``P['names']`` on default settings, one after another; the test measures each window and closes it with Escape (markers ``open-i``/``closed-i``)."""
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
        marker(P, "open-%d" % i)
        result = proc.run(cfg)
        closed = Gimp.PDBStatusType.SUCCESS if name == "styles" else Gimp.PDBStatusType.CANCEL
        check(result.index(0) == closed, "%s: Escape closes its dialog: %r" % (name, result.index(0)))
        marker(P, "closed-%d" % i)
    marker(P, "verified")


def a_style_saved_from_krita_is_listed_and_used(P):
    """The style ``krita-look`` (saved on the server as Krita saves one) is in GIMP's Style choice and changes the result at the same seed; the history names it."""
    proc = PDB.lookup_procedure("plug-in-paintbridge-generate")
    nicks = Gimp.param_spec_choice_get_choice(proc.find_argument("style")).list_nicks()
    name = P.get("style", "krita-look")
    check(name in nicks, "the style saved from Krita is listed in GIMP's Style choice: %r" % (nicks,))
    img, (layer,) = make_image(64, 64)
    results = {}
    for style in ("none", name):
        old = img.get_layers()
        expect_ok("plug-in-paintbridge-generate", img, [layer], prompt="a cat", seed=7, style=style, server=P["url"])
        added = new_layers(img, old)
        check(len(added) == 1, "one layer with style %s: %r" % (style, layer_summary(img)))
        results[style] = read(added[0], 0, 0, 64, 64)
    check(results["none"] != results[name], "the style changes the result at the same seed")
    entries = json.loads(run_proc("plug-in-paintbridge-history", img, [], action="list")[2].index(1))
    check(entries and entries[0]["settings"]["style"] == name, "the run named the style: %r" % (entries[:1],))
    img.delete()


def styles_procedure_makes_duplicates_renames_and_deletes_styles(P):
    """Filters > Paintbridge > Styles from a script: new, duplicate, rename, delete; refusals named."""
    img, (layer,) = make_image(16, 16)

    def styles(**props):
        result = expect_ok("plug-in-paintbridge-styles", img, [], server=P["url"], **props)
        return {s["name"]: s for s in json.loads(result.index(1))}

    shipped = styles(action="list")
    check(shipped["sd15-photo"]["builtin"], "the shipped styles are listed: %r" % sorted(shipped))
    check(styles(action="new", style="gimp look", family="sd15")["gimp look"]["family"] == "sd15", "new")
    check("photo copy" in styles(action="duplicate", style="sd15-photo", **{"new-name": "photo copy"}), "duplicate")
    after = styles(action="rename", style="photo copy", **{"new-name": "photo 2"})
    check("photo 2" in after and "photo copy" not in after and not after["photo 2"]["builtin"], "rename")
    check("gimp look" not in styles(action="delete", style="gimp look"), "delete")
    status, message, _r = run_proc(
        "plug-in-paintbridge-styles", img, [], action="rename", style="sd15-photo", server=P["url"], **{"new-name": "x"}
    )
    check(
        status == "calling-error" and "duplicate it instead" in message, "a shipped style is not renamed: %s" % message
    )
    status, message, _r = run_proc(
        "plug-in-paintbridge-styles", img, [], action="delete", style="nope", server=P["url"]
    )
    check(status == "calling-error" and "no style named 'nope'" in message, "an unknown name is named: %s" % message)
    img.delete()


def inpaint_on_default_settings_keeps_the_servers_info(P):
    """Inpaint Selection given only a prompt, a seed and a selection (every other argument on its default): the
    result layer's pixels (``good-inpaint.raw``, RGBA over its box) and, as the image's history keeps it, the server's
    ``info`` for it with the box (``good-inpaint.json``) are written to ``P["dir"]`` for the test."""
    use_plugin(P)
    from gimp_plugin import history

    img, (layer,) = make_image(96, 64)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 24, 16, 40, 32)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-inpaint", img, [layer], prompt="a bird", seed=7, server=P["url"])
    added = new_layers(img, old)
    check(len(added) == 1, "one new layer: %r" % layer_summary(img))
    res = added[0]
    ok, x, y = res.get_offsets()
    w, h = res.get_width(), res.get_height()
    entries = history.newest_first(history.of(img))
    check(len(entries) == 1 and len(entries[0].layers) == 1, "the run is in the image's history")
    with open(P["dir"] + "/good-inpaint.raw", "wb") as f:
        f.write(read(res, x, y, w, h))
    with open(P["dir"] + "/good-inpaint.json", "w") as f:
        json.dump({"box": [x, y, w, h], "info": entries[0].layers[0].info, "name": res.get_name()}, f)
    img.delete()


def gui_live_inpaint_on_default_settings(P):
    """Live Inpaint given only a prompt and a selection (every other argument on its default); the test reads the
    frames the server receives and closes the dialog with Escape."""
    img, (layer,) = make_image(96, 64)
    Gimp.Display.new(img)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 24, 16, 40, 32)
    Gimp.displays_flush()
    status, _message, _result = run_proc(
        "plug-in-paintbridge-live-inpaint",
        img,
        [layer],
        Gimp.RunMode.INTERACTIVE,
        prompt="a bird",
        server=P["url"],
        style=None,  # its default: the style the server suggests for the model
    )
    check(status == "cancel", "the dialog was cancelled: %r" % status)
    marker(P, "verified")


def a_decomposition_in_the_history_applies_again_as_its_layer_group(P):
    """A decomposition's entry in the image's history (kept as the plug-in keeps a result: ``gimp_plugin.history``),
    applied again through the History procedure, picking its middle layer: one new layer group of the same name above
    the active layer, holding every layer of the result named as it arrived, the bottom one last in GIMP's list, each
    with its own alpha; the painter's layer is untouched."""
    use_plugin(P)
    from types import SimpleNamespace

    from client.settings import Settings
    from gimp_plugin import history

    img, (layer,) = make_image(96, 64)
    user = read(layer, 0, 0, 96, 64)
    names = ["Layer 1 (bottom)", "Layer 2", "Layer 3 (top)"]
    layers = []
    for i in range(len(names)):  # each layer its own colours and alpha (never 0: no colour is lost under it)
        rgba = bytes(
            v
            for n in range(48 * 40)
            for v in ((n * 5 + i * 40) % 256, (n * 3) % 256, n % 256, (n * 11 + i * 60) % 255 + 1)
        )
        layers.append(
            SimpleNamespace(x=16, y=8, width=48, height=40, seed=9, format="rgba8", data=rgba, info={}, group="a house")
        )
    note = history.record(img, Settings(mode="decompose", prompt="a house"), layers, names, {})
    check(note == "", "the decomposition is kept in the image's history: %r" % note)
    old = img.get_layers()
    expect_ok("plug-in-paintbridge-history", img, [layer], action="apply", index=0, layer=1)
    children = the_new_group(img, old, layer, "a house", names)
    for child, original in zip(children, layers[::-1]):
        check(tuple(child.get_offsets()[1:]) == (16, 8) and child.has_alpha(), "placed as made, with alpha")
        check(read(child, 16, 8, 48, 40) == original.data, "%s has the kept pixels and alpha" % child.get_name())
    check(read(layer, 0, 0, 96, 64) == user, "the user's layer is untouched")
    img.delete()
