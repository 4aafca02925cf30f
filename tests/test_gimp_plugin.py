"""The GIMP plug-in's GIMP-independent parts: argument table, job building, result naming and placement, remembered
settings, the server connection (against a real server on loopback) and the installer. No GIMP needed."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gimp_plugin import arguments, connection, jobs, results, settings
from gimp_plugin.errors import InputError, JobError, ServerUnavailable
from gimp_plugin.installer import install
from protocol.geometry import Box, context_box
from protocol.messages import SAMPLERS, Limits, ResultLayer, parse_client_message

REPO = Path(__file__).resolve().parent.parent


def values_for(mode: str, **changes) -> dict:
    values = arguments.BY_MODE[mode].defaults()
    values.update(changes)
    return values


def rgba(box: Box, value: int = 128) -> bytes:
    return bytes([value]) * (box.width * box.height * 4)


# --- argument table --------------------------------------------------------------------------------------------------

def test_every_procedure_has_a_consistent_argument_table():
    assert {spec.mode for spec in arguments.PROCEDURES} == {"inpaint", "img2img", "outpaint", "upscale", "generate",
                                                            "preprocess"}
    assert [spec.name for spec in arguments.PROCEDURES if spec.live] == [arguments.PREFIX + "live-inpaint"]
    for spec in arguments.PROCEDURES:
        assert spec.name.startswith(arguments.PREFIX)
        names = [arg.name for arg in spec.args]
        assert len(names) == len(set(names)), spec.name
        assert {"server", "token"} <= set(names)
        for arg in spec.args:
            if arg.kind in ("int", "double"):
                assert arg.minimum <= arg.default <= arg.maximum, (spec.name, arg.name)
            if arg.kind == "choice":
                nicks = [nick for nick, _label in arg.choices]
                assert arg.default in nicks and len(set(nicks)) == len(nicks), (spec.name, arg.name)
                assert all(nick == arguments.slug(nick) for nick in nicks), (spec.name, arg.name)


def test_sampler_nicks_map_back_to_every_protocol_sampler():
    assert sorted(arguments.SAMPLER_BY_NICK.values()) == sorted(SAMPLERS)
    assert arguments.SAMPLER_BY_NICK["dpmpp-2m-karras"] == "DPM++ 2M Karras"
    assert arguments.SAMPLER_BY_NICK["euler-a"] == "Euler a"


def test_mask_generation_procedures_have_two_control_slots():
    for mode in ("inpaint", "img2img", "generate"):
        names = {arg.name for arg in arguments.BY_MODE[mode].args}
        assert {"control-layer", "control-type", "control-strength", "control-preprocess",
                "control-2-layer", "control-2-preprocess"} <= names


# --- params and jobs -------------------------------------------------------------------------------------------------

def test_params_follow_the_arguments():
    spec = arguments.BY_MODE["img2img"]
    params = jobs.params_from_values(spec, values_for("img2img", steps=7, seed=42, batch=3, cfg=0.0, strength=0.35,
                                                     sampler="dpmpp-2m-karras", grow=4, feather=0))
    assert params == {"steps": 7, "seed": 42, "batch": 3, "grow": 4, "feather": 0, "strength": 0.35,
                      "sampler": "DPM++ 2M Karras"}
    params = jobs.params_from_values(spec, values_for("img2img", cfg=6.5, sampler="default"))
    assert params["cfg"] == 6.5 and params["sampler"] == ""


def test_unknown_sampler_is_named():
    with pytest.raises(InputError, match="Unknown sampler 'heun'"):
        jobs.params_from_values(arguments.BY_MODE["inpaint"], values_for("inpaint", sampler="heun"))


def test_outpaint_extends_the_chosen_sides_only():
    spec = arguments.BY_MODE["outpaint"]
    params = jobs.params_from_values(spec, values_for("outpaint", extend=40, **{"extend-left": True,
                                                                               "extend-right": False,
                                                                               "extend-bottom": True}))
    assert params["extend"] == {"left": 40, "top": 0, "right": 0, "bottom": 40}
    with pytest.raises(InputError, match="at least one side"):
        jobs.params_from_values(spec, values_for("outpaint", **{"extend-right": False}))


def test_upscale_params():
    spec = arguments.BY_MODE["upscale"]
    params = jobs.params_from_values(spec, values_for("upscale", scale=3.0, upscaler=" 4x-tiny ", refine=0.25))
    assert params["scale"] == 3.0 and params["upscaler"] == "4x-tiny" and params["refine"] == 0.25


def test_control_layer_params_and_name():
    spec = arguments.BY_MODE["preprocess"]
    params = jobs.params_from_values(spec, values_for("preprocess", preprocessor="depth", **{"low-threshold": 20}))
    assert params == {"preprocessor": "depth", "low_threshold": 20, "high_threshold": 200}
    with pytest.raises(InputError, match="low threshold"):
        jobs.params_from_values(spec, values_for("preprocess", **{"low-threshold": 210}))
    box = Box(0, 0, 8, 8)
    msg = parse_client_message(dict(jobs.build_job(spec, values_for("preprocess"), box, rgba(box)), type="job", id="p"))
    assert msg.mode == "preprocess" and msg.params.preprocessor == "canny"
    assert results.layer_name("preprocess", "", layer(info={"preprocessor": "canny"})) == "Control: canny"
    assert jobs.plan_box("preprocess", Box(4, 4, 10, 10), 64, 64) == Box(4, 4, 10, 10)
    assert jobs.plan_box("preprocess", Box(0, 0, 0, 0), 64, 64) == Box(0, 0, 64, 64)


def test_plan_box_per_mode():
    sel = Box(40, 30, 20, 10)
    assert jobs.plan_box("inpaint", sel, 200, 100) == context_box(sel, 200, 100)
    assert jobs.plan_box("img2img", sel, 200, 100) == context_box(sel, 200, 100)
    assert jobs.plan_box("img2img", Box(0, 0, 0, 0), 200, 100) == Box(0, 0, 200, 100)
    assert jobs.plan_box("generate", Box(0, 0, 0, 0), 200, 100) == Box(0, 0, 200, 100)
    assert jobs.plan_box("outpaint", sel, 200, 100) == Box(0, 0, 200, 100)
    assert jobs.plan_box("upscale", sel, 200, 100) == sel
    assert jobs.plan_box("upscale", Box(190, 90, 40, 40), 200, 100) == Box(190, 90, 10, 10)
    with pytest.raises(InputError, match="Inpaint needs a selection"):
        jobs.plan_box("inpaint", Box(0, 0, 0, 0), 200, 100)
    assert jobs.uses_mask("inpaint", sel) and not jobs.uses_mask("upscale", sel)
    assert not jobs.uses_mask("img2img", Box(0, 0, 0, 0))


def test_built_job_passes_the_servers_validation():
    spec = arguments.BY_MODE["inpaint"]
    box = Box(8, 16, 24, 16)
    mask = bytes([0, 128, 255, 0]) * (box.width * box.height // 4)
    control = jobs.ControlInput("canny", 0.8, True, rgba(box, 7))
    job = jobs.build_job(spec, values_for("inpaint", prompt="  a red apple ", model="classical", seed=5), box,
                         rgba(box), mask, [control])
    msg = parse_client_message(dict(job, type="job", id="t1"), Limits())
    assert msg.mode == "inpaint" and msg.prompt == "a red apple" and msg.model == "classical"
    assert (msg.x, msg.y) == (8, 16)
    assert msg.mask.data == mask and msg.image.width == 24
    assert msg.controls[0].type == "canny" and msg.controls[0].preprocess is True
    assert msg.controls[0].strength == 0.8 and msg.controls[0].image.data == rgba(box, 7)
    assert msg.params.seed == 5 and msg.params.strength == 1.0


def test_build_job_refuses_an_empty_mask_and_wrong_sizes():
    spec = arguments.BY_MODE["inpaint"]
    box = Box(0, 0, 8, 8)
    with pytest.raises(InputError, match="mask is empty"):
        jobs.build_job(spec, values_for("inpaint"), box, rgba(box), bytes(64))
    with pytest.raises(ValueError, match="image holds"):
        jobs.build_job(spec, values_for("inpaint"), box, rgba(box)[:-4], bytes([255]) * 64)


def test_control_slots_only_for_set_layers():
    values = values_for("img2img", **{"control-2-layer": "sketch", "control-2-type": "scribble",
                                      "control-2-strength": 0.5})
    slots = jobs.control_slots(values)
    assert slots == [jobs.ControlSlot("sketch", "scribble", 0.5, False)]


# --- results ---------------------------------------------------------------------------------------------------------

def layer(x=0, y=0, w=4, h=4, seed=-1, info=None) -> ResultLayer:
    return ResultLayer("x", x, y, w, h, "rgba8", bytes(w * h * 4), seed, info or {})


def test_layer_names_carry_prompt_and_seed():
    assert results.layer_name("inpaint", "a red apple", layer(seed=1234)) == "a red apple (seed 1234)"
    assert results.layer_name("img2img", "", layer(seed=7)) == "Img2img (seed 7)"
    assert results.layer_name("inpaint", "", layer(seed=0, info={"engine": "classical"})) == "Inpaint (classical)"
    long = "a very detailed oil painting of a lighthouse on a cliff at dusk, stormy sea"
    name = results.layer_name("generate", long, layer(seed=3))
    assert name.startswith("a very detailed oil painting of a lighthouse") and "… (seed 3)" in name
    assert len(name) < 70


def test_batch_names_are_unique():
    names = results.layer_names("inpaint", "cat", [layer(seed=1), layer(seed=2), layer(seed=1)])
    assert names == ["cat (seed 1)", "cat (seed 2)", "cat (seed 1) #2"]


def test_canvas_grows_to_hold_outpaint_results():
    assert results.canvas_for([layer(0, 0, 64, 64)], 64, 64) == (64, 64, 0, 0)
    assert results.canvas_for([layer(-16, 0, 96, 64)], 64, 64) == (96, 64, 16, 0)
    assert results.canvas_for([layer(-8, -4, 80, 72)], 64, 64) == (80, 72, 8, 4)


# --- remembered settings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, url", [
    ("127.0.0.1:7861", "ws://127.0.0.1:7861"),
    ("localhost", "ws://localhost:7860"),
    ("ws://10.0.0.2:9000/", "ws://10.0.0.2:9000"),
    ("wss://paint.example:443/pb", "wss://paint.example:443/pb"),
])
def test_server_addresses_are_normalised(typed, url):
    assert settings.normalise_url(typed) == url


@pytest.mark.parametrize("typed", ["http://127.0.0.1:7860", "ws://:80", "ws://host:99999"])
def test_bad_server_addresses_are_refused(typed):
    with pytest.raises(InputError, match="not valid"):
        settings.normalise_url(typed)


def test_server_and_token_are_remembered_per_address(tmp_path):
    assert settings.resolve(tmp_path, "", "") == (settings.DEFAULT_URL, None)
    settings.remember(tmp_path, "ws://127.0.0.1:9001", "s3cret")
    assert stat.S_IMODE((tmp_path / settings.FILE_NAME).stat().st_mode) == 0o600
    assert settings.resolve(tmp_path, "", "") == ("ws://127.0.0.1:9001", "s3cret")
    assert settings.resolve(tmp_path, "127.0.0.1:9002", "") == ("ws://127.0.0.1:9002", None)
    assert settings.resolve(tmp_path, "", "other") == ("ws://127.0.0.1:9001", "other")
    (tmp_path / settings.FILE_NAME).write_text("{not json")
    assert settings.resolve(tmp_path, "", "") == (settings.DEFAULT_URL, None)


# --- connection (real server on loopback) ----------------------------------------------------------------------------

def test_progress_events_feed_fraction_and_text():
    assert connection.describe_event({"type": "queued", "position": 2}) == (0.0, "Waiting for the server: 2 jobs ahead")
    assert connection.describe_event({"type": "progress", "step": 5, "total": 20}) == (0.25, "Step 5 of 20")
    assert connection.describe_event({"type": "result"})[0] == 1.0
    assert connection.describe_event({"type": "welcome"}) == (None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_gives_a_clear_message():
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable) as info:
        connection.connect(url, None)
    assert url in str(info.value) and "paintbridge serve" in str(info.value)


def inpaint_job(box: Box) -> dict:
    mask = bytearray(box.width * box.height)
    for y in range(8, 20):
        mask[y * box.width + 8:y * box.width + 20] = b"\xff" * 12
    return jobs.build_job(arguments.BY_MODE["inpaint"], values_for("inpaint", model="classical", batch=1), box,
                          rgba(box, 90), bytes(mask))


def test_runs_a_job_against_the_real_server(start_server):
    server = start_server()
    seen = []
    client = connection.connect(server.url, None)
    try:
        layers, _params = connection.run_job(client, inpaint_job(Box(16, 8, 32, 32)),
                                             lambda f, t: seen.append((f, t)))
    finally:
        client.close()
    assert len(layers) == 1 and (layers[0].x, layers[0].y, layers[0].width, layers[0].height) == (16, 8, 32, 32)
    assert seen[-1] == (1.0, "Inserting the result")
    assert any(text and text.startswith("Step") for _f, text in seen)


def test_server_errors_become_job_errors(start_server):
    server = start_server()
    box = Box(0, 0, 32, 32)
    job = jobs.build_job(arguments.BY_MODE["img2img"], values_for("img2img"), box, rgba(box))
    client = connection.connect(server.url, None)
    try:
        with pytest.raises(JobError) as info:
            connection.run_job(client, job)
    finally:
        client.close()
    assert info.value.code == "unsupported" and "checkpoint" in str(info.value)


def test_a_wrong_token_is_reported(start_server):
    server = start_server(token="right-token-1")
    with pytest.raises(JobError) as info:
        connection.connect(server.url, "wrong-token-2")
    assert info.value.code == "unauthorized" and "Token" in str(info.value)
    connection.connect(server.url, "right-token-1").close()


def test_a_local_server_that_is_down_is_started_with_the_recorded_command(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}"
    models = tmp_path / "models"
    models.mkdir()
    command = [sys.executable, "-m", "server", "serve", "--models", str(models)]
    statuses = []
    client = connection.connect(url, None, command, tmp_path / "server.log", lambda f, t: statuses.append(t))
    try:
        assert client.welcome.protocol
        layers, _ = connection.run_job(client, inpaint_job(Box(0, 0, 32, 32)))
        assert len(layers) == 1
        assert statuses[0].startswith("Starting the Paintbridge server")
    finally:
        client.close()
        proc = getattr(client, "server_process", None)
        assert proc is not None
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


# --- installer -------------------------------------------------------------------------------------------------------

def test_installer_makes_a_self_contained_plugin_folder(tmp_path):
    plugins = tmp_path / "plug-ins"
    dest = install(plugins, ["/opt/pb/python", "-m", "server", "serve"])
    assert dest == plugins / "paintbridge"
    entry = dest / "paintbridge.py"
    assert entry.stat().st_mode & stat.S_IXUSR
    assert (dest / "gimp_plugin" / "procedures.py").exists() and (dest / "protocol" / "client.py").exists()
    assert not list(dest.rglob("*.so")), "vendored packages must be pure Python"
    assert '"/opt/pb/python"' in (dest / "install.json").read_text()
    # The vendored copies import on their own, without this venv's site-packages.
    probe = ("import sys; sys.path[:0] = [sys.argv[1] + '/vendor', sys.argv[1]]; "
             "import msgpack, websockets.sync.client, protocol.client, gimp_plugin.jobs; "
             "assert all(m.__file__.startswith(sys.argv[1]) for m in (msgpack, websockets, protocol)); "
             "print(msgpack.unpackb(msgpack.packb({'a': b'x'})))")
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(dest)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # A second install replaces the first and leaves nothing behind.
    (dest / "stale.txt").write_text("old")
    assert install(plugins) == dest and not (dest / "stale.txt").exists()
    assert sorted(p.name for p in plugins.iterdir()) == ["paintbridge"]
    assert '"server_command": null' in (dest / "install.json").read_text()


# --- live inpaint scheduling -----------------------------------------------------------------------------------------

def test_live_scheduler_debounces_runs_once_and_cancels_stale_jobs():
    from gimp_plugin.livestate import CANCEL, START, WAIT, LiveScheduler

    s = LiveScheduler()
    assert s.tick(None) == WAIT
    assert s.tick("a") == WAIT  # changed: wait one tick for it to hold still
    assert s.tick("a") == START
    s.started("a")
    assert s.tick("a") == WAIT  # one job at a time
    assert s.tick("b") == WAIT
    assert s.tick("b") == CANCEL  # the inputs moved on and held still: stop the stale job
    assert s.tick("b") == WAIT  # cancel only once
    s.finished("a", answered=False)  # cancelled: no answer for "a"
    assert s.tick("b") == START
    s.started("b")
    s.finished("b")
    assert s.tick("b") == WAIT  # never twice for the same inputs
    s.forget()
    assert s.tick("b") == START  # unless asked to


def test_live_signature_changes_with_selection_and_settings():
    from gimp_plugin.livestate import signature

    base = signature((1, 2, 3, 4), b"\x00\xff", {"prompt": "a", "steps": 4}, 7)
    assert base == signature((1, 2, 3, 4), b"\x00\xff", {"steps": 4, "prompt": "a"}, 7)
    assert base != signature((1, 2, 3, 4), b"\x00\xfe", {"prompt": "a", "steps": 4}, 7)
    assert base != signature((1, 2, 3, 5), b"\x00\xff", {"prompt": "a", "steps": 4}, 7)
    assert base != signature((1, 2, 3, 4), b"\x00\xff", {"prompt": "b", "steps": 4}, 7)
    assert base != signature((1, 2, 3, 4), b"\x00\xff", {"prompt": "a", "steps": 4}, 8)
    assert signature((0, 0, 0, 0), b"", {}, 1) is None


def test_dialog_layout_and_models_hint():
    from gimp_plugin.dialog import layout, models_hint

    top, sections = layout(arguments.BY_MODE["inpaint"])
    assert top[:4] == ["prompt", "negative-prompt", "model", "strength"]
    assert [sid for sid, _title, _members in sections] == ["sampling", "area", "controls", "server"]
    placed = top + [name for _sid, _title, members in sections for name in members]
    assert sorted(placed) == sorted(arg.name for arg in arguments.BY_MODE["inpaint"].args)
    models = [{"name": "classical", "kind": "builtin"}, {"name": "tiny-sd15", "kind": "checkpoint"},
              {"name": "4x-tiny", "kind": "upscaler"}]
    assert models_hint(models, "inpaint", "ws://h:1") == "Checkpoints: tiny-sd15 · built-in: classical"
    assert models_hint(models, "upscale", "ws://h:1") == "Upscalers: 4x-tiny · Checkpoints: tiny-sd15"
    assert "not answering" in models_hint(None, "img2img", "ws://h:1")


def test_fetch_models_for_the_dialog(start_server):
    server = start_server()
    models = connection.fetch_models(server.url, None)
    assert models is not None and models[0]["name"] == "classical"
    assert connection.fetch_models(f"ws://127.0.0.1:{free_port()}", None, timeout=0.5) is None


def test_install_py_installs_the_gimp_plugin_through_its_own_loader(tmp_path):
    """The path install.py takes: its loader imports installer.py by file, which vendors through install.py."""
    script = ("import sys; from pathlib import Path; import install; "
              "dest = install._load_installer('gimp_plugin').install(Path(sys.argv[1]), "
              "install.server_command(Path(sys.argv[2]))); print(dest)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "plug-ins"), str(REPO / ".venv")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    dest = Path(out.stdout.strip())
    assert dest == tmp_path / "plug-ins" / "paintbridge"
    assert (dest / "vendor" / "websockets").is_dir() and (dest / "protocol" / "geometry.py").exists()
    assert str(REPO / ".venv") in (dest / "install.json").read_text()
