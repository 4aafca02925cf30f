"""The Krita plugin without Krita: its session (the panel's state and behaviour) against a real server on an
in-memory document, live mode's change-driven reads, pixel conversions, progress previews, the installer. The rules
the session asks ``client/`` for (job building, modes, names, placement, launcher) are tested in tests/test_client_*."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pbsetup import plugins  # noqa: E402
from krita_plugin.paintbridge import pixels, progress_preview, settings_store  # noqa: E402
from protocol import Box, ImagePayload, Progress, ProtocolError, Started, parse_server_message  # noqa: E402
from protocol.codec import decode, encode  # noqa: E402


def bgra(w: int, h: int, value: int = 0) -> bytes:
    return bytes((x * 7 + y * 3 + c * 50 + value) % 256 for y in range(h) for x in range(w) for c in range(4))


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


# --- in-progress previews --------------------------------------------------------------------------------------------


def test_a_progress_preview_is_read_from_the_wire_message():
    rgba = bytes((i * 5) % 256 for i in range(12 * 8 * 4))
    wire = {
        "type": "progress",
        "id": "j",
        "step": 3,
        "total": 8,
        "preview": {"width": 12, "height": 8, "format": "rgba8", "data": rgba},
    }
    typed = parse_server_message(decode(encode(wire)))  # as the connection's worker thread hands it on
    p = progress_preview.preview_of(typed)
    assert (p.width, p.height, p.step, p.total) == (12, 8, 3, 8) and p.data == rgba
    assert progress_preview.preview_of(Progress("j", 3, 8)) is None
    assert progress_preview.preview_of(Started("j")) is None
    wide = ImagePayload(1024, 1, "rgba8", bytes(4096))
    assert progress_preview.preview_of(Progress("j", 3, 8, preview=wide)) is None  # larger than the panel shows
    for payload in (dict(wire["preview"], format="bgra8"), dict(wire["preview"], data=rgba[:-1])):
        with pytest.raises(ProtocolError):  # the protocol refuses what the panel could not show
            parse_server_message(dict(wire, preview=payload))


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
    plugins.enable_in_kritarc(rc)
    text = rc.read_text()
    assert "enable_paintbridge=true" in text and "enable_paintbridge=false" not in text
    assert "enable_other=true" in text and "[Window]\nx=2" in text and "[General]\nfoo=1" in text
    plugins.enable_in_kritarc(rc)
    assert rc.read_text() == text
    fresh = tmp_path / "new" / "kritarc"
    plugins.enable_in_kritarc(fresh)
    assert fresh.read_text() == "[python]\nenable_paintbridge=true\n"
    rc2 = tmp_path / "kritarc2"
    rc2.write_text("[python]\nenable_a=true\n[Other]\nk=v\n")
    plugins.enable_in_kritarc(rc2)
    assert rc2.read_text() == "[python]\nenable_a=true\nenable_paintbridge=true\n[Other]\nk=v\n"


def test_install_makes_a_self_contained_plugin(tmp_path):
    pykrita, rc = tmp_path / "pykrita", tmp_path / "kritarc"
    dest = plugins.install_krita(pykrita, rc, ["/opt/pb/python", "-m", "server", "serve"])
    assert dest == pykrita / "paintbridge"
    assert (pykrita / "paintbridge.desktop").read_text().count("X-KDE-Library=paintbridge") == 1
    assert (dest / "docker.py").exists() and (dest / "protocol" / "client.py").exists()
    assert (dest / "client" / "connect.py").exists()  # the client core travels next to protocol/
    assert (dest / "vendor" / "msgpack").is_dir() and (dest / "vendor" / "websockets").is_dir()
    assert not list(dest.rglob("*.so"))
    assert json.loads((dest / "server.json").read_text()) == {"command": ["/opt/pb/python", "-m", "server", "serve"]}
    assert "enable_paintbridge=true" in rc.read_text()
    # The installed copy works on its own: its protocol and client copies and vendored packages import in a bare
    # Python, and the session (everything but Qt and Krita) loads from them.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import paintbridge.wire as w; "
        "import paintbridge.session; c = w.client.wire.client_module(); import msgpack, websockets; "
        "print(w.protocol.__name__, c.__name__, w.client.__name__, msgpack.__file__, websockets.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(pykrita)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["paintbridge.protocol", "paintbridge.protocol.client", "paintbridge.client"]
    assert all(str(dest) in path for path in out.stdout.split()[3:])
    # Installing again replaces the old copy.
    (dest / "stale.py").write_text("")
    plugins.install_krita(pykrita, rc, ["x"])
    assert not (dest / "stale.py").exists()
    with pytest.raises(ValueError, match="server_command"):
        plugins.install_krita(pykrita, rc, [])
    plugins.record_server_command(dest, ["venv/bin/python", "-m", "server", "serve"])
    recorded = json.loads((dest / "server.json").read_text())["command"]
    assert Path(recorded[0]).is_absolute() and recorded[1:] == ["-m", "server", "serve"]


# --- the session (the panel's state and behaviour) against a real server, on an in-memory document -------------------

from krita_memory_host import MemoryDocument, MemoryHost, MemoryStore, UiLoop  # noqa: E402
from client.server import LocalServer as _LocalServer  # noqa: E402
from krita_plugin.paintbridge.session import Session  # noqa: E402
from krita_plugin.paintbridge.wire import client  # noqa: E402


def _selection(w: int, h: int, box: Box) -> bytes:
    return bytes(255 if box.x <= x < box.right and box.y <= y < box.bottom else 0 for y in range(h) for x in range(w))


@pytest.fixture
def session_setup(start_server):
    server = start_server()
    doc = MemoryDocument(64, 48, bgra(64, 48), _selection(64, 48, Box(20, 12, 16, 12)))
    host, ui = MemoryHost(doc), UiLoop()
    store = MemoryStore(
        {
            "server_url": server.url,
            "autostart": "false",
            "job_settings": json.dumps({"model": "classical", "prompt": "a fox", "mode": "inpaint"}),
        }
    )
    session = Session(host, store, ui.post, ui.schedule, server=_LocalServer(None, Path("unused.log")))
    session.start()
    assert ui.pump_until(lambda: session.connected, 30), session.connection.detail
    yield session, host, ui
    session.shutdown()


def test_session_runs_a_job_shows_the_preview_and_applies_it(session_setup):
    session, host, ui = session_setup
    seen = []
    session.results_changed.connect(lambda: seen.append(len(session.results)))
    job_id = session.run()
    assert job_id and session.busy
    assert ui.pump_until(lambda: not session.busy, 60), session.message
    assert session.message_is_error is False and seen == [1] and session.selected_result == 0
    result = session.results[0]
    assert host.doc.preview is result and host.preview_writes == 1
    assert session.apply() is True
    name, layer = host.doc.layers[0]
    assert name == result.name and name.startswith("a fox (classical")  # client.results names it, as in GIMP
    assert layer is result and host.doc.preview is None
    assert session.results == [] and session.result_job is None


def test_a_seamless_result_is_shown_in_krita_wrap_around_mode_when_asked(session_setup):
    session, host, ui = session_setup
    session.set_option("tileable", True)  # inpaint makes no whole picture: the option is not sent, nothing wraps
    session.run()
    assert ui.pump_until(lambda: not session.busy, 60) and not session.message_is_error, session.message
    assert not getattr(host, "wrap_around", False)
    session.discard()
    session.set_mode("upscale")
    session.run()
    assert ui.pump_until(lambda: not session.busy, 60) and not session.message_is_error, session.message
    assert session.apply() is True and host.wrap_around is True  # the upscaled texture opens, shown wrapped
    host.wrap_around = False
    session.set_option("wrap_view", False)
    session.run()
    assert ui.pump_until(lambda: not session.busy, 60) and session.apply() is True
    assert host.wrap_around is False


def test_session_refuses_with_a_message_and_keeps_settings(session_setup):
    session, host, ui = session_setup
    session.set_option("steps", 9)
    session.set_option("nonsense", 1)
    assert session.message_is_error and "nonsense" in session.message
    host.doc.selection = None
    assert session.run() is None and "selection" in session.message.lower()
    session.set_mode("img2img")
    assert session.settings.strength is None  # the mode's default, as the server's welcome says
    assert session.shown().strength == session.defaults.strength("img2img") == 0.7
    saved = json.loads(session.store.values.get("job_settings", "{}"))
    assert saved == {} or saved["model"] == "classical"  # saved when a job starts, not on every click
    host.doc.selection = _selection(64, 48, Box(20, 12, 16, 12))
    session.set_mode("inpaint")
    assert session.run() is not None
    assert json.loads(session.store.values["job_settings"])["steps"] == 9
    assert ui.pump_until(lambda: not session.busy, 60)


def test_live_mode_reads_pixels_only_after_a_change(session_setup):
    """Live mode is driven by change notifications: while nothing changes it reads no pixels and sends nothing; a
    notification whose pixels are as before costs one read and no frame; changed pixels or settings send a frame."""
    session, host, ui = session_setup
    frames = session.live.frames
    session.set_live(True)
    assert ui.pump_until(lambda: len(frames) == 1 and not session.busy and host.preview_writes == 1, 60)
    reads = host.pixel_reads
    ui.pump(1.0)  # idle: nothing changed
    assert host.pixel_reads == reads and len(frames) == 1
    host.changed()  # e.g. the preview layer was added: an undo-stack change, but the inputs are the same
    ui.pump(0.3)
    assert host.pixel_reads == reads + 2 and len(frames) == 1  # image + mask read once; same inputs: no frame
    image = bytearray(host.doc.image)
    image[(16 * 64 + 24) * 4 : (16 * 64 + 24) * 4 + 16] = b"\x00\x00\xff\xff" * 4  # a stroke under the box
    host.doc.image = bytes(image)
    host.changed()
    assert ui.pump_until(lambda: len(frames) == 2 and not session.busy, 60)
    assert frames[1]["sent"] >= frames[1]["change"] > 0
    session.set_prompt("a wolf")  # a setting change is a change too
    assert ui.pump_until(lambda: len(frames) == 3 and not session.busy, 60)
    assert host.preview_writes == 3
    session.set_live(False)
    reads = host.pixel_reads
    host.changed()
    ui.pump(0.3)
    assert host.pixel_reads == reads and not host.watchers  # off: no watch, no reads


def test_the_view_binds_widgets_to_the_session_both_ways(tmp_path):
    """The panel under the system Python's PyQt5 (Krita's own binding on Debian), offscreen, on a memory document."""
    python = Path("/usr/bin/python3")
    probe = (
        subprocess.run([str(python), "-c", "import PyQt5.QtWidgets"], capture_output=True) if python.exists() else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("needs the system Python's PyQt5 (python3 install.py --dev installs python3-pyqt5)")
    site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))  # msgpack/websockets for protocol
    out = subprocess.run(
        [str(python), str(REPO / "tests" / "hosts" / "krita_view_check.py"), str(REPO)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)},
        timeout=120,
    )
    assert out.returncode == 0 and "view ok" in out.stdout, out.stdout + out.stderr


def test_the_server_address_is_stored_in_client_form_and_read_from_older_entries():
    old = MemoryStore({"server_url": "127.0.0.1:9000", "token": "s3cret", "autostart": "false"})
    conn = settings_store.load_connection(old)
    assert conn.target() == ("ws://127.0.0.1:9000", "s3cret") and conn.autostart is False
    settings_store.save_connection(old, conn)
    again = settings_store.load_connection(MemoryStore({"server_settings": old.values["server_settings"]}))
    assert again.to_dict() == conn.to_dict()


def test_session_offers_the_servers_schedules_and_resets_one_the_sampler_cannot_take(session_setup):
    """Sampling options (issue 13) come from the server's welcome; a schedule the new sampler cannot take goes back
    to the sampler's own, one the server does not offer is refused with a message."""
    session, host, ui = session_setup
    assert "DPM++ 2M SDE" in session.defaults.sampling.samplers
    session.set_option("sampler", "Euler")
    session.set_option("scheduler", "Karras")
    assert session.settings.scheduler == "Karras"
    session.set_option("sampler", "DDIM")
    assert session.settings.scheduler == ""  # DDIM has no Karras sigmas
    session.set_option("scheduler", "Karras")
    assert session.message_is_error and "Karras" in session.message and session.settings.scheduler == ""
    session.set_option("vae", "not-installed")
    assert session.message_is_error and session.settings.vae == ""
    session.set_option("batch_count", 3)
    assert session.settings.batch_count == 3


def test_regions_bind_the_active_layer_travel_with_a_job_and_stay_in_the_document(session_setup):
    """regions (issue 15): a prompt bound to the active layer is kept in the document's data (the .kra annotation
    in Krita), comes back in a new session, and travels with the job (the classical engine refuses it by name)."""
    session, host, ui = session_setup
    regions = session.regions
    regions.refresh()
    assert regions.bind_active() == 0
    regions.set_prompt(0, "a red car", "blurry")
    assert regions.labels() == ["Paint: a red car"]
    stored = client.regions.RegionList.from_bytes(host.load_document_data(host.doc, "regions"))
    assert [(b.layer, b.prompt, b.negative_prompt) for b in stored.items] == [("paint", "a red car", "blurry")]
    again = Session(host, session.store, ui.post, ui.schedule, server=_LocalServer(None, Path("unused.log")))
    again.regions.refresh()
    assert again.regions.list.items == regions.list.items
    assert session.run() is not None
    assert ui.pump_until(lambda: not session.busy, 60)
    assert session.message_is_error and "regions" in session.message and "classical" in session.message
    regions.remove(0)
    assert host.load_document_data(host.doc, "regions") is None
    assert session.run() is not None and ui.pump_until(lambda: not session.busy, 60)
    assert not session.message_is_error, session.message


# --- a reference that belongs to a region; live mode hears of region and reference edits (issue 15) -------------------


def _half_layer(w: int, h: int, alpha: int) -> bytes:
    """bgra8 over the canvas: red with ``alpha`` on the left half, empty on the right."""
    return b"".join(b"\x00\x00\xff" + bytes([alpha]) if x < w // 2 else bytes(4) for y in range(h) for x in range(w))


def test_a_reference_row_chooses_a_bound_region_and_falls_back_when_it_goes(session_setup):
    """The region chooser lists the whole image and each bound region by its layer's name; the choice is kept in the
    reference's settings and the job reads the region layer's opacity as the reference's mask; a region unbound
    (or whose layer went) sends its references back to the whole image."""
    session, host, ui = session_setup
    host.doc.extra = {"car": ("Car", _half_layer(64, 48, 200)), "ref": ("Reference", bgra(64, 48, 90))}
    refs, regions = session.references, session.regions
    regions.refresh()
    host.active = "car"
    regions.bind_active("a red car")
    ref = refs.add("ref", "style")
    assert refs.region_choices() == [("— whole image —", ""), ("Car", "car")] and ref.region == ""
    refs.update(0, region="ref")  # not a bound region: refused by name, nothing changes
    assert session.message_is_error and "not a bound region" in session.message and refs.items[0].region == ""
    refs.update(0, region="car")
    assert refs.items[0].region == "car" and session.settings.references[0].region == "car"
    doc = host.doc
    inputs = host.capture(doc, session.settings, [], regions.sources(doc))
    box = inputs.box
    alpha = _half_layer(64, 48, 200)[3::4]
    expected = b"".join(alpha[(box.y + r) * 64 + box.x : (box.y + r) * 64 + box.right] for r in range(box.height))
    assert inputs.references[0].mask.data == expected and inputs.regions[0].mask.data == expected
    assert set(expected) == {0, 200}  # the selection's box straddles the region's edge
    seen = []
    refs.changed.connect(lambda: seen.append([r.region for r in refs.items]))
    regions.remove(0)
    assert refs.items[0].region == "" and seen == [[""]]
    assert host.capture(doc, session.settings, [], regions.sources(doc)).references[0].mask is None


def test_live_mode_sends_a_frame_when_a_region_or_a_reference_changes(session_setup):
    """A region's prompt edit, binding a region, and a reference's region choice are changes for live mode: each
    sends a frame that carries it (the classical engine answers regions with an error: the frame still went out);
    an edit that changes nothing sends nothing."""
    session, host, ui = session_setup
    host.doc.extra = {"car": ("Car", _half_layer(64, 48, 255))}
    sent = []
    submit = session.connection.submit
    session.connection.submit = lambda job: (sent.append(job), submit(job))[1]
    frames = session.live.frames
    session.set_live(True)
    assert ui.pump_until(lambda: len(frames) == 1 and not session.busy, 60)
    regions = session.regions
    regions.refresh()
    host.active = "car"
    regions.bind_active("a red car")  # a new region: a new frame with it
    assert ui.pump_until(lambda: len(frames) == 2 and not session.busy, 60)
    assert [r.prompt for r in sent[-1].regions] == ["a red car"]
    regions.set_prompt(0, "a blue boat")
    assert ui.pump_until(lambda: len(frames) == 3 and not session.busy, 60)
    assert sent[-1].live and [r.prompt for r in sent[-1].regions] == ["a blue boat"]
    reads = host.pixel_reads
    regions.set_prompt(0, "a blue boat")  # the same prompt again: read once, nothing sent
    ui.pump(0.5)
    assert len(frames) == 3 and host.pixel_reads > reads
    session.references.add("car", "style")
    assert ui.pump_until(lambda: len(frames) == 4 and not session.busy, 60)
    assert sent[-1].references[0].mask is None
    session.references.update(0, region="car")  # the reference now belongs to the region: a frame with its mask
    assert ui.pump_until(lambda: len(frames) == 5 and not session.busy, 60)
    assert sent[-1].references[0].mask.data == sent[-1].regions[0].mask.data
    session.set_live(False)


def test_live_mode_starts_the_frame_when_its_debounce_timer_fires_early(session_setup):
    """With slow frames a change waits out the debounce on a timer; Qt's coarse timers may fire a little early: the
    loop then arms another timer instead of waiting for a change that never comes."""
    session, host, ui = session_setup
    frames = session.live.frames
    session.set_live(True)
    assert ui.pump_until(lambda: len(frames) == 1 and not session.busy, 60)
    session.live.scheduler._times.extend([1.0] * 5)  # measured frames of 1 s: a change waits 0.5 s
    session.live.schedule = lambda seconds, fn: ui.schedule(seconds * 0.95, fn)  # 5 % early
    session.set_prompt("a wolf")
    assert ui.pump_until(lambda: len(frames) == 2, 10)
    session.set_live(False)
