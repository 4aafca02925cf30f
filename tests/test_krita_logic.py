"""The Krita plugin's Qt-free logic: job building, pixel conversions, result placement, live-mode scheduling, the
installer and the server launcher. Fast; no Krita needed."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from krita_plugin import installer  # noqa: E402
from krita_plugin.paintbridge import jobs, live, pixels, placement, progress_preview, server_process  # noqa: E402
from protocol import Box, Extend, Limits, parse_client_message, parse_server_message  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402


def bgra(w: int, h: int, value: int = 0) -> bytes:
    return bytes((x * 7 + y * 3 + c * 50 + value) % 256 for y in range(h) for x in range(w) for c in range(4))


# --- jobs ------------------------------------------------------------------------------------------------------------

def test_inpaint_job_is_valid_protocol_and_carries_box_mask_and_controls():
    box = Box(16, 8, 32, 24)
    settings = jobs.Settings(mode="inpaint", prompt="a fox", strength=0.8, steps=12, cfg=6.5, sampler="Euler a",
                             batch=3)
    inputs = jobs.JobInputs(box, bgra(32, 24), bytes([0, 255] * (32 * 12)),
                            [jobs.ControlInput("canny", bgra(32, 24, 9), 0.7, 0.1, 0.9)])
    job = jobs.build_job(settings, inputs, seed=1234)
    msg = parse_client_message(dict(job, type="job", id="j1"), Limits())
    assert (msg.x, msg.y) == (16, 8)
    assert msg.image.format == "bgra8" and (msg.image.width, msg.image.height) == (32, 24)
    assert msg.mask.format == "gray8" and msg.mask.data == inputs.mask
    assert msg.result_format == "bgra8"
    p = msg.params
    assert (p.steps, p.seed, p.batch, p.strength, p.cfg, p.sampler) == (12, 1234, 3, 0.8, 6.5,
                                                                                           "Euler a")
    ctl = msg.controls[0]
    assert (ctl.type, ctl.strength, ctl.start, ctl.end) == ("canny", 0.7, 0.1, 0.9)
    assert ctl.image.data == inputs.controls[0].image


def test_inpaint_without_selection_is_refused_with_a_clear_message():
    inputs = jobs.JobInputs(Box(0, 0, 8, 8), bgra(8, 8), None)
    with pytest.raises(jobs.JobError, match="selection"):
        jobs.build_job(jobs.Settings(mode="inpaint"), inputs, seed=1)
    with pytest.raises(jobs.JobError, match="selection"):
        jobs.build_job(jobs.Settings(mode="inpaint"), jobs.JobInputs(Box(0, 0, 8, 8), bgra(8, 8), bytes(64)), 1)


def test_img2img_without_selection_sends_no_mask_and_generate_sends_only_a_size():
    job = jobs.build_job(jobs.Settings(mode="img2img", strength=0.4), jobs.JobInputs(Box(0, 0, 8, 4), bgra(8, 4),
                                                                                     None), seed=5)
    msg = parse_client_message(dict(job, type="job", id="a"))
    assert msg.mask is None and msg.params.strength == 0.4
    gen = jobs.build_job(jobs.Settings(mode="generate"), jobs.JobInputs(Box(8, 8, 64, 48), None, None), seed=5)
    msg = parse_client_message(dict(gen, type="job", id="b"))
    assert msg.image is None and (msg.params.width, msg.params.height) == (64, 48)


def test_outpaint_needs_a_side_and_sends_extend():
    inputs = jobs.JobInputs(Box(0, 0, 8, 8), bgra(8, 8), None)
    with pytest.raises(jobs.JobError, match="side"):
        jobs.build_job(jobs.Settings(mode="outpaint"), inputs, seed=1)
    job = jobs.build_job(jobs.Settings(mode="outpaint", extend_left=16, extend_bottom=8), inputs, seed=1)
    msg = parse_client_message(dict(job, type="job", id="o"))
    assert msg.params.extend == Extend(left=16, bottom=8)


def test_upscale_and_preprocess_jobs():
    job = jobs.build_job(jobs.Settings(mode="upscale", scale=4.0, refine=0.3, batch=4),
                         jobs.JobInputs(Box(0, 0, 8, 8), bgra(8, 8), None), seed=1)
    msg = parse_client_message(dict(job, type="job", id="u"))
    assert (msg.params.scale, msg.params.refine, msg.params.batch) == (4.0, 0.3, 1)
    pre = jobs.build_preprocess_job("lineart", Box(0, 0, 8, 8), bgra(8, 8))
    assert parse_client_message(dict(pre, type="job", id="p")).params.preprocessor == "lineart"
    with pytest.raises(jobs.JobError, match="unknown control type"):
        jobs.build_preprocess_job("sketchy", Box(0, 0, 8, 8), bgra(8, 8))


def test_wrong_pixel_count_is_caught_before_sending():
    with pytest.raises(jobs.JobError, match="expected 256"):
        jobs.build_job(jobs.Settings(mode="img2img"), jobs.JobInputs(Box(0, 0, 8, 8), b"\0" * 100, None), 1)


def test_input_box_is_the_context_box_or_the_canvas():
    sel = Box(40, 40, 20, 10)
    box = jobs.input_box("inpaint", sel, 200, 100)
    assert box.x <= 40 and box.y <= 40 and box.right >= 60 and box.bottom >= 50
    assert box.x % 8 == 0 and box.y % 8 == 0 and box.width >= 64
    assert jobs.input_box("inpaint", None, 200, 100) == Box(0, 0, 200, 100)
    assert jobs.input_box("outpaint", sel, 200, 100) == Box(0, 0, 200, 100)


def test_family_defaults_and_settings_round_trip():
    assert jobs.defaults_for({"name": "x", "arch": "sdxl"}).resolution == 1024
    assert jobs.defaults_for({"name": "dreamshaper_lcm", "arch": "sd15"}).sampler == "LCM"
    assert jobs.defaults_for(None) == jobs.FAMILY_DEFAULTS["classical"]
    s = jobs.Settings(mode="outpaint", prompt="p", steps=9, strength=0.25, extend_top=32)
    assert jobs.Settings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    broken = jobs.Settings.from_dict({"mode": "dance", "steps": "many", "strength": 1, "random_seed": 1})
    assert (broken.mode, broken.steps, broken.strength, broken.random_seed) == ("inpaint", 25, 1.0, True)


# --- pixels ----------------------------------------------------------------------------------------------------------

def test_u16_round_trip_and_byte_order():
    data = bgra(5, 3)
    u16 = pixels.from_bgra8(data, "U16")
    values = array("H")
    values.frombytes(u16)
    assert list(values) == [v * 257 for v in data]
    assert pixels.to_bgra8(u16, "U16") == data


@pytest.mark.parametrize("depth", ["F16", "F32"])
@pytest.mark.parametrize("linear", [False, True])
def test_float_round_trip_and_rgba_order(depth, linear):
    data = bytes(range(256)) * 4  # every value in every channel
    native = pixels.from_bgra8(data, depth, linear)
    assert pixels.to_bgra8(native, depth, linear) == data
    fmt = "<4e" if depth == "F16" else "<4f"
    r, g, b, a = struct.unpack(fmt, native[: struct.calcsize(fmt)])  # first pixel: B=0, G=1, R=2, A=3
    if not linear:
        assert (round(r * 255), round(g * 255), round(b * 255), round(a * 255)) == (2, 1, 0, 3)


def test_linear_profiles_are_recognised_and_other_models_refused():
    assert pixels.is_linear_profile("sRGB-elle-V2-g10.icc")
    assert not pixels.is_linear_profile("sRGB-elle-V2-srgbtrc.icc")
    pixels.check_color_space("RGBA", "F32")
    with pytest.raises(pixels.UnsupportedColorSpace, match="Convert Image Color Space"):
        pixels.check_color_space("CMYKA", "U8")
    with pytest.raises(pixels.UnsupportedColorSpace):
        pixels.check_color_space("RGBA", "U32")
    assert pixels.alpha_of_bgra8(bytes([1, 2, 3, 4, 5, 6, 7, 8])) == bytes([4, 8])


def test_linear_conversion_uses_the_srgb_curve():
    mid = pixels.from_bgra8(bytes([128, 128, 128, 255]), "F32", linear=True)
    r = struct.unpack("<4f", mid)[0]
    assert 0.21 < r < 0.22  # sRGB 128 is about 21.6 % linear light


# --- placement -------------------------------------------------------------------------------------------------------

def test_outpaint_growth_and_shift():
    layer = Box(-16, -8, 96, 72)
    g = placement.growth_for(layer, 64, 48)
    assert g == placement.Growth(16, 8, 16, 16)
    assert g.resize_args(64, 48) == (-16, -8, 96, 72)
    assert placement.shifted(layer, g) == Box(0, 0, 96, 72)
    assert not placement.growth_for(Box(8, 8, 16, 16), 64, 48).any


def test_layer_names_and_crops():
    assert placement.layer_name("a  red\nfox", 42, "inpaint") == "a red fox (seed 42)"
    long = placement.layer_name("x" * 100, 1, "inpaint")
    assert len(long) < 60 and long.endswith("… (seed 1)")
    assert placement.layer_name("", 7, "outpaint") == "Outpaint (seed 7)"
    data = bytes(range(16))  # 4x4 gray
    assert placement.crop_rows(data, 4, 4, 1, Box(11, 21, 2, 2), Box(10, 20, 4, 4)) == bytes([5, 6, 9, 10])
    assert placement.on_canvas(Box(-4, -4, 8, 8), 10, 10) == Box(0, 0, 4, 4)
    assert placement.on_canvas(Box(20, 0, 8, 8), 10, 10) is None
    shaped = placement.masked(bytes([1, 2, 3, 255, 4, 5, 6, 128]), bytes([128, 255]))
    assert shaped == bytes([1, 2, 3, 128, 4, 5, 6, 128])
    with pytest.raises(ValueError, match="mask has 1 pixels"):
        placement.masked(bytes(8), bytes(1))


# --- live mode -------------------------------------------------------------------------------------------------------

def test_live_scheduler_debounces_and_keeps_one_job_in_flight():
    s = live.LiveScheduler(debounce=0.5)
    assert not s.observe("a", 0.0)
    assert not s.observe("a", 0.3)
    assert s.observe("a", 0.6)
    s.started("a")
    assert not s.observe("b", 0.7) and not s.observe("b", 2.0)  # in flight
    s.finished()
    assert s.observe("b", 2.1)  # settled since 0.7
    s.started("b")
    s.finished()
    assert not s.observe("b", 5.0)  # nothing changed since the last job
    assert not s.observe("c", 5.1) and not s.observe("d", 5.5)  # still changing
    assert s.observe("d", 6.1)


def test_signature_is_sensitive_to_every_byte_and_the_order():
    big = bytes(1024 * 1024 * 4)
    a = live.signature([1, 2, big])
    assert a == live.signature([1, 2, big])
    assert a != live.signature([1, 2, big[:-1] + b"\x01"])
    assert a != live.signature([2, 1, big])


# --- in-progress previews --------------------------------------------------------------------------------------------

def test_jobs_ask_for_previews_and_the_server_accepts_the_flag():
    inputs = jobs.JobInputs(Box(0, 0, 8, 8), bgra(8, 8), bytes([255]) * 64)
    job = jobs.build_job(jobs.Settings(mode="inpaint"), inputs, seed=3, previews=True)
    assert parse_client_message(dict(job, type="job", id="p")).previews is True


def test_a_progress_preview_is_read_from_the_wire_message():
    rgba = bytes((i * 5) % 256 for i in range(12 * 8 * 4))
    wire = {"type": "progress", "id": "j", "step": 3, "total": 8,
            "preview": {"width": 12, "height": 8, "format": "rgba8", "data": rgba}}
    msg = parse_server_message(decode(encode(wire))).to_wire()  # as the connection's worker thread hands it on
    p = progress_preview.preview_of(msg)
    assert (p.width, p.height, p.step, p.total) == (12, 8, 3, 8) and p.data == rgba
    assert progress_preview.preview_of(dict(msg, preview=None)) is None
    assert progress_preview.preview_of(dict(msg, type="started")) is None
    bad = [dict(wire["preview"], format="bgra8"), dict(wire["preview"], data=rgba[:-1]),
           dict(wire["preview"], width=0), dict(wire["preview"], width=True),
           dict(wire["preview"], width=1024, height=1, data=bytes(4096)), dict(wire["preview"], data="x")]
    for payload in bad:
        assert progress_preview.preview_of(dict(msg, preview=payload)) is None, payload


def test_previews_are_fitted_to_the_panel_keeping_their_shape():
    fit = progress_preview.fit_size
    assert fit(12, 8, 300, 114) == (171, 114)  # wide area: the height limits, small previews grow
    assert fit(128, 64, 100, 114) == (100, 50)  # narrow area: the width limits
    assert fit(64, 64, 114, 114) == (114, 114)
    assert fit(1, 128, 300, 114) == (1, 114)  # never below one pixel
    assert fit(0, 5, 40, 30) == (40, 30)
    for w, h in [(12, 8), (128, 96), (7, 129), (256, 3)]:
        fw, fh = fit(w, h, 230, 114)
        assert fw <= 230 and fh <= 114 and (fw == 230 or fh == 114)
        assert abs(fh - h * fw / w) <= 0.5 or abs(fw - w * fh / h) <= 0.5  # the other side rounded


# --- installer and server launcher -----------------------------------------------------------------------------------

def test_enable_in_kritarc_keeps_other_lines(tmp_path):
    rc = tmp_path / "kritarc"
    rc.write_text("[General]\nfoo=1\n\n[python]\nenable_other=true\nenable_paintbridge=false\n\n[Window]\nx=2\n")
    installer.enable_in_kritarc(rc)
    text = rc.read_text()
    assert "enable_paintbridge=true" in text and "enable_paintbridge=false" not in text
    assert "enable_other=true" in text and "[Window]\nx=2" in text and "[General]\nfoo=1" in text
    installer.enable_in_kritarc(rc)
    assert rc.read_text() == text
    fresh = tmp_path / "new" / "kritarc"
    installer.enable_in_kritarc(fresh)
    assert fresh.read_text() == "[python]\nenable_paintbridge=true\n"
    rc2 = tmp_path / "kritarc2"
    rc2.write_text("[python]\nenable_a=true\n[Other]\nk=v\n")
    installer.enable_in_kritarc(rc2)
    assert rc2.read_text() == "[python]\nenable_a=true\nenable_paintbridge=true\n[Other]\nk=v\n"


def test_install_makes_a_self_contained_plugin(tmp_path):
    pykrita, rc = tmp_path / "pykrita", tmp_path / "kritarc"
    dest = installer.install(pykrita, rc, ["/opt/pb/python", "-m", "server", "serve"])
    assert dest == pykrita / "paintbridge"
    assert (pykrita / "paintbridge.desktop").read_text().count("X-KDE-Library=paintbridge") == 1
    assert (dest / "docker.py").exists() and (dest / "protocol" / "client.py").exists()
    assert (dest / "vendor" / "msgpack").is_dir() and (dest / "vendor" / "websockets").is_dir()
    assert not list(dest.rglob("*.so"))
    assert json.loads((dest / "server.json").read_text()) == {"command": ["/opt/pb/python", "-m", "server", "serve"]}
    assert "enable_paintbridge=true" in rc.read_text()
    # The installed copy works on its own: its protocol copy and vendored packages import in a bare Python.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import paintbridge.wire as w; "
             "c = w.client_module(); import msgpack, websockets; "
             "print(w.protocol.__name__, c.__name__, msgpack.__file__, websockets.__file__)")
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(pykrita)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["paintbridge.protocol", "paintbridge.protocol.client"]
    assert all(str(dest) in path for path in out.stdout.split()[2:])
    # Installing again replaces the old copy.
    (dest / "stale.py").write_text("")
    installer.install(pykrita, rc, ["x"])
    assert not (dest / "stale.py").exists()
    with pytest.raises(ValueError, match="server_command"):
        installer.install(pykrita, rc, [])
    installer.write_server_config(dest, ["venv/bin/python", "-m", "server", "serve"])
    recorded = json.loads((dest / "server.json").read_text())["command"]
    assert Path(recorded[0]).is_absolute() and recorded[1:] == ["-m", "server", "serve"]


def test_local_server_launcher_starts_the_recorded_command(tmp_path):
    (tmp_path / "server.json").write_text(json.dumps({"command": [sys.executable, "-m", "server", "serve"]}))
    command = server_process.recorded_command(tmp_path / "server.json")
    assert command == [sys.executable, "-m", "server", "serve"]
    assert server_process.recorded_command(tmp_path / "missing.json") is None
    assert server_process.local_address("ws://127.0.0.1:7860") == ("127.0.0.1", 7860)
    assert server_process.local_address("ws://example.org:7860") is None
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = server_process.LocalServer(command + ["--models", str(tmp_path)])
    with pytest.raises(server_process.ServerStartError, match="not a local address"):
        launcher.start("ws://example.org:1")
    launcher.start(f"ws://127.0.0.1:{port}")
    try:
        assert launcher.wait_ready(90), launcher.last_output(20)
        from protocol.client import Client

        with Client(f"ws://127.0.0.1:{port}") as client:
            assert client.welcome.protocol
    finally:
        launcher.stop()
    assert not launcher.running
