# Helpers of the GIMP host checks (``gimp_checks.py`` imports them); runs inside GIMP 3's python-fu-eval.
# A failed check raises (``hosts.gimp.run_checks`` reports it by the check's name); each passed one is counted.
import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

PDB = Gimp.get_pdb()
RGBA = "R'G'B'A u8"
GRAY = "Y u8"
CHECKS = [0]


def check(condition, what):
    """Fail the running check with ``what`` unless ``condition`` holds."""
    if not condition:
        raise AssertionError("CHECK FAILED: " + what)
    CHECKS[0] += 1


def pattern_pixel(x, y):
    return ((x * 5 + y) % 256, (y * 7) % 256, (x * 3 + y * 2 + 40) % 256)


def make_image(width, height, gray=False, layers=1):
    """An image with ``layers`` opaque pattern layers (bottom first) and the bottom one active."""
    base = Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB
    kind = Gimp.ImageType.GRAY_IMAGE if gray else Gimp.ImageType.RGB_IMAGE
    img = Gimp.Image.new(width, height, base)
    made = []
    for i in range(layers):
        layer = Gimp.Layer.new(img, "user layer %d" % (i + 1), width, height, kind, 100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, None, 0)
        data = bytearray()
        for y in range(height):
            for x in range(width):
                r, g, b = pattern_pixel(x + 13 * i, y)
                data += bytes((r, g, b, 255))
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, width, height), RGBA, bytes(data))
        buf.flush()
        made.append(layer)
    if layers > 1:
        # the upper layers cover only the right half, so the composite mixes them
        for layer in made[1:]:
            layer.resize(width // 2, height, -(width // 2), 0)
    img.set_selected_layers([made[0]])
    return img, made


def add_layer(img, name, width, height, visible=True):
    """A new transparent RGBA layer on top of ``img``."""
    made = Gimp.Layer.new(img, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(made, None, 0)
    made.set_visible(visible)
    return made


def read(drawable, x, y, w, h, fmt=RGBA):
    ok, ox, oy = drawable.get_offsets()
    return bytes(drawable.get_buffer().get(Gegl.Rectangle.new(x - ox, y - oy, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def composite(img):
    """The visible image, as R'G'B'A u8 over the whole canvas."""
    copy = img.duplicate()
    merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    data = read(merged, 0, 0, img.get_width(), img.get_height())
    copy.delete()
    return data


def selection_mask(img):
    return read(img.get_selection(), 0, 0, img.get_width(), img.get_height(), GRAY)


def layer_summary(img):
    return [(l.get_name(), tuple(l.get_offsets()[1:]), l.get_width(), l.get_height()) for l in img.get_layers()]


def run_proc(name, img, drawables, run_mode=Gimp.RunMode.NONINTERACTIVE, **props):
    """Run a procedure (NONINTERACTIVE unless ``run_mode`` says otherwise); returns (status nick, error message or '',
    the result ValueArray)."""
    proc = PDB.lookup_procedure(name)
    check(proc is not None, "procedure %s is registered" % name)
    cfg = proc.create_config()
    cfg.set_property("run-mode", run_mode)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", drawables)
    if proc.find_argument("style") is not None and "style" not in props:
        props["style"] = "none"  # checks compare pixels with plain jobs: a style only where a check names one
    if props.get("style", "") is None:
        del props["style"]  # style=None: the procedure's own default (the style suggested for the model)
    for key, value in props.items():
        cfg.set_property(key.replace("_", "-"), value)
    result = proc.run(cfg)
    status = result.index(0)
    message = ""
    if status != Gimp.PDBStatusType.SUCCESS and result.length() > 1:
        message = str(result.index(1) or "")
    return status.value_nick, message, result


def expect_ok(name, img, drawables, **props):
    status, message, result = run_proc(name, img, drawables, **props)
    check(status == "success", "%s succeeds (got %s: %s)" % (name, status, message))
    return result


def expect_failure(name, img, drawables, status_nick, text, **props):
    """The procedure fails with ``status_nick`` and a message containing ``text``; the image is left as it was."""
    before_layers = layer_summary(img)
    before_size = (img.get_width(), img.get_height())
    before_pixels = composite(img)
    status, message, _result = run_proc(name, img, drawables, **props)
    check(status == status_nick, "%s ends with %s (got %s: %s)" % (name, status_nick, status, message))
    check(text.lower() in message.lower(), "%s's message mentions %r (got %r)" % (name, text, message))
    check(layer_summary(img) == before_layers, "%s left the layers alone after failing" % name)
    check((img.get_width(), img.get_height()) == before_size, "%s left the canvas size alone" % name)
    check(composite(img) == before_pixels, "%s left the pixels alone" % name)
    return message


def new_layers(img, before):
    ids = [l.get_id() for l in before]
    return [l for l in img.get_layers() if l.get_id() not in ids]
