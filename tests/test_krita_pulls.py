"""The Krita panel's model downloads (``krita_plugin/paintbridge/session.py``): the session against a real server on
loopback, which pulls from the local hub stand-in; an in-memory document stands in for Krita."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.server import LocalServer
from krita_memory_host import MemoryDocument, MemoryHost, MemoryStore, UiLoop
from krita_plugin.paintbridge.session import Session
from server.downloads import Catalogue
from tests.hubstandin import hub, payload  # noqa: F401 - hub is a fixture

UPSCALER = Catalogue.load().files["upscaler-4x-ultrasharp"]
KEY = (UPSCALER.repo, UPSCALER.file)


@pytest.fixture
def setup(start_server, hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    models = tmp_path / "models"
    models.mkdir()
    server = start_server(model_dirs=[models])
    pixels = bytes(range(256)) * (64 * 48 * 4 // 256)
    mask = bytes(255 if 20 <= x < 36 and 12 <= y < 24 else 0 for y in range(48) for x in range(64))
    host, ui = MemoryHost(MemoryDocument(64, 48, pixels, mask)), UiLoop()
    store = MemoryStore(
        {
            "server_url": server.url,
            "autostart": "false",
            "job_settings": json.dumps({"model": "classical", "mode": "upscale"}),
        }
    )
    session = Session(host, store, ui.post, ui.schedule, server=LocalServer(None, Path("unused.log")))
    session.start()
    assert ui.pump_until(lambda: session.connected and session.downloads.presets is not None, 30), (
        session.connection.detail
    )
    yield session, ui, models, server
    session.shutdown()


def test_the_panel_shows_what_a_preset_lacks_and_downloads_it(setup, hub):
    session, ui, models, _server = setup
    hub.files[KEY] = payload(120_000)
    lines = session.downloads.lines()
    assert any(line.startswith("upscaler: lacks 1 file(s) for upscale") for line in lines), lines
    assert session.downloads.suggested() == "upscaler"
    changes = []
    session.downloads.pull_changed.connect(lambda: changes.append(session.downloads.progress))
    assert session.downloads.pull("upscaler")
    assert ui.pump_until(lambda: session.downloads.pull_id is None, 60), session.message
    assert not session.message_is_error and session.message.startswith("Downloaded 1 file(s)")
    assert changes[-1] == (100, "Download complete")
    assert any(text.startswith("Downloading 4x-UltraSharp.pth (1/1)") for _v, text in changes), changes
    assert "4x-UltraSharp" in session.upscaler_names()  # the listing came with pull_done
    assert ui.pump_until(lambda: "upscaler: complete" in session.downloads.lines(), 30)
    assert (models / UPSCALER.target).read_bytes() == hub.files[KEY]
    session.set_mode("inpaint")  # the lines follow the mode
    assert any(line.startswith("sd15: lacks") and "for inpaint" in line for line in session.downloads.lines())


def test_a_download_can_be_cancelled_and_refusals_are_messages(setup, hub):
    session, ui, models, server = setup
    hub.files[KEY] = payload(300_000, seed=2)
    hub.pause[KEY] = 100_000
    session.downloads.pull("upscaler")
    assert ui.pump_until(lambda: session.downloads.progress[0] > 0, 30), session.downloads.progress
    session.downloads.pull("upscaler")  # one at a time
    assert session.message_is_error and "already running" in session.message
    session.downloads.cancel()
    pulls = server.server.pulls.pulls
    assert ui.pump_until(lambda: any(p.stop.is_set() for p in list(pulls.values())), 30), (
        "the cancel reached the server"
    )
    hub.resume.set()  # the hub goes on; the server stops at the next chunk
    assert ui.pump_until(lambda: session.downloads.pull_id is None, 60)
    assert "cancelled" in session.message and not session.message_is_error
    assert session.downloads.progress[1] == "Download cancelled"
    assert not (models / UPSCALER.target).exists()
    session.downloads.pull("sd3-turbo")
    assert ui.pump_until(lambda: session.downloads.pull_id is None, 30)
    assert session.message_is_error and "'sd3-turbo' is not in the catalogue" in session.message
