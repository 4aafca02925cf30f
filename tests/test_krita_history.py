"""The Krita panel's results history without Krita: the session against a real server (classical engine) on an
in-memory document whose annotations stand for what Krita saves in the .kra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from client import docdata, history as ch  # noqa: E402
from client.server import LocalServer  # noqa: E402
from krita_memory_host import MemoryDocument, MemoryHost, MemoryStore, UiLoop  # noqa: E402
from krita_plugin.paintbridge.session import Session  # noqa: E402
from protocol import BGRA8, RGBA8, Box, convert_pixels  # noqa: E402


def bgra(w: int, h: int) -> bytes:
    return bytes((x * 7 + y * 3 + c * 50) % 256 for y in range(h) for x in range(w) for c in range(4))


def selection(w: int, h: int, box: Box) -> bytes:
    return bytes(255 if box.x <= x < box.right and box.y <= y < box.bottom else 0 for y in range(h) for x in range(w))


def new_session(url: str, host: MemoryHost, ui: UiLoop) -> Session:
    store = MemoryStore(
        {
            "server_url": url,
            "autostart": "false",
            "job_settings": json.dumps({"model": "classical", "prompt": "a fox", "mode": "inpaint", "fill": "ns"}),
        }
    )
    session = Session(host, store, ui.post, ui.schedule, server=LocalServer(None, Path("unused.log")))
    session.start()
    assert ui.pump_until(lambda: session.connected, 30), session.connection.detail
    return session


@pytest.fixture
def server_url(start_server):
    return start_server().url


def run(session: Session, ui: UiLoop) -> None:
    assert session.run() is not None, session.message
    assert ui.pump_until(lambda: not session.busy, 60), session.message
    assert not session.message_is_error, session.message


def test_results_never_applied_come_back_with_the_document_and_apply_again(server_url):
    doc = MemoryDocument(64, 48, bgra(64, 48), selection(64, 48, Box(20, 12, 16, 12)))
    host, ui = MemoryHost(doc), UiLoop()
    session = new_session(server_url, host, ui)
    shown = []
    session.history.changed.connect(lambda: shown.append(len(session.history.entries)))
    run(session, ui)
    first = session.results[0]
    session.set_prompt("a wolf")
    session.set_option("steps", 7)
    run(session, ui)
    session.discard()  # neither result was applied
    assert doc.layers == [] and shown[-1] == 2
    entries = session.history.entries
    assert [e.prompt for e in entries] == ["a fox", "a wolf"] and entries[0].layers[0].data == first.data
    assert set(doc.annotations) == {"paintbridge/history"}
    session.shutdown()

    # The document is saved, closed and opened again (its annotations travel); a new panel lists the entries.
    reopened = MemoryDocument(64, 48, bgra(64, 48), None, annotations=dict(doc.annotations))
    host2 = MemoryHost(reopened)
    session2 = new_session(server_url, host2, ui)
    session2.history.show_active()
    entries = session2.history.entries
    assert [e.prompt for e in entries] == ["a fox", "a wolf"]
    assert entries[1].settings["steps"] == 7 and entries[0].seeds == [first.seed]

    listed = []
    session2.history.changed.connect(lambda: listed.append([e.prompt for e in session2.history.shown]))
    session2.history.set_query("WOLF")  # the panel's search field: a word of a prompt, any case
    assert listed == [["a wolf"]]  # the list follows
    session2.history.set_query("mode:inpaint model:classical fox")
    assert [e.prompt for e in session2.history.shown] == ["a fox"] and not session2.history.query_problem
    session2.history.set_query("seed:fox")  # a query that cannot be read lists nothing and says why
    assert session2.history.shown == [] and "whole number" in session2.history.query_problem
    session2.history.set_query("")
    assert session2.history.shown == session2.history.entries

    session2.history.apply_again(entries[0].id)
    assert not session2.message_is_error, session2.message
    name, layer = reopened.layers[0]
    assert name == first.name and layer.box == first.box and layer.data == first.data  # the same pixels

    session2.history.reuse_settings(entries[1].id)
    assert session2.settings.prompt == "a wolf" and session2.settings.steps == 7
    assert session2.settings.model == "classical" and session2.settings.mode == "inpaint"
    assert json.loads(session2.store.values["job_settings"])["prompt"] == "a wolf"

    session2.history.delete(entries[0].id)
    assert [e.prompt for e in session2.history.entries] == ["a wolf"]
    stored = ch.History.from_bytes(docdata.unpack("history", reopened.annotations["paintbridge/history"]))
    assert [e.prompt for e in stored.entries] == ["a wolf"]

    session2.history.set_limit(0)  # keep nothing
    assert session2.history.entries == [] and reopened.annotations == {}
    assert session2.settings.history_limit_mb == 0
    session2.shutdown()


def test_damaged_history_in_a_document_is_said_and_not_fatal(server_url):
    doc = MemoryDocument(
        64,
        48,
        bgra(64, 48),
        selection(64, 48, Box(20, 12, 16, 12)),
        annotations={"paintbridge/history": b"written by something else"},
    )
    host, ui = MemoryHost(doc), UiLoop()
    session = new_session(server_url, host, ui)
    session.history.show_active()
    assert session.history.entries == [] and session.message_is_error
    assert "cannot be read" in session.message and "not written by Paintbridge" in session.message
    run(session, ui)  # a new result replaces the unreadable data
    assert len(session.history.entries) == 1
    assert ch.History.from_bytes(docdata.unpack("history", doc.annotations["paintbridge/history"])).entries
    session.shutdown()


def test_live_mode_keeps_its_last_frame_when_switched_off(server_url):
    doc = MemoryDocument(64, 48, bgra(64, 48), selection(64, 48, Box(20, 12, 16, 12)))
    host, ui = MemoryHost(doc), UiLoop()
    session = new_session(server_url, host, ui)
    session.set_live(True)
    assert ui.pump_until(lambda: len(session.live.frames) >= 1 and not session.busy and session.results, 60)
    assert session.history.entries == []  # frames are not kept one by one
    shown = session.results[0]
    session.set_live(False)
    entries = session.history.entries
    assert len(entries) == 1 and entries[0].layers[0].data == shown.data
    assert (entries[0].layers[0].x, entries[0].layers[0].y) == (shown.box.x, shown.box.y)
    session.shutdown()


def test_a_limit_of_zero_keeps_nothing_and_says_nothing(server_url):
    doc = MemoryDocument(64, 48, bgra(64, 48), selection(64, 48, Box(20, 12, 16, 12)))
    host, ui = MemoryHost(doc), UiLoop()
    session = new_session(server_url, host, ui)
    session.history.set_limit(0)
    run(session, ui)
    assert session.history.entries == [] and doc.annotations == {}
    assert "result" in session.message and not session.message_is_error
    session.shutdown()


def test_reuse_settings_puts_the_jobs_control_layers_back_in_the_panel(server_url):
    """The control layers a job used are kept with its settings (``client.settings.ControlSetting``, the format GIMP
    keeps too) and *Reuse settings* puts them back; an entry kept before control layers were kept leaves the panel's
    own control layers alone."""
    from client.settings import ControlSetting

    w, h = 64, 48
    doc = MemoryDocument(
        w,
        h,
        bgra(w, h),
        selection(w, h, Box(20, 12, 16, 12)),
        extra={"sketch-id": ("Sketch", bgra(w, h)), "depth-id": ("Depth", bgra(w, h))},
    )
    host, ui = MemoryHost(doc), UiLoop()
    session = new_session(server_url, host, ui)
    session.add_control("sketch-id", "scribble", 0.7, 0.1, 0.9)
    session.add_control("depth-id", "depth", 1.2, 0.0, 0.6)
    assert session.run() is not None, session.message
    kept = (ControlSetting("sketch-id", "scribble", 0.7, 0.1, 0.9), ControlSetting("depth-id", "depth", 1.2, 0.0, 0.6))
    assert session.job.settings.controls == kept  # the job's settings carry them
    assert session.settings.controls == ()  # the panel keeps its own list
    ui.pump_until(lambda: not session.busy, 60)  # the built-in engine refuses control layers: no result, no entry
    history = session.history.of(doc)
    from protocol.messages import ResultLayer

    image = ResultLayer(name="kept", x=0, y=0, width=8, height=8, format="bgra8", data=bytes(8 * 8 * 4), seed=5)
    settings = session.settings.replace(prompt="with controls", controls=kept)
    history.record(settings, [image], ["kept"], {})
    older = session.settings.replace(prompt="before controls were kept")
    history.record(older, [image], ["older"], {})
    stored = history.entries[-1]
    del stored.settings["controls"]  # as an entry stored by an earlier version reads
    session.history.show_active()
    by_prompt = {e.prompt: e for e in session.history.entries}

    for index in range(len(session.controls) - 1, -1, -1):
        session.remove_control(index)
    session.history.reuse_settings(by_prompt["with controls"].id)
    assert session.control_settings() == kept and session.settings.controls == ()
    assert session.settings.prompt == "with controls"
    session.add_control("sketch-id", "lineart")
    session.history.reuse_settings(by_prompt["before controls were kept"].id)
    assert session.control_settings() == kept + (ControlSetting("sketch-id", "lineart"),)  # left as they were
    session.shutdown()


def test_apply_again_on_a_decomposition_brings_its_layer_group_back_in_order_with_alpha(server_url):
    """A decomposition's entry (its layers kept with their group) applied again from the panel: one new layer group
    of the same name holding every layer of the result, named, bottom first, with its alpha; the painter's layers
    and the canvas are left alone."""
    from client.settings import Settings
    from test_client_history import decomposition

    doc = MemoryDocument(64, 48, bgra(64, 48), None)
    host, ui = MemoryHost(doc), UiLoop()
    layers = decomposition()
    kept = ch.DocumentHistory(
        lambda: host.load_document_data(doc, ch.KEY), lambda data: host.save_document_data(doc, ch.KEY, data)
    )
    entry = kept.record(Settings(mode="decompose", prompt="a house"), layers, [l.name for l in layers], {})
    session = new_session(server_url, host, ui)
    session.history.show_active()
    session.history.apply_again(entry.id, 1)  # the middle layer: its group comes back whole
    assert not session.message_is_error and "'a house (seed 9)' (3 layers)" in session.message, session.message
    assert doc.layers == [] and doc.image == bgra(64, 48)
    ((group, members),) = doc.groups
    assert group == "a house (seed 9)"
    assert [name for name, _image in members] == ["Layer 1 (bottom)", "Layer 2", "Layer 3 (top)"]
    for (_name, image), original in zip(members, layers):
        assert (image.box.x, image.box.y, image.box.width, image.box.height) == (8, 4, 24, 16)
        assert image.data == convert_pixels(original.data, RGBA8, BGRA8)  # alpha and colour as they arrived
    session.shutdown()
