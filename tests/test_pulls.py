"""Model downloads through the protocol: the ``pull`` / ``list_presets`` messages and their order rules, and a real
server on loopback pulling from the local hub stand-in (progress, cancel with the partial file kept, resume, bad
checksum, offline), driven through the client core (``client.downloads``)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

import protocol.messages as m
from client import downloads as cm
from client.errors import Cancelled, JobError
from protocol.client import Client, JobFailed
from protocol.codec import encode
from protocol.connection import CLIENT, SERVER, Connection
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.schema import markdown_table
from server.downloads import Catalogue
from server.downloads.pull import DOWNLOADS_DIR
from tests.hubstandin import hub, payload  # noqa: F401 - hub is a fixture

UPSCALER = Catalogue.load().files["upscaler-4x-ultrasharp"]
KEY = (UPSCALER.repo, UPSCALER.file)


# --- messages and order rules ----------------------------------------------------------------------------------------


def test_pull_is_validated_naming_the_field():
    assert m.Pull.from_wire({"type": "pull", "id": "p1", "names": ["sd15"]}).names == ("sd15",)
    for names, field in (([], "names"), ([""], "names[0]"), (["ok", 3], "names[1]"), ("sd15", "names")):
        with pytest.raises(ProtocolError) as err:
            m.parse_client_message({"type": "pull", "id": "p1", "names": names})
        assert err.value.field == field and err.value.job_id == "p1", names  # a refused pull ends with its id
    with pytest.raises(ProtocolError) as err:
        m.parse_client_message({"type": "pull", "id": "p1", "names": ["x"] * (m.MAX_PULL_NAMES + 1)})
    assert err.value.field == "names"


def test_readme_tables_are_the_schema_of_the_pull_messages():
    readme = (Path(__file__).resolve().parent.parent / "protocol" / "README.md").read_text()
    for model in (m.Pull, m.ListPresets, m.Presets, m.PullProgress, m.PullDone):
        assert markdown_table(model) in readme, f"protocol/README.md's table of {model.__name__} is out of date"


def _open_pair():
    client, server = Connection(CLIENT), Connection(SERVER)
    server.receive_data(client.send(m.hello("test", session="s1")))
    client.receive_data(server.send(m.Welcome("1.1", "test", capabilities={"pulls": True})))
    return client, server


def test_a_pull_id_is_open_until_its_one_final_message():
    client, server = _open_pair()
    server.receive_data(client.send(m.Pull("p1", ("upscaler",))))
    with pytest.raises(LocalProtocolError):  # the same id for a job while the pull is open
        client.send(m.Job("p1", "generate", params=m.Params(width=8, height=8)))
    with pytest.raises(ProtocolError) as err:  # a peer that sends it anyway is refused without ending the pull
        server.receive_data(encode(m.Job("p1", "generate", params=m.Params(width=8, height=8)).to_wire()))
    assert err.value.job_id is None and err.value.field == "id"
    server.receive_data(client.send(m.Cancel("p1")))  # a pull can be cancelled
    for event in (m.PullProgress("p1", "a", "x/a", 0, 2, 10, 100), m.PullProgress("p1", "b", "x/b", 1, 2, 0, 0)):
        assert client.receive_data(server.send(event)) == [event]
    done = m.PullDone("p1", ({"id": "a"},), ({"name": "a", "kind": "upscaler"},))
    assert client.receive_data(server.send(done)) == [done]
    assert not client.is_open("p1") and not server.is_open("p1")
    with pytest.raises(LocalProtocolError):  # nothing more for a finished pull
        server.send(m.PullProgress("p1", "a", "", 0, 1, 1, 1))
    with pytest.raises(LocalProtocolError):
        client.send(m.Cancel("p1"))
    # The id is free again: a pull can end with cancelled or error as well.
    server.receive_data(client.send(m.Pull("p1", ("upscaler",))))
    client.receive_data(server.send(m.Cancelled("p1")))
    assert not client.is_open("p1")


def test_presets_and_list_presets_round_trip():
    presets = m.Presets(({"name": "sd15", "files": [{"id": "a", "installed": False}]},))
    assert m.parse_server_message(presets.to_wire()) == presets
    assert m.parse_client_message({"type": "list_presets"}) == m.ListPresets()


def test_client_core_reads_the_status_for_a_mode():
    entries = [
        {
            "name": "sd15",
            "title": "SD1.5",
            "files": [
                {
                    "id": "ckpt",
                    "target": "checkpoints/a.safetensors",
                    "size": 2_000_000_000,
                    "installed": True,
                    "modes": ["generate", "img2img"],
                },
                {
                    "id": "inp",
                    "target": "checkpoints/b.inpainting.safetensors",
                    "size": 2_000_000_000,
                    "installed": False,
                    "modes": ["inpaint"],
                },
                {
                    "id": "canny",
                    "target": "controlnet/canny.safetensors",
                    "size": 700_000_000,
                    "installed": False,
                    "controls": ["canny"],
                },
            ],
        },
        {
            "name": "upscaler",
            "title": "4x",
            "files": [
                {
                    "id": "up",
                    "target": "upscale_models/4x.pth",
                    "size": 60_000_000,
                    "installed": True,
                    "modes": ["upscale"],
                }
            ],
        },
    ]
    sd15, upscaler = cm.presets_from(entries)
    assert sd15.ready_for("generate") and not sd15.ready_for("inpaint") and upscaler.complete
    assert [f.id for f in sd15.missing_for("inpaint")] == ["inp"]
    assert [f.id for f in sd15.missing_for(control="canny")] == ["canny"]
    assert sd15.line("inpaint") == "sd15: lacks 1 file(s) for inpaint, about 2.0 GB: b.inpainting.safetensors"
    assert sd15.line("generate").startswith("sd15: ready for generate (2 other file(s) missing)")
    assert upscaler.line("inpaint") == "upscaler: complete"
    assert cm.summary([sd15, upscaler], "upscale") == "Models for upscale: upscaler ready"
    assert (
        cm.summary([sd15, upscaler], "inpaint")
        == "Models for inpaint: none installed; download the preset 'sd15' (2.0 GB)"
    )
    fraction, text = cm.describe_pull(m.PullProgress("p", "inp", "checkpoints/b.safetensors", 1, 2, 500, 1000))
    assert fraction == 0.75 and text == "Downloading b.safetensors (2/2): 500 B of 1.0 KB"


# --- a real server on loopback, the hub stand-in behind it ------------------------------------------------------------


@pytest.fixture
def server(start_server, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    thread = start_server(model_dirs=[models])
    thread.models_dir = models
    return thread


def _client(server) -> Client:
    client = Client(server.url, "test-pulls")
    client.connect()
    return client


def test_welcome_says_pulls_are_available_and_presets_show_what_is_missing(server):
    with _client(server) as client:
        assert client.welcome.capabilities["pulls"] is True
        statuses = {s.name: s for s in cm.fetch_presets(client)}
    assert {"sd15", "sdxl", "upscaler", "annotators"} <= set(statuses)
    assert not statuses["upscaler"].complete and statuses["upscaler"].missing_for("upscale")
    assert [f.id for f in statuses["sd15"].missing_for(control="canny")] == ["sd15-controlnet-canny"]


def test_a_pull_completes_with_progress_and_the_model_shows_up(server, hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    data = payload(200_000)
    hub.files[KEY] = data
    seen = []
    with _client(server) as client:
        assert "4x-UltraSharp" not in [e["name"] for e in client.list_models()]
        models = cm.run_pull(client, ["upscaler"], on_status=lambda f, t: seen.append((f, t)))
        assert ("4x-UltraSharp", "upscaler") in [(e["name"], e["kind"]) for e in models]
        assert ("4x-UltraSharp", "upscaler") in [(e["name"], e["kind"]) for e in client.list_models()]
        assert {s.name: s for s in cm.fetch_presets(client)}["upscaler"].complete
    assert (server.models_dir / UPSCALER.target).read_bytes() == data
    assert not (server.models_dir / DOWNLOADS_DIR).exists()
    assert seen and seen[-1][0] == 1.0 and "4x-UltraSharp.pth (1/1)" in seen[-1][1]
    assert len(seen) < 200_000 // (16 * 1024) + 2  # throttled: never more than one event per chunk


def test_unknown_names_are_refused_naming_the_field(server):
    with _client(server) as client:
        with pytest.raises(JobFailed) as err:
            client.pull(["upscaler", "sd3-turbo"])
    assert err.value.code == "bad_request" and err.value.field == "names[1]"
    assert "'sd3-turbo' is not in the catalogue" in str(err.value)


def test_cancel_stops_the_pull_keeps_the_partial_file_and_a_new_pull_continues(server, hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    data = payload(400_000, seed=5)
    hub.files[KEY] = data
    hub.pause[KEY] = 160_000
    part = server.models_dir / DOWNLOADS_DIR / UPSCALER.id / "4x-UltraSharp.pth.part"
    with _client(server) as client:
        pull_id = "pull-cancel-1"
        cancelled = threading.Event()

        def on_status(fraction, text):
            if fraction and not cancelled.is_set():  # bytes arrived: cancel, then let the hub go on
                cancelled.set()
                client.cancel(pull_id)
                pulls = server.server.pulls.pulls
                for _ in range(200):  # until the server has the cancel (its download waits for the hub meanwhile)
                    if any(p.stop.is_set() for p in list(pulls.values())):
                        break
                    threading.Event().wait(0.05)
                hub.resume.set()

        with pytest.raises(Cancelled, match="continues where it stopped"):
            cm.run_pull(client, ["upscaler"], on_status=on_status, pull_id=pull_id)
        assert not (server.models_dir / UPSCALER.target).exists()
        kept = part.stat().st_size
        assert 0 < kept < len(data), "the partial file is kept"
        hub.requests.clear()
        first = []
        cm.run_pull(client, ["upscaler"], on_status=lambda f, t: first.append(t) if not first else None)
    assert (server.models_dir / UPSCALER.target).read_bytes() == data
    gets = [rng for method, _, rng in hub.requests if method == "GET"]
    assert gets == [f"bytes={kept}-"], "the second pull asks only for the rest"
    assert first and first[0].startswith(f"Downloading 4x-UltraSharp.pth (1/1): {cm.human_size(kept)}")
    assert not part.exists()


def test_a_bad_checksum_is_refused_naming_the_file(server, hub):
    hub.files[KEY] = payload(50_000)
    hub.etags[KEY] = hashlib.sha256(b"another file").hexdigest()
    with _client(server) as client:
        with pytest.raises(JobError) as err:
            cm.run_pull(client, ["upscaler"])
    assert err.value.code == "download_failed"
    assert f"refused {UPSCALER.repo}/{UPSCALER.file}" in str(err.value) and "sha256" in str(err.value)
    assert not (server.models_dir / UPSCALER.target).exists()


def test_offline_gives_a_clear_error_with_what_to_put_where(server, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with _client(server) as client:
        with pytest.raises(JobError) as err:
            cm.run_pull(client, ["upscaler"])
    text = str(err.value)
    assert err.value.code == "offline" and "cannot reach http://127.0.0.1:9" in text
    assert str(server.models_dir / UPSCALER.target) in text


def test_a_server_without_pulls_gets_a_clear_message(server):
    with _client(server) as client:
        client.welcome = m.Welcome("1.1", "0.9")  # what an older server announces: no 'pulls' capability
        with pytest.raises(JobError, match="cannot download models.*Update the server"):
            cm.run_pull(client, ["upscaler"])
        with pytest.raises(JobError, match="cannot download models"):
            cm.fetch_presets(client)
