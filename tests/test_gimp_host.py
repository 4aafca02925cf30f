"""The GIMP 3 plug-in in a real GIMP 3.0 (Debian 13 root folder): every procedure driven through the PDB in
NONINTERACTIVE batch runs against the real server on loopback, and one GUI run under Xvfb (dialog, Return, undo).

Each test asserts the outcome of a named check of ``tests/hosts/gimp_checks.py`` that GIMP ran (a check raises on its
first failed condition and its traceback comes back by name); checks that need nothing from this side in between run
several to one GIMP start (``hosts.gimp.run_checks``). The plug-in is installed with the project's installer
(``pbsetup.plugins.install_gimp``) into a throw-away GIMP profile.
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

# made once per worker process under pytest -n (tests/conftest.py host_groups): they start no GIMP
WORKER_FIXTURES = ("trixie_root", "server", "profile", "sd15_server")

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


# What the tests on the tiny SD1.5 model need in its server's folder, together: the ControlNets they pick by name, the
# pose preprocessor's files, an IP-Adapter with its image encoder, a VAE file (face and hand detectors and LayerDiffuse
# files: ``sd15_server``).
SD15_MODELS = ("sd15", "cn-sd15-canny", "cn-sd15-openpose", "pose-annotators", "ipa-sd15-plus", "vae-file")


@pytest.fixture(scope="module")
def sd15_server(trixie_root, tmp_path_factory):
    """One real server over the tiny SD1.5 model with ``SD15_MODELS``, the tests' face and hand detectors and
    LayerDiffuse files of the published layouts, for the module's tests on that model (each worker loads the model
    once, not once per test)."""
    import tiny_layerdiffuse
    import tiny_palm
    import tiny_yunet
    from conftest import ServerProcess
    from factory import make_models_dir

    folder = tmp_path_factory.mktemp("gimp-sd15-server")
    models = make_models_dir(folder / "models", which=SD15_MODELS)
    tiny_yunet.write_detector(models / "detectors")
    tiny_palm.write_detector(models / "detectors")
    tiny_layerdiffuse.install(models, "sd15")
    proc = ServerProcess(["--models", str(models)], folder / "server.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def profile(trixie_root):
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        yield prof


def gimp_check(profile, name: str, timeout: float = 300, **params):
    """Call the check ``name`` of ``tests/hosts/gimp_checks.py`` in one gimp-console run of ``profile``; the run's
    ``ChecksRun`` (its output, each check's outcome), or a failure with the check's traceback."""
    from hosts.gimp import run_checks

    run = run_checks(profile, [(name, params)], timeout)
    run.assert_ok(name)
    return run


# Checks against the module's classical server that need nothing between them from this side: one GIMP start for all
# (each start costs seconds), in this order; each test below asserts its own check's outcome. The zlib-bomb check comes
# first: it measures the process's peak memory, which the other checks would raise.
CLASSICAL_CHECKS = (
    "an_xcf_whose_history_holds_zlib_bombs_opens_and_names_the_damaged_part",
    "inpaint_selection_keeps_everything_outside_the_soft_mask",
    "layer_mask_and_active_layer_as_inputs_and_gray_images",
    "outpaint_extends_the_canvas_and_moves_no_pixel",
    "a_seamless_upscale_keeps_a_texture_seamless",
    "upscale_into_a_new_image_or_a_new_layer",
    "control_layer_from_image",
    "failures_end_with_a_clear_message_and_an_untouched_image",
    "document_data_survives_saving_closing_and_reopening_the_xcf",
    "a_result_undone_survives_the_xcf_and_applies_again_with_the_same_pixels",
    "the_history_search_finds_a_result_by_a_word_of_its_prompt",
    "live_state_sees_one_pixel_under_the_selection_without_reading_pixels",
    "reuse_settings_refills_control_and_reference_slots_by_tattoo_after_reopening_the_xcf",
)


@pytest.fixture(scope="module")
def classical_run(profile, server):
    """``CLASSICAL_CHECKS`` in one gimp-console start of the module's profile, with the files they read written first:
    the run (``assert_ok(name)`` per check)."""
    import docbombs
    from hosts.gimp import run_checks
    from test_seamless import texture

    (profile.outside / "texture.raw").write_bytes(texture(40, 32, seed=4).tobytes())
    (profile.outside / "bomb-history.bin").write_bytes(docbombs.bomb_history()[0])
    params = {
        "url": server.url,
        "down_url": f"ws://127.0.0.1:{_free_port()}",
        "plugin_dir": profile.inner(profile.plugin_dir),
        "dir": profile.inside,
        "bomb": profile.inside + "/bomb-history.bin",
    }
    return run_checks(profile, [(name, params) for name in CLASSICAL_CHECKS], timeout=900)


def test_inpaint_selection_keeps_everything_outside_the_soft_mask(classical_run):
    classical_run.assert_ok("inpaint_selection_keeps_everything_outside_the_soft_mask")


def test_layer_mask_and_active_layer_as_inputs_and_gray_images(classical_run):
    classical_run.assert_ok("layer_mask_and_active_layer_as_inputs_and_gray_images")


def test_outpaint_extends_the_canvas_and_moves_no_pixel(classical_run):
    classical_run.assert_ok("outpaint_extends_the_canvas_and_moves_no_pixel")


def test_outpaint_travels_through_shared_memory_with_the_wire_paths_pixels(profile, server, trixie_root):
    """GIMP's plug-in and the server on one machine: with this machine's /dev/shm seen inside the GIMP root, the
    3 MB layer goes to the server as a file of the connection's shared folder and the result comes back as one (the
    server's log says so); without it the plug-in cannot see the folder and keeps to the wire, and the result layer is
    the same, byte for byte."""
    from hosts.trixie import shared_dev_shm

    digests, logs = {}, {}
    for shared in (True, False):
        before = server.log_path.read_text(errors="replace")
        name = f"digest-{shared}.txt"
        if shared:
            with shared_dev_shm(trixie_root) as mounted:
                if not mounted:
                    pytest.skip("cannot bind-mount /dev/shm into the GIMP root (needs root)")
                gimp_check(
                    profile,
                    "outpaint_travels_through_shared_memory_with_the_wire_paths_pixels",
                    url=server.url,
                    digest=f"{profile.inside}/{name}",
                )
        else:
            gimp_check(
                profile,
                "outpaint_travels_through_shared_memory_with_the_wire_paths_pixels",
                url=server.url,
                digest=f"{profile.inside}/{name}",
            )
        time.sleep(0.5)  # the server's log lines of the job
        logs[shared] = server.log_path.read_text(errors="replace")[len(before) :]
        digests[shared] = (profile.outside / name).read_text()
    assert "payload(s) read from shared memory" in logs[True] and "written to shared memory" in logs[True]
    assert "shared memory" not in logs[False]
    assert digests[True] == digests[False]


def test_a_seamless_upscale_keeps_a_texture_seamless(profile, classical_run):
    """GIMP's Upscale with *Seamless texture* on a texture that wraps: the result still wraps (the seam check of
    ``server.seamless``), and without the option it does not."""
    import numpy as np

    from server import seamless

    classical_run.assert_ok("a_seamless_upscale_keeps_a_texture_seamless")  # on test_seamless.texture(40, 32, seed=4)
    for tileable in (True, False):
        out = np.frombuffer((profile.outside / f"upscaled-{tileable}.raw").read_bytes(), np.uint8).reshape(80, 100, 4)
        report = seamless.seam_check(out[..., :3])
        assert (seamless.continuous(report, 0.1) is None) is tileable, (tileable, report)


def test_upscale_into_a_new_image_or_a_new_layer(classical_run):
    classical_run.assert_ok("upscale_into_a_new_image_or_a_new_layer")


def test_a_6000x4000_photo_is_outpainted_and_upscaled(profile, server):
    """A whole 24-megapixel document through the real plug-in: outpaint (the canvas grows, no pixel of the photo moves)
    and a 2x upscale into a new 12000x8000 image."""

    gimp_check(profile, "a_6000x4000_photo_is_outpainted_and_upscaled", url=server.url, timeout=900)


def test_control_layer_from_image(classical_run):
    classical_run.assert_ok("control_layer_from_image")


def test_failures_end_with_a_clear_message_and_an_untouched_image(classical_run):
    classical_run.assert_ok("failures_end_with_a_clear_message_and_an_untouched_image")
    result = classical_run
    # Gimp.message (a dialog in the GUI, the console in batch mode) says the same, and no traceback is printed
    assert "Paintbridge: Cannot reach the Paintbridge server" in result.output
    assert "Traceback" not in result.output


def test_a_connection_cut_mid_job_still_delivers_the_layer(profile, server):
    """The network drops once while the job runs (a proxy cuts the connection right after the server queued it): the
    plug-in reconnects with its session id, the server re-sends what it missed, and the layer arrives."""
    from cutproxy import CuttingProxy

    with CuttingProxy(server.port) as proxy:
        gimp_check(profile, "a_connection_cut_mid_job_still_delivers_the_layer", url=proxy.url)
        assert proxy.cuts == 1 and proxy.connections >= 2, (proxy.cuts, proxy.connections)
    assert "resumed with 1 open job(s)" in server.log_path.read_text()


def test_server_address_is_remembered_between_runs(profile, server):
    from hosts.gimp import gimp_profile

    with gimp_profile() as fresh:
        gimp_check(fresh, "server_address_is_remembered_between_runs", server=server.url)
        saved = json.loads((fresh.gimp_dir / "paintbridge.json").read_text())
        assert saved["server"] == server.url
        gimp_check(fresh, "server_address_is_remembered_between_runs", server="")  # empty = the remembered address


def test_tiny_diffusion_model_generate_batch_and_control_layer(sd15_server):
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        gimp_check(prof, "tiny_diffusion_model_generate_batch_and_control_layer", url=sd15_server.url, timeout=600)
        _generate_matches_the_client_core_job(prof, sd15_server.url)


def test_a_pose_layer_made_from_the_image_guides_img2img_and_its_edits_count(sd15_server):
    """*Control Layer from Image* with the pose preprocessor (the OpenPose files constructed by tests/tiny_pose.py,
    whose body model finds nobody: a black layer), that layer as img2img's pose control (a tiny pose ControlNet,
    found by its name), then the painter's green block on the pose layer changes what the same seed paints."""
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        gimp_check(
            prof,
            "a_pose_layer_made_from_the_image_guides_img2img_and_its_edits_count",
            url=sd15_server.url,
            timeout=600,
        )


def test_tiny_flux_model_generate_into_a_selection(trixie_root, tmp_path):
    """A Flux.1 model kept as ComfyUI users keep it (transformer in diffusion_models/, text encoders, VAE): generate
    into a selection from GIMP, the layer composited by the selection, nothing outside it changed. Then the same job
    with a reference layer in slot 1 runs through Flux Redux (a ComfyUI style_models/ file and SigLIP tower): same
    seed, other pixels."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile

    models = make_models_dir(tmp_path / "models", which=("flux-split", "redux-file"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            gimp_check(prof, "tiny_flux_model_generate_into_a_selection", url=proc.url, timeout=600)
    finally:
        proc.stop()


def test_instruction_edit_on_a_tiny_kontext_model(trixie_root, tmp_path):
    """Filters > Paintbridge > Edit Selection from Instruction: its model choice lists only models whose listing says
    they can edit (a tiny Flux.1 Kontext, not the tiny Flux.1 dev beside it); the server's default (dev) is refused
    before anything is sent; the edit of an ellipse comes back as one layer composited by the selection."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from gimp_plugin import settings as gimp_settings
    from hosts.gimp import gimp_profile

    models = make_models_dir(tmp_path / "models", which=("flux", "flux-kontext"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            gimp_settings.remember(prof.gimp_dir, proc.url, None)  # GIMP registers the choices from this server
            gimp_check(prof, "instruction_edit_on_a_tiny_kontext_model", url=proc.url, timeout=600)
    finally:
        proc.stop()


def test_decompose_on_a_tiny_layered_model_arrives_as_a_layer_group(trixie_root, tmp_path):
    """Filters > Paintbridge > Split into Layers: its model choice lists only models that decompose (a tiny
    Qwen-Image-Layered, not the tiny Qwen-Image beside it), which is refused by name before anything is sent; the
    selection comes back as a layer group right above the active layer holding the layers, named, bottom one last in
    GIMP's list, each with the model's alpha."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from gimp_plugin import settings as gimp_settings
    from hosts.gimp import gimp_profile

    models = make_models_dir(tmp_path / "models", which=("qwen", "qwen-layered"))
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            gimp_settings.remember(prof.gimp_dir, proc.url, None)  # GIMP registers the choices from this server
            gimp_check(
                prof, "decompose_arrives_as_a_layer_group_with_names_in_order_and_alpha", url=proc.url, timeout=600
            )
    finally:
        proc.stop()


def _generate_matches_the_client_core_job(prof, url: str) -> None:
    """Generate into a soft ellipse in GIMP gives exactly the layer the client core's own job gives for the same
    pixels and selection (the Krita host test checks its side against the same core path)."""
    from client import connect, jobs, settings as cs
    from clientdoc import MemoryDocument, Reader

    gimp_check(prof, "generate_into_a_soft_ellipse", timeout=600, url=url, dir=prof.inside)
    out = prof.outside
    doc = MemoryDocument(96, 72, (out / "image.rgba").read_bytes(), (out / "selection.gray").read_bytes())
    s = cs.Settings(mode="generate", prompt="a tiny house", seed=77, steps=2)
    inputs = jobs.capture(s, doc.selection_bounds(), 96, 72, Reader(doc, "rgba8"))
    client = connect.open_client(url, None, "test", "0")
    try:
        welcome = client.welcome
        job = jobs.build_job(
            s,
            inputs,
            cs.Defaults.from_welcome(welcome),
            cs.model_entry(welcome.models, ""),
            job_id=connect.new_job_id("core"),
        )
        (layer,), _params = connect.run_job(client, job)
    finally:
        client.close()
    x, y, w, h = map(int, (out / "layer.box").read_text().split())
    assert (layer.x, layer.y, layer.width, layer.height) == (x, y, w, h)
    assert any(0 < a < 255 for a in layer.data[3::4]), "the soft selection shapes the layer"
    assert layer.data == (out / "layer.rgba").read_bytes(), "GIMP's layer is the client core job's layer"


def test_generate_into_the_shared_ellipse_and_upscale_its_box(trixie_root, tmp_path_factory):
    """GIMP's side of the comparison with Krita (tests/ellipse_case.py, compared at the end of test_krita_host.py):
    the soft selection shapes the generated layer, the upscale is the selection's box at twice its size."""
    import numpy as np

    import ellipse_case
    from crosshost import gimp_pixels

    got = gimp_pixels(tmp_path_factory)
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


def test_gui_inpaint_dialog_runs_with_return_and_undoes_in_one_step(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start("gui_inpaint_dialog", {"url": server.url, "dir": profile.inside})
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


def test_gui_live_inpaint_reruns_on_selection_change_and_keeps_one_layer(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start(
            "gui_live_inpaint_on_a_changing_selection",
            {"url": server.url, "dir": profile.inside, "plugin_dir": profile.inner(profile.plugin_dir)},
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
            result = gimp_check(
                profile,
                "download_models_pulls_through_the_server_and_the_model_shows_up",
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


def test_reference_layers_guide_generate_and_missing_adapters_are_named(sd15_server):
    """Reference images (issue 15): the same seed with and without a reference layer (type style, strength 1.5) gives
    different pixels; a face reference without a face adapter fails with a message naming it, image untouched."""
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        gimp_check(
            prof, "reference_layers_guide_generate_and_missing_adapters_are_named", url=sd15_server.url, timeout=600
        )


def test_detail_faces_and_hands_procedure_and_hires_generate_on_a_portrait(sd15_server):
    """Hires fix and detailer on the tiny SD1.5 model: Filters > Paintbridge > Detail Faces on a portrait with a
    drawn face and hand (found by the tests' YuNet- and palm-detector-format networks, tests/tiny_yunet.py and
    tests/tiny_palm.py) repaints both in one job and only around them, its Find choice offering hands because the
    server (remembered in the profile) lists a hand detector; generate with the hires fix differs from one pass."""
    from PIL import Image

    import tiny_palm
    import tiny_yunet
    from gimp_plugin import settings as gimp_settings
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        photo = tiny_yunet.portrait()  # the face at 180,66 88x104
        tiny_palm.draw_hand(photo, 373, 352, 64)  # the hand found at 302,249 142x142
        Image.fromarray(photo).save(prof.outside / "portrait.png")
        gimp_settings.remember(prof.gimp_dir, sd15_server.url, None)  # the listing GIMP registers the choices from
        gimp_check(
            prof,
            "detail_faces_and_hands_procedure_and_hires_generate_on_a_portrait",
            url=sd15_server.url,
            photo=prof.inside + "/portrait.png",
            timeout=600,
        )


# --- history (issue 13): Paintbridge data and results kept inside the .xcf --------------------------------------------


def test_document_data_survives_saving_closing_and_reopening_the_xcf(classical_run):
    classical_run.assert_ok("document_data_survives_saving_closing_and_reopening_the_xcf")


# --- regions (issue 15): a prompt kept on a layer or channel, saved in the .xcf ---------------------------------------


def test_region_prompts_on_a_layer_and_a_channel_steer_inpaint_and_survive_the_xcf(sd15_server):
    """Bind a prompt to a layer (its alpha is the area) through the procedure's arguments, inpaint; save the .xcf,
    close, reopen: the layer still carries its region and the same job gives the same pixels; a channel works as a
    region too; with regions off the pixels differ. Outside the selection nothing changes."""
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        gimp_check(
            prof,
            "region_prompts_on_a_layer_and_a_channel_steer_inpaint_and_survive_the_xcf",
            url=sd15_server.url,
            plugin_dir=prof.inner(prof.plugin_dir),
            timeout=600,
        )


def test_a_result_undone_survives_the_xcf_and_applies_again_with_the_same_pixels(classical_run):
    classical_run.assert_ok("a_result_undone_survives_the_xcf_and_applies_again_with_the_same_pixels")


def test_the_history_search_finds_a_result_by_a_word_of_its_prompt(classical_run):
    classical_run.assert_ok("the_history_search_finds_a_result_by_a_word_of_its_prompt")


def test_an_xcf_whose_history_holds_zlib_bombs_opens_and_names_the_damaged_part(classical_run):
    """A thumbnail and a layer that would each inflate to 1 GiB (tests/docbombs.py) in the .xcf's history: the image
    opens, the history the History dialog shows has the good result and a note naming the damaged part, the reading
    process's peak memory hardly grows, and GIMP goes on (the good result applies again)."""
    classical_run.assert_ok("an_xcf_whose_history_holds_zlib_bombs_opens_and_names_the_damaged_part")  # runs first
    print(next(line for line in classical_run.output.splitlines() if line.startswith("peak memory growth")))


def test_gui_history_dialog_lists_results_and_applies_again(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start("gui_history_dialog_applies_again", {"url": server.url, "dir": profile.inside})
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


def test_gui_history_dialog_searches_by_a_word_of_the_prompt(profile, server, artifacts_dir):
    from hosts.gimp import GuiSession

    session = GuiSession(profile)
    try:
        session.start("gui_history_dialog_searches", {"url": server.url, "dir": profile.inside})
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


def test_gui_history_dialog_opens_on_an_image_whose_history_holds_zlib_bombs(profile, artifacts_dir):
    """The History dialog on an image with the bombs of ``docbombs`` opens (its note names the damaged part: the
    screenshot shows it; the batch test above checks the note's text), and closes normally."""
    import docbombs
    from hosts.gimp import GuiSession

    (profile.outside / "bomb-packed.bin").write_bytes(docbombs.packed_bomb_history())
    session = GuiSession(profile)
    try:
        session.start(
            "gui_history_dialog_on_zlib_bombs", {"bomb": profile.inside + "/bomb-packed.bin", "dir": profile.inside}
        )
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


def test_sampler_schedule_batch_count_vae_and_clip_skip_as_procedure_arguments(sd15_server):
    """Generate from GIMP with a sampler and a schedule chosen apart, a batch count, a VAE and CLIP skip: one layer
    per image with its seed, each exactly the server's own image for those parameters; an impossible pair is refused
    naming both. In the same GIMP start, ``speed`` ``fast``: the result's ``info.speed`` says fast."""
    from hosts.gimp import gimp_profile, run_checks
    from protocol.client import Client

    proc = sd15_server
    with gimp_profile() as prof:
        names = (
            "sampler_schedule_batch_count_vae_and_clip_skip_as_procedure_arguments",
            "speed_fast_as_a_procedure_argument",
        )
        run = run_checks(
            prof,
            [
                (name, {"url": proc.url, "dir": prof.inside, "plugin_dir": prof.inner(prof.plugin_dir)})
                for name in names
            ],
            600,
        )
        for name in names:
            run.assert_ok(name)
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
    from hosts.gimp import gimp_profile

    models = make_models_dir(tmp_path / "models", which=("sd15", "ipa-sd15-plus"))
    with recording_server(models) as (thread, router), gimp_profile() as prof:
        gimp_check(
            prof,
            "outpaint_sends_four_references_and_a_regions_opacity_masks_its_reference",
            timeout=600,
            url=thread.url,
            plugin_dir=prof.inner(prof.plugin_dir),
            size=[REF_W, REF_H],
            colours=REF_COLOURS,
        )
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
def live_dialog(prof, check: str, params: dict, failure_shot: Path):
    """GIMP under Xvfb calling the check ``check``, which opens Live Inpaint: yields (session, dialog) with the dialog moved
    off the canvas; on the way out Escape closes the dialog and the script's "verified" marker is awaited. A failure
    leaves a screenshot at ``failure_shot``."""
    from hosts.gimp import GuiSession

    session = GuiSession(prof)
    try:
        session.start(check, params)
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
            "gui_live_inpaint_with_a_reference",
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


def test_live_state_sees_one_pixel_under_the_selection_without_reading_pixels(classical_run):
    """The live loop's change signal in a real GIMP: equal while nothing changes, different after a 1-px or 3x3
    write on the layers the frame reads (the source, a hidden control layer, the selection), the same after writes
    the frame would not see (the preview, outside the box, a hidden unused layer); never a full pixel read."""
    classical_run.assert_ok("live_state_sees_one_pixel_under_the_selection_without_reading_pixels")


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
            "gui_live_inpaint_under_a_brush",
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
        logged = {m.group(1): int(m.group(2)) for m in FRAME_LOG.finditer(session.log.read_text(errors="replace"))}
        assert first.id in logged and later.id in logged, f"each frame logs its reads: {logged}"
        assert logged[first.id] == 0 and logged[later.id] == 0, f"no full pixel read while idle: {logged}"


# --- reuse settings refills every slot ------------------------------------------------------------------------------


def test_reuse_settings_refills_control_and_reference_slots_by_tattoo_after_reopening_the_xcf(classical_run):
    """History's "Reuse settings" path in a real GIMP: the settings a job keeps (eight control slots, references
    and their regions by tattoo) fill a new procedure config with the same layers of the image, also after the .xcf
    was saved and opened again; a slot whose layer was deleted stays empty."""
    classical_run.assert_ok("reuse_settings_refills_control_and_reference_slots_by_tattoo_after_reopening_the_xcf")


def test_describe_fills_the_prompt_of_the_next_run_with_the_captioners_words(trixie_root, tmp_path):
    """Prompt from the picture: Filters › Paintbridge › Describe… on a tiny random BLIP returns the captioner's words
    for the selection's bounds (a sentence, or tags), keeps them, and the next run without a prompt of its own uses
    them (its history entry says so); a run with a prompt of its own leaves them waiting."""
    import numpy as np

    import tiny_blip
    from conftest import ServerProcess
    from hosts.gimp import gimp_profile
    from server.caption.tags import as_tags
    from test_caption import direct_caption

    models = tmp_path / "models"
    tiny_blip.install(models)
    proc = ServerProcess(["--models", str(models)], tmp_path / "server.log").start()
    try:
        with gimp_profile() as prof:
            gimp_check(
                prof,
                "describe_fills_the_prompt_of_the_next_run_with_the_captioners_words",
                url=proc.url,
                dir=prof.inside,
                timeout=300,
            )
            captions = json.loads((prof.outside / "captions.json").read_text())
            box = np.frombuffer((prof.outside / "box.bin").read_bytes(), np.uint8).reshape(30, 40, 4)
    finally:
        proc.stop()
    sentence = direct_caption(tiny_blip.captioner_folder(), np.ascontiguousarray(box))
    assert captions == {"sentence": sentence, "tags": as_tags(sentence)}


def test_generate_with_a_transparent_layer_arrives_with_the_decoders_alpha(sd15_server):
    """Transparent layers: Generate into Selection with 'Transparent layer' on a tiny SD1.5 model with LayerDiffuse
    files of the published layouts; the new layer's alpha is the decoder's inside the selection, 0 outside; Img2img of
    that layer (Source: active layer) brings real alpha back."""
    from hosts.gimp import gimp_profile

    with gimp_profile() as prof:
        gimp_check(
            prof, "generate_with_a_transparent_layer_arrives_with_the_decoders_alpha", url=sd15_server.url, timeout=600
        )


# Every job dialog on default settings, one after another; the test measures each window and closes it with Escape.
DIALOGS = (
    ("inpaint", "Paintbridge: Inpaint Selection"),
    ("live-inpaint", "Paintbridge: Live Inpaint"),
    ("img2img", "Paintbridge: Img2img"),
    ("outpaint", "Paintbridge: Outpaint"),
    ("generate", "Paintbridge: Generate into Selection"),
    ("detail", "Paintbridge: Detail Faces"),
    ("edit", "Paintbridge: Edit from Instruction"),
    ("decompose", "Paintbridge: Split into Layers"),
    ("upscale", "Paintbridge: Upscale"),
    ("control-layer", "Paintbridge: Control Layer"),
    ("describe", "Paintbridge: Describe"),
    ("download-models", "Paintbridge: Download Models"),
    ("styles", "Paintbridge: Styles"),  # a window of its own: closing it is no cancel
)
SCREEN = (1280, 800)  # an ordinary laptop screen


def test_gui_every_dialog_shows_its_ok_button_without_scrolling(profile, server, artifacts_dir):
    """Each dialog on default settings fits a 1280 x 800 screen: its window, whose bottom row holds OK, lies inside
    the screen (GIMP's procedure dialogs do not scroll: a taller window would put OK below the screen's edge)."""
    from hosts.gimp import GuiSession

    session = GuiSession(profile, screen=f"{SCREEN[0]}x{SCREEN[1]}x24")
    sizes = {}
    try:
        session.start(
            "gui_every_dialog_on_default_settings",
            {"url": server.url, "dir": profile.inside, "names": [n for n, _ in DIALOGS]},
        )
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


def test_a_style_saved_from_krita_is_listed_and_used_in_gimp_after_a_server_restart(trixie_root, tmp_path):
    """A style saved as Krita saves it (the client core's protocol client, named as the Krita plug-in) on one server
    survives the server's restart, is listed in GIMP's Style choice and changes GIMP's result at the same seed."""
    from conftest import ServerProcess
    from factory import make_models_dir
    from hosts.gimp import gimp_profile, run_check
    from protocol.client import Client
    from protocol.styles import Style, StyleLora

    from gimp_plugin import settings

    models = make_models_dir(tmp_path / "models", which=("sd15", "lora-sd15"))
    styles = tmp_path / "styles"
    server = ServerProcess(["--models", str(models), "--styles", str(styles)], tmp_path / "server.log").start()
    try:
        look = Style(
            name="krita-look",
            title="Krita look",
            family="sd15",
            checkpoints=("tiny-sd15",),
            loras=(StyleLora(name="tiny-lora-sd15", weight=0.8),),
            steps=3,
            prompt="{prompt}, oil painting",
        )
        with Client(server.url, client_name="paintbridge-krita") as krita:
            assert "krita-look" in [s.name for s in krita.save_style(look).styles]
        server.restart()
        with gimp_profile() as prof:
            settings.remember(prof.gimp_dir, server.url, None)  # GIMP registers its choices from this server
            run_check(prof, "a_style_saved_from_krita_is_listed_and_used", timeout=600, url=server.url)
    finally:
        server.stop()
    assert (styles / "krita-look.json").is_file(), "kept in the server's styles folder"


def test_styles_procedure_makes_duplicates_renames_and_deletes_styles(trixie_root, profile, tmp_path):
    """Filters > Paintbridge > Styles from a script: new, duplicate, rename and delete on the server's styles folder;
    shipped styles are duplicated, never renamed; every refusal is named."""
    from conftest import ServerProcess

    models, styles = tmp_path / "models", tmp_path / "styles"
    models.mkdir()
    server = ServerProcess(["--models", str(models), "--styles", str(styles)], tmp_path / "server.log").start()
    try:
        gimp_check(profile, "styles_procedure_makes_duplicates_renames_and_deletes_styles", url=server.url)
    finally:
        server.stop()
    assert sorted(p.name for p in styles.glob("*.json")) == ["photo 2.json"]


@pytest.mark.parametrize(
    "inpainting, method", [(False, "controlnet"), (True, "checkpoint")], ids=["controlnet", "inpainting-checkpoint"]
)
def test_on_the_pulled_starter_set_gimp_inpaints_with_the_automatic_method(
    trixie_root, profile, tmp_path, inpainting, method
):
    """Inpaint Selection on default arguments against a server whose models folder got the SD1.5 starter set's
    stand-ins (checkpoint, inpaint ControlNet, LCM LoRA; and its inpainting checkpoint) by a pull from the stand-in
    hub: the result's info (kept in the image's history) says the inpaint ControlNet ran on a pre-filled hole (the
    inpainting checkpoint once it is pulled), and its pixels differ from the same job, recorded on its way to the
    server, replayed on the plain path at the same seed."""
    import numpy as np
    from tests import starterstandins
    from tests.starterstandins import automatic_inpaint

    pulled = starterstandins.STARTER + (("dreamshaper-8-inpainting",) if inpainting else ())
    with starterstandins.pulled_server(tmp_path, pulled) as (server, proxy):
        gimp_check(
            profile,
            "inpaint_on_default_settings_keeps_the_servers_info",
            timeout=600,
            url=proxy.url,
            plugin_dir=profile.inner(profile.plugin_dir),
            dir=profile.inside,
        )
        (job,) = [j for j in proxy.jobs if j.get("mode") == "inpaint"]
        plain_info, plain = starterstandins.replay(server.url, job, "plain-inpaint", {"inpaint_method": "plain"})
    assert job["params"].get("inpaint_method", "auto") == "auto" and not job.get("style"), job["params"]
    out = json.loads((profile.outside / "good-inpaint.json").read_text())
    info = out["info"]["inpaint"]
    assert automatic_inpaint(info) and info["method"] == method, out["info"]
    if inpainting:
        assert out["info"]["model"] == info["model"] == "DreamShaper_8_INPAINTING.inpainting", out["info"]
    else:
        assert out["info"]["controlnets"] == ["control_v11p_sd15_inpaint_fp16"]
    assert not automatic_inpaint(plain_info["inpaint"]) and plain_info["controlnets"] == []  # the check can fail
    x, y, w, h = out["box"]
    auto = np.frombuffer((profile.outside / "good-inpaint.raw").read_bytes(), np.uint8).reshape(h, w, 4)
    assert plain.shape == auto.shape
    hole = np.zeros((h, w), bool)
    hole[16 - y : 48 - y, 24 - x : 64 - x] = True  # the selection 24,16 40x32 inside the result's box
    assert np.abs(auto[hole][:, :3].astype(int) - plain[hole][:, :3].astype(int)).mean() > 1.0


def test_gui_live_inpaint_on_the_pulled_starter_set_runs_the_lcm_lora(trixie_root, tmp_path, artifacts_dir):
    """Live Inpaint on default arguments in a real GIMP under Xvfb against a server that pulled the SD1.5 starter
    set's stand-ins: the frame the server receives, replayed for its info, should run the LCM LoRA at its preset
    steps (as Krita's does)."""
    import time

    from hosts.gimp import gimp_profile
    from tests import starterstandins
    from tests.starterstandins import fewstep_live

    with starterstandins.pulled_server(tmp_path, starterstandins.STARTER) as (server, proxy):
        with (
            gimp_profile() as prof,
            live_dialog(
                prof,
                "gui_live_inpaint_on_default_settings",
                {"url": proxy.url, "dir": prof.inside},
                artifacts_dir / "gimp-live-defaults-failure.png",
            ),
        ):
            deadline = time.monotonic() + 120
            while not any(j.get("live") for j in proxy.jobs) and time.monotonic() < deadline:
                time.sleep(0.2)
        frames = [j for j in proxy.jobs if j.get("live")]
        assert frames, "the dialog sent a live frame"
        info, _pixels = starterstandins.replay(server.url, frames[-1], "replayed-live")
    assert fewstep_live(info), (frames[-1].get("style"), {k: info.get(k) for k in ("steps", "sampler", "loras")})
