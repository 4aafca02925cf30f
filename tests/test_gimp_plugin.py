"""The GIMP plug-in's GIMP-independent parts: argument table, procedure values → the client core's settings,
remembered server settings, the connection (against a real server on loopback) and the installer. No GIMP needed.
Job building, naming, placement and live scheduling are the client core's (tests/test_client_*.py)."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from client.errors import AddressError, JobInputError, ServerUnavailable
from client.jobs import ControlSource, JobInputs, build_job
from client.server import read_server_command
from client.settings import FALLBACK_DEFAULTS, Settings
from gimp_plugin import argchoices, args_inputs, argspec, procedures_tools, arguments, connection, settings, values
from pbsetup.plugins import install_gimp as install
from protocol.geometry import Box
from protocol.images import ImagePayload
from protocol.messages import MAX_CONTROLS, SAMPLERS, Control, Limits, parse_client_message

REPO = Path(__file__).resolve().parent.parent


def values_for(mode: str, **changes) -> dict:
    values = arguments.BY_MODE[mode].defaults()
    values.update(changes)
    return values


def rgba(box: Box, value: int = 128) -> bytes:
    return bytes([value]) * (box.width * box.height * 4)


# --- argument table --------------------------------------------------------------------------------------------------


def test_every_procedure_has_a_consistent_argument_table():
    assert {spec.mode for spec in arguments.PROCEDURES} == {
        "inpaint",
        "img2img",
        "outpaint",
        "upscale",
        "generate",
        "preprocess",
        "edit",
        "detail",
        "decompose",
    }
    assert [spec.name for spec in arguments.PROCEDURES if spec.live] == [argspec.PREFIX + "live-inpaint"]
    for spec in arguments.PROCEDURES:
        assert spec.name.startswith(argspec.PREFIX)
        names = [arg.name for arg in spec.args]
        assert len(names) == len(set(names)), spec.name
        assert {"server", "token"} <= set(names)
        for arg in spec.args:
            if arg.kind in ("int", "double"):
                assert arg.minimum <= arg.default <= arg.maximum, (spec.name, arg.name)
            if arg.kind == "choice":
                nicks = [nick for nick, _label in arg.choices]
                assert arg.default in nicks and len(set(nicks)) == len(nicks), (spec.name, arg.name)
                assert all(nick == argspec.slug(nick) for nick in nicks), (spec.name, arg.name)


def test_sampler_nicks_map_back_to_every_protocol_sampler():
    assert sorted(argchoices.SAMPLER_BY_NICK.values()) == sorted(SAMPLERS)
    assert argchoices.SAMPLER_BY_NICK["dpmpp-2m-karras"] == "DPM++ 2M Karras"
    assert argchoices.SAMPLER_BY_NICK["euler-a"] == "Euler a"


def test_every_mode_that_takes_controls_has_as_many_control_slots_as_a_job_takes():
    from client.modes import rule

    assert MAX_CONTROLS == 8
    modes = [spec.mode for spec in arguments.PROCEDURES if rule(spec.mode).controls]
    assert sorted(set(modes)) == ["generate", "img2img", "inpaint", "outpaint"]
    for spec in arguments.PROCEDURES:
        names = {arg.name for arg in spec.args}
        slots = [args_inputs.control_prefix(i) for i in range(1, MAX_CONTROLS + 1)]
        wanted = {f"{p}-{k}" for p in slots for k in ("layer", "type", "strength", "start", "end", "preprocess")}
        if rule(spec.mode).controls:
            assert wanted <= names, spec.name
            for p in slots:
                assert spec.arg(f"{p}-layer").default is None
                assert (spec.arg(f"{p}-start").default, spec.arg(f"{p}-end").default) == (0.0, 1.0)
        else:
            assert not any(n.startswith("control-") for n in names), spec.name
    assert "control-8-end" in {a.name for a in arguments.BY_NAME[argspec.PREFIX + "live-inpaint"].args}


# --- procedure values → client settings → job --------------------------------------------------------------------


def settings_for(mode: str, **changes) -> Settings:
    return values.settings_from_values(arguments.BY_MODE[mode], values_for(mode, **changes))


def test_settings_follow_the_arguments():
    s = settings_for(
        "img2img",
        steps=7,
        seed=42,
        batch=3,
        cfg=0.0,
        strength=0.35,
        sampler="dpmpp-2m-karras",
        grow=4,
        feather=0,
        prompt="  a fox ",
        source="layer",
        **{"mask-source": "layer-mask"},
    )
    assert (s.mode, s.steps, s.seed, s.batch, s.cfg, s.strength, s.sampler) == (
        "img2img",
        7,
        42,
        3,
        0.0,
        0.35,
        "DPM++ 2M Karras",
    )
    assert (s.grow, s.feather, s.prompt, s.image_source, s.mask_source) == (4, 0, "a fox", "layer", "layer-mask")
    assert settings_for("img2img", sampler="default").sampler == ""


def test_argument_defaults_leave_the_model_defaults_to_the_welcome():
    s = settings_for("inpaint")
    assert s.steps == 0 and s.cfg == 0.0 and s.sampler == "" and s.seed == -1
    assert settings_for("img2img").strength == FALLBACK_DEFAULTS["modes"]["img2img"]["strength"]
    assert settings_for("outpaint").strength is None  # no argument: the mode's default from the welcome


def test_unknown_sampler_is_named():
    with pytest.raises(JobInputError, match="Unknown sampler 'dpmpp-9m'"):
        settings_for("inpaint", sampler="dpmpp-9m")


def test_sampling_arguments_reach_the_settings_and_the_job_params():
    s = settings_for(
        "img2img",
        sampler="heun",
        scheduler="karras",
        **{"batch-count": 3, "clip-skip": 2, "vae": " my-vae ", "refiner": "ref", "refiner-start": 0.7},
    )
    assert (s.sampler, s.scheduler, s.batch_count, s.clip_skip, s.vae, s.refiner, s.refiner_start) == (
        "Heun",
        "Karras",
        3,
        2,
        "my-vae",
        "ref",
        0.7,
    )
    assert [nick for nick, _ in argchoices.SCHEDULER_CHOICES][1:] == [
        "karras",
        "exponential",
        "beta",
        "normal",
        "simple",
        "sgm-uniform",
    ]
    with pytest.raises(JobInputError, match="Unknown schedule 'sgm'"):
        settings_for("inpaint", scheduler="sgm")
    live = next(spec for spec in arguments.PROCEDURES if spec.live)
    assert "batch-count" not in {a.name for a in live.args} and "scheduler" in {a.name for a in live.args}


def test_outpaint_extends_the_chosen_sides_only():
    s = settings_for("outpaint", extend=40, **{"extend-left": True, "extend-right": False, "extend-bottom": True})
    assert (s.extend_left, s.extend_top, s.extend_right, s.extend_bottom) == (40, 0, 0, 40)


def test_upscale_and_control_layer_settings():
    s = settings_for("upscale", scale=3.0, upscaler=" 4x-tiny ", refine=0.25)
    assert (s.scale, s.upscaler, s.refine) == (3.0, "4x-tiny", 0.25)
    s = settings_for("preprocess", preprocessor="depth", **{"low-threshold": 20})
    assert (s.preprocessor, s.low_threshold, s.high_threshold) == ("depth", 20, 200)


def test_the_control_layer_procedure_offers_exactly_what_the_server_runs_as_a_control():
    from server.preprocess import NOT_RUN, PREPROCESSORS

    offered = [nick for nick, _ in argchoices.PREPROCESSOR_CHOICES]
    runs = [name for name in PREPROCESSORS if name not in NOT_RUN and name not in ("inpaint", "reference")]
    assert sorted(offered) == sorted(runs) and "pose" in offered


def test_live_procedure_makes_one_result():
    spec = arguments.BY_NAME[argspec.PREFIX + "live-inpaint"]
    assert values.settings_from_values(spec, dict(spec.defaults(), batch=4)).batch == 1


def test_control_sources_only_for_set_layers():
    sources = values.control_sources(
        values_for("img2img", **{"control-2-layer": "sketch", "control-2-type": "scribble", "control-2-strength": 0.5})
    )
    assert sources == [ControlSource("sketch", "scribble", 0.5)]


def test_eight_control_slots_with_their_step_ranges_reach_the_job():
    vals = values_for("inpaint", prompt="x")
    for i in range(1, 9):
        p = args_inputs.control_prefix(i)
        vals.update(
            {
                f"{p}-layer": f"layer{i}",
                f"{p}-type": "depth" if i % 2 else "canny",
                f"{p}-start": i / 20,
                f"{p}-end": 1 - i / 20,
                f"{p}-preprocess": i == 8,
            }
        )
    sources = values.control_sources(vals)
    assert [(c.layer, c.start, c.end, c.preprocess) for c in sources] == [
        (f"layer{i}", i / 20, 1 - i / 20, i == 8) for i in range(1, 9)
    ]
    box = Box(0, 0, 16, 16)
    inputs = JobInputs(
        box,
        rgba(box),
        "rgba8",
        rgba(box)[: 16 * 16],
        tuple(
            Control(c.type, ImagePayload(16, 16, "rgba8", rgba(box, i)), c.strength, c.start, c.end, c.preprocess)
            for i, c in enumerate(sources)
        ),
    )
    msg = parse_client_message(
        build_job(values.settings_from_values(arguments.BY_MODE["inpaint"], vals), inputs, job_id="c8").to_wire(),
        Limits(),
    )
    assert [(c.type, c.start, c.end) for c in msg.controls] == [(c.type, c.start, c.end) for c in sources]
    with pytest.raises(JobInputError, match="Control 3: 'from' \\(0.9\\) is after 'until' \\(0.2\\)"):
        values.control_sources(
            values_for("img2img", **{"control-3-layer": "x", "control-3-start": 0.9, "control-3-end": 0.2})
        )


def test_a_built_job_passes_the_servers_validation():
    box = Box(8, 16, 24, 16)
    mask = bytes([0, 128, 255, 0]) * (box.width * box.height // 4)
    s = settings_for("inpaint", prompt="  a red apple ", model="classical", seed=5)
    inputs = JobInputs(
        box,
        rgba(box),
        "rgba8",
        mask,
        (Control("canny", ImagePayload(24, 16, "rgba8", rgba(box, 7)), 0.8, preprocess=True),),
    )
    msg = parse_client_message(build_job(s, inputs, job_id="t1").to_wire(), Limits())
    assert msg.mode == "inpaint" and msg.prompt == "a red apple" and msg.model == "classical"
    assert (msg.x, msg.y) == (8, 16) and msg.mask.data == mask and msg.image.width == 24
    assert msg.controls[0].preprocess is True and msg.controls[0].strength == 0.8
    assert msg.params.seed == 5 and msg.params.strength == 1.0 and msg.params.fill == "patch"  # the default fill
    assert msg.params.color_match is False


# --- remembered settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, url",
    [
        ("127.0.0.1:7861", "ws://127.0.0.1:7861"),
        ("localhost", "ws://localhost:7860"),
        ("ws://10.0.0.2:9000/", "ws://10.0.0.2:9000"),
        ("wss://paint.example:443/pb", "wss://paint.example:443/pb"),
    ],
)
def test_server_addresses_are_normalised(typed, url):
    assert settings.normalise_url(typed) == url


@pytest.mark.parametrize("typed", ["http://127.0.0.1:7860", "ws://:80", "ws://host:99999"])
def test_bad_server_addresses_are_refused(typed):
    with pytest.raises(AddressError, match="not valid"):
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inpaint_job(box: Box):
    mask = bytearray(box.width * box.height)
    for y in range(8, 20):
        mask[y * box.width + 8 : y * box.width + 20] = b"\xff" * 12
    return build_job(
        settings_for("inpaint", model="classical"), JobInputs(box, rgba(box, 90), "rgba8", bytes(mask)), job_id="g-1"
    )


def test_the_gimp_connection_runs_a_job_on_a_real_server(start_server):
    server = start_server()
    seen = []
    client = connection.connect(server.url, None)
    try:
        assert client.welcome.protocol == "1.1"
        layers, _params = connection.run_job(client, inpaint_job(Box(16, 8, 32, 32)), lambda f, t: seen.append(t))
    finally:
        client.close()
    assert len(layers) == 1 and (layers[0].x, layers[0].y) == (16, 8) and seen[-1] == "Inserting the result"


def test_a_server_that_is_down_gives_a_clear_message(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailable) as info:
        connection.connect(url, None, tmp_path)  # no server.json next to the plug-in here: nothing to start
    assert url in str(info.value) and "paintbridge serve" in str(info.value)


def test_the_launcher_reads_the_recorded_command_and_logs_into_the_profile(tmp_path):
    (tmp_path / "server.json").write_text('{"command": ["/venv/python", "-m", "server", "serve"]}')
    server = connection.local_server(tmp_path / "profile", tmp_path)
    assert server.command == ["/venv/python", "-m", "server", "serve"] and server.outlive
    assert server.log_path == tmp_path / "profile" / "paintbridge-server.log"


# --- installer -------------------------------------------------------------------------------------------------------


def test_installer_makes_a_self_contained_plugin_folder(tmp_path):
    plugins = tmp_path / "plug-ins"
    dest = install(plugins, ["/opt/pb/python", "-m", "server", "serve"])
    assert dest == plugins / "paintbridge"
    entry = dest / "paintbridge.py"
    assert entry.stat().st_mode & stat.S_IXUSR
    assert (dest / "gimp_plugin" / "procedures.py").exists() and (dest / "protocol" / "client.py").exists()
    assert not list(dest.rglob("*.so")), "vendored packages must be pure Python"
    assert read_server_command(dest) == ["/opt/pb/python", "-m", "server", "serve"]
    assert (dest / "client" / "jobs.py").exists() and not (dest / "install.json").exists()
    # The vendored copies import on their own, without this venv's site-packages.
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1] + '/vendor', sys.argv[1]]; "
        "import msgpack, websockets.sync.client, protocol.client, client.connect, gimp_plugin.values; "
        "assert all(m.__file__.startswith(sys.argv[1]) for m in (msgpack, websockets, protocol, client)); "
        "print(msgpack.unpackb(msgpack.packb({'a': b'x'})))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(dest)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # A second install replaces the first and leaves nothing behind.
    (dest / "stale.txt").write_text("old")
    assert install(plugins) == dest and not (dest / "stale.txt").exists()
    assert sorted(p.name for p in plugins.iterdir()) == ["paintbridge"]
    assert read_server_command(dest) is None and not (dest / "server.json").exists()


# --- dialogs ---------------------------------------------------------------------------------------------------------


def flat(section) -> list:
    """Every argument name of a dialog section, folded sections included."""
    return [n for m in section[2] for n in ([m] if isinstance(m, str) else flat(m))]


def test_dialog_layout_and_models_hint():
    from gimp_plugin.dialog import layout, models_hint

    top, sections = layout(arguments.BY_MODE["inpaint"])
    assert top == ["prompt", "style", "strength", "model"], "the dialog opens on the painter's loop"
    assert [sid for sid, _title, _members in sections] == [
        "negative",
        "loras",
        "sampling",
        "model-parts",
        "area",
        "hires",
        "detail",
        "controls",
        "references",
        "names",
        "server",
        "regions",
    ]
    for spec in arguments.PROCEDURES:  # every job dialog: prompt and style first, the rest folded by theme
        opened, _sections = layout(spec)
        assert len(opened) <= 8, (spec.name, opened)
        # decompose takes no style: a style names a checkpoint, and only a layered model splits pictures
        wanted = {"prompt", "model"} | ({"style"} if spec.mode != "decompose" else set())
        assert spec.mode == "preprocess" or wanted <= set(opened), (spec.name, opened)
    placed = top + [name for section in sections for name in flat(section)]
    assert sorted(placed) == sorted(arg.name for arg in arguments.BY_MODE["inpaint"].args)
    models = [
        {"name": "classical", "kind": "builtin"},
        {"name": "tiny-sd15", "kind": "checkpoint"},
        {"name": "4x-tiny", "kind": "upscaler"},
    ]
    assert models_hint(models, "inpaint", "ws://h:1") == "Checkpoints: tiny-sd15 · built-in: classical"
    assert models_hint(models, "upscale", "ws://h:1") == "Upscalers: 4x-tiny · Checkpoints: tiny-sd15"
    assert "not answering" in models_hint(None, "img2img", "ws://h:1")
    layered = [{"name": "split", "kind": "checkpoint", "arch": "qwen-image-layered", "decompose": True}]
    assert models_hint(models + layered, "decompose", "ws://h:1") == "Models that split pictures into layers: split"
    assert models_hint(models, "decompose", "ws://h:1").startswith("No model that splits pictures into layers")


def test_fetch_models_for_the_dialog(start_server):
    server = start_server()
    models = connection.fetch_models(server.url, None)
    assert models is not None and models[0]["name"] == "classical"
    assert connection.fetch_models(f"ws://127.0.0.1:{free_port()}", None, timeout=0.5) is None
    listing = connection.fetch_listing(server.url, None)  # the choices: the models and the server's styles
    styles = {m["name"]: m for m in listing if m["kind"] == "style"}
    assert listing[: len(models)] == models and styles["sdxl-photo"]["arch"] == "sdxl", styles
    assert connection.fetch_listing(f"ws://127.0.0.1:{free_port()}", None, timeout=0.5) is None


def test_install_py_installs_both_plugins_and_records_them(tmp_path):
    """The path install.py takes for each editor found or given: pbsetup.plugins vendoring the venv's packages, and
    the install record listing what --uninstall removes."""
    script = (
        "import sys; from pathlib import Path; import install; from pbsetup import hosts; "
        "from pbsetup.record import Record; from pbsetup.system import System; "
        "r = Record(Path(sys.argv[1]) / 'record.json'); cmd = install.server_command(Path(sys.argv[2])); "
        "py = install.venv_python(Path(sys.argv[2])); "
        "install._install_plugin(hosts.HostTarget(hosts.GIMP, 'given', Path(sys.argv[1]) / 'plug-ins', None, 'test'), "
        "cmd, py, r); "
        "install._install_plugin(hosts.HostTarget(hosts.KRITA, 'given', Path(sys.argv[1]) / 'pykrita', "
        "Path(sys.argv[1]) / 'kritarc', 'test'), cmd, py, r); print(r.files, r.kritarcs)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(REPO / ".venv")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    gimp, krita = tmp_path / "plug-ins" / "paintbridge", tmp_path / "pykrita" / "paintbridge"
    for dest in (gimp, krita):
        assert (dest / "vendor" / "websockets").is_dir() and (dest / "protocol" / "geometry.py").exists()
        assert read_server_command(dest)[0] == str(REPO / ".venv" / "bin" / "python")
    assert str(gimp) in out.stdout and str(krita) in out.stdout and str(tmp_path / "kritarc") in out.stdout
    assert "enable_paintbridge=true" in (tmp_path / "kritarc").read_text()


@pytest.mark.parametrize("editor", ["gimp", "krita"])
def test_a_failed_install_leaves_the_old_plugin_working(tmp_path, monkeypatch, editor):
    """Both editors' plugins are assembled beside the target and swapped in: a failure half-way (here: vendoring)
    leaves the installed copy as it was and no half-built folder."""
    from pbsetup import plugins

    folder = tmp_path / editor
    install_one = {
        "gimp": lambda: plugins.install_gimp(folder, ["x"]),
        "krita": lambda: plugins.install_krita(folder, tmp_path / "kritarc", ["x"]),
    }[editor]
    dest = install_one()
    (dest / "marker.txt").write_text("the old copy")

    def broken(staging, python=None):
        (staging / "half.txt").write_text("")
        raise OSError("disk full")

    monkeypatch.setattr(plugins, "vendor_runtime", broken)
    with pytest.raises(OSError, match="disk full"):
        install_one()
    assert (dest / "marker.txt").read_text() == "the old copy" and not (dest / "half.txt").exists()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["paintbridge"]


# --- models: the model choice and Download Models ---------------------------------------------------------------------


def test_the_model_choice_lists_installed_checkpoints_between_default_and_classical():
    from gimp_plugin.choices import model_choices, model_name

    listing = [
        {"name": "classical", "kind": "builtin"},
        {"name": "DreamShaper_8", "kind": "checkpoint", "family": "sd15"},
        {"name": "inp", "kind": "checkpoint", "family": "sd15", "inpaint": True},
        {"name": "4x", "kind": "upscaler"},
    ]
    assert model_choices(listing) == (
        ("default", "Server's default"),
        ("DreamShaper_8", "DreamShaper_8 (sd15)"),
        ("inp", "inp (sd15, inpaint)"),
        ("classical", "Classical (OpenCV, no AI)"),
    )
    assert model_choices([]) == (("default", "Server's default"), ("classical", "Classical (OpenCV, no AI)"))
    assert model_name("default") == "" and model_name("classical") == "classical" and model_name("inp") == "inp"
    kontext = {"name": "flux1-kontext-dev", "kind": "checkpoint", "family": "flux-kontext", "edit": True}
    assert model_choices(listing + [kontext], "edit") == (
        ("default", "Server's default"),
        ("flux1-kontext-dev", "flux1-kontext-dev (flux-kontext)"),
    )
    assert len(model_choices(listing + [kontext], "inpaint")) == 5  # every other mode lists every checkpoint
    layered = {"name": "layered", "kind": "checkpoint", "family": "qwen-image-layered", "decompose": True}
    assert [n for n, _ in model_choices(listing + [layered], "decompose")] == ["default", "layered"]
    assert "layered" not in [n for n, _ in model_choices(listing + [layered], "inpaint")]  # it runs decompose only
    assert "layered" in [n for n, _ in model_choices(listing + [layered], "upscale")]  # the upscaler needs no model
    for spec in arguments.ALL_PROCEDURES:  # every model argument is such a choice, defaulting to the server's default
        for arg in spec.args:
            if arg.name == "model":
                assert arg.kind == "model" and arg.default == "default", spec.name
    assert settings_for("inpaint").model == "" and settings_for("inpaint", model="inp").model == "inp"


LISTING = [
    {"name": "classical", "kind": "builtin"},
    {"name": "sdxl-base", "kind": "checkpoint"},
    {"name": "vae-ft-mse", "kind": "vae"},
    {"name": "broken-vae", "kind": "vae", "problem": "truncated"},
    {"name": "sdxl-refiner", "kind": "refiner"},
    {"name": "4x-ultra", "kind": "upscaler"},
    {"name": "2x-tiny", "kind": "upscaler"},
    {"name": "a-lora", "kind": "lora"},
    {"name": "sdxl-photo", "kind": "style", "title": "Photo", "arch": "sdxl"},
]


def test_every_model_like_argument_is_a_choice_of_what_is_installed_with_a_free_text_override():
    from gimp_plugin.choices import listed_choices, listed_value

    assert listed_choices("vae", LISTING) == (("default", "Checkpoint's own"), ("vae-ft-mse", "vae-ft-mse"))
    assert listed_choices("refiner", LISTING) == (("none", "None"), ("sdxl-refiner", "sdxl-refiner"))
    assert listed_choices("upscaler", LISTING) == (
        ("lanczos", "Lanczos (no model)"),
        ("4x-ultra", "4x-ultra"),
        ("2x-tiny", "2x-tiny"),
    )
    assert [nick for nick, _ in listed_choices("hires-upscaler", LISTING)] == [
        "latent",
        "lanczos",
        "4x-ultra",
        "2x-tiny",
    ]
    assert [nick for nick, _ in listed_choices("model", LISTING)] == ["default", "sdxl-base", "classical"]
    assert listed_value("vae", "default") == "" and listed_value("refiner", "none") == ""
    assert listed_value("upscaler", "lanczos") == "" and listed_value("hires-upscaler", "lanczos") == "lanczos"
    assert listed_value("vae", "vae-ft-mse", "  my-own-vae ") == "my-own-vae"  # the override wins when set
    assert listed_choices("style", LISTING) == (
        ("auto", "Suggested for the model"),
        ("none", "No style"),
        ("sdxl-photo", "Photo (sdxl)"),
    )
    assert listed_value("style", "none") == "" and listed_value("style", "sdxl-photo") == "sdxl-photo"
    assert listed_value("style", "auto") == listed_value("style", "") == "<auto>"  # the default: the suggested one
    model_like = {"model", "vae", "refiner", "upscaler", "hires-upscaler", "style", "lora", "lora-2", "lora-3"}
    for spec in arguments.ALL_PROCEDURES:
        for arg in spec.args:
            if arg.name in model_like and not spec.styles:  # Styles… names the style it edits as text
                listing = "lora" if arg.name.startswith("lora") else arg.name
                assert arg.kind == "model" and arg.listing == listing, (spec.name, arg.name)
                assert arg.default in [nick for nick, _ in listed_choices(arg.listing, [])], (spec.name, arg.name)
                override = spec.arg(arg.name + "-name")
                assert override.kind == "string" and override.default == "", (spec.name, arg.name)
            assert arg.kind != "model" or arg.name in model_like, (spec.name, arg.name)
    s = settings_for("inpaint", vae="vae-ft-mse", refiner="sdxl-refiner", **{"hires-upscaler": "4x-ultra"})
    assert (s.vae, s.refiner, s.hires_upscaler) == ("vae-ft-mse", "sdxl-refiner", "4x-ultra")
    s = settings_for("inpaint")
    assert (s.vae, s.refiner, s.hires_upscaler, s.model) == ("", "", "latent", "")
    s = settings_for(
        "inpaint",
        vae="vae-ft-mse",
        **{"vae-name": "other-vae", "refiner-name": "r2", "hires-upscaler-name": "8x", "model-name": "unlisted"},
    )
    assert (s.vae, s.refiner, s.hires_upscaler, s.model) == ("other-vae", "r2", "8x", "unlisted")
    assert settings_for("inpaint", style="sdxl-photo").style == "sdxl-photo" and settings_for("edit").style == "<auto>"
    assert settings_for("inpaint", style="none").style == ""  # on defaults the server's suggestion, else none
    assert listed_choices("lora", LISTING) == (("none", "None"), ("a-lora", "a-lora"))
    picked = settings_for("inpaint", prompt="a cat", lora="a-lora", **{"lora-weight": 0.5, "lora-3-name": "detail x"})
    assert picked.prompt == "a cat <lora:a-lora:0.5> <lora:detail x:1>", "picked LoRAs travel as tags"
    typed = settings_for("img2img", prompt="a cat <LORA:a-lora:0.2>", lora="a-lora", **{"lora-2-weight": 0.0})
    assert typed.prompt == "a cat <LORA:a-lora:0.2>", "a tag typed into the prompt wins"
    assert settings_for("generate", prompt="a cat").prompt == "a cat"
    with pytest.raises(JobInputError, match="cannot travel"):
        settings_for("inpaint", prompt="x", **{"lora-name": "a:b"})
    assert settings_for("img2img", **{"style-name": "my style"}).style == "my style"
    up = settings_for("upscale", **{"upscaler-name": "4x-new"})
    assert up.upscaler == "4x-new" and settings_for("upscale").upscaler == ""  # lanczos


def test_a_reused_name_the_choice_does_not_offer_goes_to_the_override():
    from gimp_plugin.choices import listed_choices

    spec = arguments.BY_MODE["inpaint"]
    reused = values.values_from_settings(
        spec,
        Settings(
            mode="inpaint", model="gone-model", vae="vae-ft-mse", refiner="old-refiner", hires_upscaler="4x-ultra"
        ),
    )
    placed = values.place_unlisted(spec, reused, lambda arg: [n for n, _ in listed_choices(arg.listing, LISTING)])
    assert (placed["model"], placed["model-name"]) == ("default", "gone-model")
    assert (placed["vae"], placed["vae-name"]) == ("vae-ft-mse", "")  # offered: stays in the choice
    assert (placed["refiner"], placed["refiner-name"]) == ("none", "old-refiner")
    assert (placed["hires-upscaler"], placed["hires-upscaler-name"]) == ("4x-ultra", "")
    again = values.settings_from_values(spec, dict(spec.defaults(), **placed))
    assert (again.model, again.vae, again.refiner, again.hires_upscaler) == (
        "gone-model",
        "vae-ft-mse",
        "old-refiner",
        "4x-ultra",
    )


def test_the_model_choice_comes_from_the_server_else_from_the_recorded_listing(start_server, tmp_path):
    from gimp_plugin import choices, settings
    from gimp_plugin.connection import fetch_models

    server = start_server()
    profile = tmp_path / "profile"
    settings.remember(profile, server.url, None)
    assert [m["name"] for m in choices.installed_models(profile, fetch_models)] == ["classical"]
    assert [m["name"] for m in choices.recorded(profile)] == ["classical"]  # recorded for next time
    choices.record(profile, [{"name": "tiny", "kind": "checkpoint"}])
    settings.remember(profile, f"ws://127.0.0.1:{free_port()}", None)  # nobody answers there
    assert choices.installed_models(profile, fetch_models) == [{"name": "tiny", "kind": "checkpoint"}]


def test_download_models_arguments_and_texts():
    from client.downloads import presets_from
    from gimp_plugin import download

    assert download.names_of(" sd15, upscaler  annotators ") == ["sd15", "upscaler", "annotators"]
    with pytest.raises(JobInputError, match="at least one preset"):
        download.names_of("  ")
    assert download.scope_of("all") == ("", "") and download.scope_of("inpaint") == ("inpaint", "")
    assert download.scope_of("control-canny") == ("", "canny")
    assert {nick for nick, _label in argchoices.FOR_CHOICES} >= {"all", "upscale", "control-depth"}
    statuses = presets_from(
        [
            {
                "name": "upscaler",
                "files": [
                    {
                        "id": "u",
                        "target": "upscale_models/u.pth",
                        "size": 67_000_000,
                        "installed": False,
                        "modes": ["upscale"],
                    }
                ],
            }
        ]
    )
    assert download.status_text(statuses, "upscale", "ws://h:1") == (
        "upscaler: lacks 1 file(s) for upscale, about 67.0 MB: u.pth\n"
        "Models for upscale: none installed; download the preset 'upscaler' (67.0 MB)"
    )
    assert "not answering" in download.status_text(None, "all", "ws://h:1")
    assert arguments.BY_NAME[procedures_tools.DOWNLOAD.name].download


def test_a_changed_listing_makes_gimp_register_the_plug_in_again(tmp_path):
    import os

    from gimp_plugin import choices

    entry = tmp_path / "paintbridge.py"
    entry.write_text("")
    os.utime(entry, (1_000_000, 1_000_000))
    profile = tmp_path / "profile"
    listing = [{"name": "classical", "kind": "builtin"}, {"name": "tiny", "kind": "checkpoint"}]
    assert choices.record(profile, listing, entry) is True  # a new checkpoint: the entry file is touched
    assert entry.stat().st_mtime > 1_000_000
    os.utime(entry, (1_000_000, 1_000_000))
    assert choices.record(profile, list(reversed(listing)), entry) is False  # the same checkpoints: left alone
    assert entry.stat().st_mtime == 1_000_000
    assert choices.recorded(profile) == [
        {"name": "tiny", "kind": "checkpoint"},
        {"name": "classical", "kind": "builtin"},
    ]


def test_region_arguments_bind_or_remove_a_prompt():
    """regions (issue 15): the procedures that paint take the region arguments; a layer with a prompt is a binding,
    with an empty prompt a removal, none leaves the image's regions as they are."""
    from client.docdata import DocumentDataError
    from client.regions import binding_from_bytes, binding_to_bytes
    from gimp_plugin.values import region_binding

    for mode in ("inpaint", "img2img", "outpaint", "generate"):
        assert set(args_inputs.REGION_ARGS) <= {a.name for a in arguments.BY_MODE[mode].args}, mode
    assert not set(args_inputs.REGION_ARGS) & {a.name for a in arguments.BY_MODE["upscale"].args}
    assert region_binding({"region-layer": None, "region-prompt": "car"}) is None
    item, binding = region_binding({"region-layer": "L", "region-prompt": " a car ", "region-negative-prompt": "x"})
    assert item == "L" and (binding.prompt, binding.negative_prompt) == ("a car", "x")
    assert region_binding({"region-layer": "L", "region-prompt": ""}) == ("L", None)
    assert binding_from_bytes(binding_to_bytes(binding), "L") == binding.__class__("L", "a car", "x", 1.0)
    assert binding_from_bytes(b"") is None
    with pytest.raises(DocumentDataError, match="region prompt kept on layer 'L' is damaged"):
        binding_from_bytes(b"junk", "L")


# fills (issue 13)
def test_inpaint_and_outpaint_offer_every_fill_and_the_colour_match():
    from protocol.messages import INPAINT_FILLS

    for mode in ("inpaint", "outpaint"):
        args = {a.name: a for a in arguments.BY_MODE[mode].args}
        assert args["fill"].default == "patch" and [n for n, _ in args["fill"].choices] == [
            "patch",
            "telea",
            "ns",
            "lama",
        ]
        assert set(n for n, _ in args["fill"].choices) == set(INPAINT_FILLS)
        assert args["color-match"].kind == "boolean" and args["color-match"].default is False
    s = values.settings_from_values(
        arguments.BY_MODE["inpaint"],
        dict(arguments.BY_MODE["inpaint"].defaults(), **{"fill": "lama", "color-match": True}),
    )
    assert s.fill == "lama" and s.color_match is True


def test_seamless_texture_is_an_argument_of_generate_img2img_and_upscale_only():
    having = sorted(spec.mode for spec in arguments.PROCEDURES if any(a.name == "tileable" for a in spec.args))
    assert having == ["generate", "img2img", "upscale"]
    for mode in having:
        spec = arguments.BY_MODE[mode]
        assert spec.arg("tileable").kind == "boolean" and spec.arg("tileable").default is False
        s = values.settings_from_values(spec, dict(spec.defaults(), tileable=True))
        assert s.tileable is True and values.values_from_settings(spec, s)["tileable"] is True
    box = Box(0, 0, 32, 16)
    s = settings_for("generate", prompt="moss", model="classical", tileable=True)
    msg = parse_client_message(
        build_job(s, JobInputs(box, rgba(box), "rgba8", None, ()), job_id="t").to_wire(), Limits()
    )
    assert msg.params.tileable is True


# --- reference images (issue 15): slots on every procedure whose mode takes controls --------------------------------

REFERENCE_KEYS = ("layer", "type", "strength", "start", "end", "region")


def test_every_procedure_whose_mode_takes_controls_has_four_reference_slots():
    from client.modes import rule

    assert args_inputs.MAX_REFERENCES >= 4
    for spec in arguments.PROCEDURES:
        names = {a.name for a in spec.args}
        slots = [args_inputs.reference_prefix(i) for i in range(1, args_inputs.MAX_REFERENCES + 1)]
        wanted = {f"{p}-{k}" for p in slots for k in REFERENCE_KEYS}
        if rule(spec.mode).controls:
            assert wanted <= names, spec.name
            for p in slots:  # GIMP's arguments are fixed: each slot is off ("none") until a layer is picked
                assert spec.arg(f"{p}-layer").default is None and spec.arg(f"{p}-region").default is None
                assert spec.arg(f"{p}-region").kind == "drawable"  # a layer or a channel
                assert (spec.arg(f"{p}-start").default, spec.arg(f"{p}-end").default) == (0.0, 1.0)
        else:
            assert not any(n.startswith("reference") for n in names), spec.name
    assert "reference-4-region" in {a.name for a in arguments.BY_NAME[argspec.PREFIX + "outpaint"].args}
    assert "reference-4-layer" in {a.name for a in arguments.BY_NAME[argspec.PREFIX + "live-inpaint"].args}


def test_reference_arguments_become_the_settings_references_by_stable_id():
    from client.settings import ReferenceSetting

    ids = {"photo": "17", "face": "23", "sky": "31"}
    s = values.settings_from_values(
        arguments.BY_MODE["outpaint"],
        values_for(
            "outpaint",
            **{
                "reference-layer": "photo",
                "reference-type": "style",
                "reference-strength": 1.5,
                "reference-start": 0.2,
                "reference-end": 0.8,
                "reference-region": "sky",
                "reference-3-layer": "face",
                "reference-3-type": "face",
                "reference-4-layer": "photo",
                "reference-4-region": None,
            },
        ),
        ids.__getitem__,
    )
    assert s.references == (
        ReferenceSetting("17", "style", 1.5, 0.2, 0.8, region="31"),
        ReferenceSetting("23", "face", 1.0, 0.0, 1.0, region=""),
        ReferenceSetting("17", "content", 1.0, 0.0, 1.0, region=""),
    )
    assert settings_for("generate").references == ()  # no layer picked: no reference
    with pytest.raises(JobInputError, match="Reference 2: 'from' \\(0.7\\) is after 'until' \\(0.3\\)"):
        settings_for("img2img", **{"reference-2-layer": "photo", "reference-2-start": 0.7, "reference-2-end": 0.3})


def test_four_gimp_reference_slots_reach_the_job_and_a_region_masks_its_reference():
    """Procedure values → settings → the client core's reference_sources/capture/build_job: every slot arrives in
    order with its step range; the one bound to a region carries that region layer's opacity as its mask."""
    from client.jobs import capture, reference_sources
    from client.regions import opacity
    from client.settings import Defaults
    from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
    from protocol.images import RGBA8

    w, h = 96, 64
    region = bytearray(w * h * 4)
    for i in range(w * h):
        region[i * 4 : i * 4 + 4] = bytes((9, 9, 9, 255 if i % w < w // 2 else 0))
    doc = MemoryDocument(
        w,
        h,
        gradient(w, h),
        ellipse_mask(w, h, 48, 32, 20, 14, soft=6),
        {"photo": gradient(w, h)[::-1], "region": bytes(region)},
    )
    vals = values_for(
        "inpaint", prompt="x", **{f"{args_inputs.reference_prefix(i)}-layer": "photo" for i in range(1, 5)}
    )
    vals.update({"reference-2-region": "region", "reference-3-type": "style", "reference-4-start": 0.5})
    s = values.settings_from_values(arguments.BY_MODE["inpaint"], vals, lambda item: f"id-{item}")
    sources = reference_sources(
        s,
        lambda ident: ident[3:] if ident[3:] in doc.layers else None,
        lambda ident: ident[3:] if ident[3:] in doc.layers else None,
    )
    reader = Reader(doc, RGBA8)
    inputs = capture(s, doc.selection_bounds(), w, h, reader, (), sources)
    job = build_job(s, inputs, Defaults(), None, job_id="refs")
    assert [(r.type, r.start, r.mask is not None) for r in job.references] == [
        ("content", 0.0, False),
        ("content", 0.0, True),
        ("style", 0.0, False),
        ("content", 0.5, False),
    ]
    box = inputs.box
    assert job.references[1].mask.data == opacity(reader.read_layer("region", box), RGBA8)
    assert {0, 255} == set(job.references[1].mask.data)
    parse_client_message(job.to_wire(), Limits())  # the server's validation takes it


def test_dialog_places_every_reference_and_control_argument_in_its_section():
    from gimp_plugin.dialog import layout

    for mode in ("outpaint", "generate"):
        spec = arguments.BY_MODE[mode]
        top, sections = layout(spec)
        by_id = {section[0]: section for section in sections}
        assert len(flat(by_id["references"])) == 6 * args_inputs.MAX_REFERENCES
        assert len(flat(by_id["controls"])) == 6 * MAX_CONTROLS
        assert not any(name.startswith(("reference", "control")) for name in top)
        # the first slot open in its section, every further slot folded in its own expander
        controls = by_id["controls"][2]
        assert controls[:6] == tuple(
            f"control-{k}" for k in ("layer", "type", "strength", "start", "end", "preprocess")
        )
        assert [(sid, title) for sid, title, _m in controls[6:]] == [
            (f"control-{i}", f"Control layer {i}") for i in range(2, 9)
        ]


def test_speed_is_a_choice_in_the_sampling_fold_greyed_out_where_the_model_cannot_run_it():
    from gimp_plugin.dialog import layout
    from gimp_plugin.offered import sensitivity
    from protocol.messages import Welcome

    having = sorted(spec.name for spec in arguments.PROCEDURES if any(a.name == "speed" for a in spec.args))
    assert having == sorted(
        arguments.PREFIX + n for n in ("inpaint", "live-inpaint", "img2img", "outpaint", "generate")
    ), having
    spec = arguments.BY_MODE["inpaint"]
    arg = spec.arg("speed")
    assert (
        arg.kind == "choice"
        and arg.default == "style"
        and arg.choices
        == (
            ("style", "Style's choice"),
            ("quality", "Quality"),
            ("fast", "Fast"),
        )
    )
    _top, sections = layout(spec)
    assert "speed" in dict((sid, members) for sid, _title, members in sections)["sampling"]
    s = values.settings_from_values(spec, dict(spec.defaults(), speed="fast"))
    assert s.speed == "fast" and values.values_from_settings(spec, s)["speed"] == "fast"
    assert values.settings_from_values(spec, spec.defaults()).speed == "", "the style's level"
    s_quality = values.settings_from_values(spec, dict(spec.defaults(), speed="quality"))
    assert s_quality.speed == "quality" and values.values_from_settings(spec, s_quality)["speed"] == "quality"
    assert values.values_from_settings(spec, s.replace(speed=""))["speed"] == "style"
    with pytest.raises(JobInputError, match="Unknown speed 'turbo'"):
        values.settings_from_values(spec, dict(spec.defaults(), speed="turbo"))
    box = Box(0, 0, 32, 16)
    job = build_job(s.replace(model="m"), JobInputs(box, rgba(box), "rgba8", bytes([255]) * 512, ()), job_id="s")
    assert parse_client_message(job.to_wire(), Limits()).params.speed == "fast"
    for chosen, sent in (("quality", "quality"), ("style", "")):  # Quality is explicit, the style's is left unset
        picked = values.settings_from_values(spec, dict(spec.defaults(), speed=chosen)).replace(model="m")
        job = build_job(picked, JobInputs(box, rgba(box), "rgba8", bytes([255]) * 512, ()), job_id="s")
        assert parse_client_message(job.to_wire(), Limits()).params.speed == sent, chosen
    welcome = Welcome(
        protocol="1.1",
        server_version="x",
        capabilities={
            "families": {
                "sd15": {"modes": ["inpaint"], "speed_levels": ["quality", "fast"]},
                "flux": {"modes": ["inpaint"], "speed_levels": ["quality"]},
            }
        },
        models=(
            {"name": "m", "kind": "checkpoint", "arch": "sd15"},
            {"name": "f", "kind": "checkpoint", "arch": "flux"},
        ),
    )
    nicks = {"speed": ["style", "quality", "fast"]}
    assert sensitivity(spec, welcome, "m", nicks)["speed"] == {"style": True, "quality": True, "fast": True}
    assert sensitivity(spec, welcome, "f", nicks)["speed"] == {"style": True, "quality": True, "fast": False}
    assert sensitivity(spec, welcome, "classical", nicks)["speed"] == {"style": True, "quality": True, "fast": False}
