"""Offer only what can run: ``client.offers.offers(welcome, model)`` against a real server with every tiny family.

For every tiny family and every mode it runs, each option an editor offers for that model (control types,
preprocessors, detailer targets, techniques, sampling options, speed levels, regions, reference types, transparency,
seamless textures, LoRAs) is built into a job by the client core, as the editors build them, and sent to the server:
none is refused as ``unsupported``. And what the server refuses for a family is not offered for it: every installed
LoRA a model is not offered is refused on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from client.jobs import ControlSource, ReferenceSource, RegionSource, build_job, capture
from client.offers import CLASSICAL, checkpoint_entry, offers
from client.settings import Settings
from clientdoc import MemoryDocument, Reader, ellipse_mask, gradient
import protocol
from protocol.client import Client, JobFailed
from protocol.images import RGBA8

MODELS = (
    "sd15",
    "sdxl",
    "flux",
    "flux-fill",
    "flux-kontext",
    "sd3",
    "sdxl-refiner",
    "vae-file",
    "cn-sd15-canny",
    "cn-sdxl-union",
    "cn-flux-canny",
    "cn-sd3-canny",
    "lora-sd15",
    "lora-sdxl",
    "lora-flux",  # Flux.1's: Fill, Kontext and Chroma take it too
    "ipa-sd15-plus",
    "redux-file",
    "klein",
    "lora-klein",
    "zimage",
    "lora-zimage",
    "zimage-controlnet",  # its union ControlNet (one file)
    "chroma",  # no lora-chroma: its Flux.1 LoRA names would make it a tiny-flux LoRA too
    "qwen",
    "qwen-edit",
    "qwen-edit-plus",
    "qwen-layered",
    "qwen-lora",
)
FAMILIES = {
    "sd15": "tiny-sd15",
    "sdxl": "tiny-sdxl",
    "flux": "tiny-flux",
    "flux-fill": "tiny-flux-fill",
    "flux-kontext": "tiny-flux-kontext",
    "sd3": "tiny-sd3",
    "flux2-klein": "tiny-klein",
    "z-image": "tiny-z-image",
    "chroma": "tiny-chroma",
    "qwen-image": "tiny-qwen",
    "qwen-image-edit": "tiny-qwen-edit",
    "qwen-image-edit-plus": "tiny-qwen-edit-plus",
    "qwen-image-layered": "tiny-qwen-layered",
}
W = H = 64
LORA_MODES = ("generate", "img2img", "inpaint", "outpaint", "edit", "decompose")  # the modes that apply prompt LoRAs
ALLOWED = ("model_not_found",)  # a file the server names for download is fine; a refusal of the option is not


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    import factory
    import tiny_layerdiffuse
    import tiny_palm
    import tiny_yunet

    path = factory.make_models_dir(tmp_path_factory.mktemp("models"), MODELS)
    for arch in ("sd15", "sdxl"):
        tiny_layerdiffuse.install(path, arch)
    tiny_yunet.write_detector(path / "detectors")
    tiny_palm.write_detector(path / "detectors")
    return path


@pytest.fixture(scope="module")
def session(server) -> Iterator[Tuple[Client, object]]:
    with Client(server.url, client_name="test-offers") as c:
        yield c, c.welcome


def document() -> MemoryDocument:
    layer = gradient(W, H)
    return MemoryDocument(
        W, H, gradient(W, H), ellipse_mask(W, H, 32, 32, 14, 12), {"control": layer, "ref": layer, "region": layer}
    )


def variations(o, mode: str) -> List[Tuple[str, Settings, dict]]:
    """(label, settings, capture extras) for the plain job of ``mode`` and one job per option offered for it."""
    base = Settings(mode=mode, model=o.model, prompt="a cat", steps=1, seed=1, extend_right=16, batch=1)
    out: List[Tuple[str, Settings, dict]] = [("plain", base, {})]
    for kind in o.controls_for(mode):
        out.append((f"control {kind}", base, {"controls": [ControlSource("control", kind)]}))
    if "hires" in o.techniques_for(mode):
        out.append(("hires", base.replace(hires=True, hires_steps=1, hires_scale=1.25), {}))
    if "detail" in o.techniques_for(mode):
        for target in o.detail_targets:
            out.append((f"detail {target}", base.replace(detail=True, detail_targets=target, detail_steps=1), {}))
    if mode == "detail":
        out += [(f"target {t}", base.replace(detail_targets=t, detail_steps=1), {}) for t in o.detail_targets]
    if mode in ("generate", "img2img", "inpaint", "outpaint"):
        out += [(f"vae {v}", base.replace(vae=v), {}) for v in o.vaes[:1]]
        out += [(f"refiner {r}", base.replace(refiner=r), {}) for r in o.refiners[:1]]
        if o.takes("clip_skip"):
            out.append(("clip skip", base.replace(clip_skip=2), {}))
        out += [(f"speed {v}", base.replace(speed=v), {}) for v in o.speed_levels if v != "quality"]
        if o.regions:
            out.append(("region", base, {"regions": [RegionSource("region", "a dog")]}))
        if mode in o.control_modes:
            out += [(f"reference {t}", base, {"references": [ReferenceSource("ref", t)]}) for t in o.reference_types]
    if mode in LORA_MODES:
        out += [(f"lora {n}", base.replace(prompt=f"a cat <lora:{n}:0.5>"), {}) for n in o.loras]
    if mode in o.transparent:
        out.append(("transparent", base.replace(transparent=True), {}))
    if mode in o.tileable:
        out.append(("tileable", base.replace(tileable=True), {}))
    if mode == "preprocess":
        out += [(f"preprocessor {p}", base.replace(preprocessor=p), {}) for p in o.preprocessors]
    return out


def refused(client: Client, settings: Settings, extras: dict, job_id: str) -> str:
    """The error code the server answers the job with ("" when it ran)."""
    doc = document()
    inputs = capture(settings, doc.selection_bounds(), W, H, Reader(doc, RGBA8), **extras)
    try:
        client.run(build_job(settings, inputs, job_id=job_id), timeout=300)
    except JobFailed as err:
        return f"{err.code}: {err}"
    return ""


@pytest.fixture(scope="module", params=list(FAMILIES))
def arch(request) -> str:
    """A family, as a module-scoped parameter: pytest then runs both walks of one family (what is offered runs, what
    is not is refused) one after the other on its loaded checkpoint, instead of loading every checkpoint twice."""
    return request.param


def test_every_option_offered_for_a_family_runs(session, arch):
    client, welcome = session
    o = offers(welcome, FAMILIES[arch])
    assert o.known and o.family == arch, "the server describes every family it runs"
    walk = [
        (f"{mode} / {label}", settings, extras, f"{arch}-{mode}-{i}")
        for mode in o.modes
        if mode not in ("upscale", "caption")  # no checkpoint: test_modes_without_a_checkpoint_run
        for i, (label, settings, extras) in enumerate(variations(o, mode))
    ]
    # the jobs with a control layer after all the others: where a control changes the checkpoint a mode runs on
    # (Flux.1's inpaint and outpaint run on Fill, with a control on dev), each checkpoint loads once, not per mode
    walk.sort(key=lambda one: bool(one[2].get("controls")))
    failures = []
    for what, settings, extras, job_id in walk:
        answer = refused(client, settings, extras, job_id)
        if answer and not answer.startswith(ALLOWED):
            failures.append(f"{what}: {answer}")
    assert not failures, "offered but refused:\n" + "\n".join(failures)


def test_what_a_family_cannot_run_is_not_offered(session):
    _client, welcome = session
    flux, sd3, sdxl = (offers(welcome, FAMILIES[a]) for a in ("flux", "sd3", "sdxl"))
    assert flux.techniques == () and flux.detail_targets == () and flux.vaes == () and flux.regions
    assert sd3.regions and offers(welcome, "tiny-flux-kontext").regions and offers(welcome, "tiny-chroma").regions
    assert offers(welcome, "tiny-qwen-edit-plus").regions and not offers(welcome, "tiny-qwen-layered").regions
    assert (
        "detail" not in flux.modes and "edit" not in flux.modes and "edit" in offers(welcome, "tiny-flux-kontext").modes
    )
    assert flux.control_types == ("canny",) and flux.max_controls == 1
    assert sd3.control_modes == ("generate",) and sd3.reference_types == ()
    assert set(sdxl.control_types) >= {"canny", "depth", "pose"}, "the union ControlNet's modes"
    assert not {"tile", "inpaint"} & set(sdxl.control_types), "promax's modes, which a first union cannot run"
    zimage = offers(welcome, FAMILIES["z-image"])
    assert zimage.control_modes == ("generate", "inpaint", "outpaint") and {"canny", "depth", "pose"} <= set(
        zimage.control_types
    )
    assert "tile" not in zimage.control_types, "Z-Image's union ControlNet has no tile mode"
    assert sdxl.refiners and sdxl.vaes and offers(welcome, "tiny-sd15").refiners == ()
    assert sdxl.loras == ("tiny-lora-sdxl",) and offers(welcome, "tiny-sd15").loras == ("tiny-lora-sd15",)
    loras = {arch: offers(welcome, model).loras for arch, model in FAMILIES.items()}
    assert {a for a, names in loras.items() if names == ("tiny-lora-flux",)} == {
        "flux",
        "flux-fill",
        "flux-kontext",
        "chroma",
    }, "Flux.1's variants take Flux.1 LoRAs"
    assert loras["qwen-image"] == loras["qwen-image-edit-plus"] == loras["qwen-image-layered"] == ("tiny-lora-qwen",)
    assert loras["flux2-klein"] == ("tiny-lora-klein",) and loras["sd3"] == ()
    assert set(offers(welcome, "tiny-sd15").detail_targets) == {"face", "hand"}
    fast = {arch for arch, model in FAMILIES.items() if offers(welcome, model).speed_choice()}
    assert fast == {"sd15", "sdxl"} and offers(welcome, CLASSICAL).speed_levels == ("quality",)
    built_in = offers(welcome, CLASSICAL)
    assert set(built_in.modes) == {"inpaint", "outpaint", "upscale", "preprocess", "caption"}
    assert built_in.control_types == () and built_in.techniques == ()
    # a seamless upscale is the server's own step: offered whatever the model, Qwen's 3-D VAE included
    assert built_in.tileable == ("upscale",) and sdxl.tileable == ("generate", "img2img", "upscale")
    assert offers(welcome, FAMILIES["qwen-image"]).tileable == ("upscale",)
    assert checkpoint_entry(welcome)["name"] == offers(welcome).model


def test_a_lora_a_family_is_not_offered_is_refused(session, arch):
    """The other half of the walk: each installed LoRA the editors do not offer for a model is refused on it, naming
    the LoRA's family, so nothing the server would run is left out of the lists."""
    client, welcome = session
    o = offers(welcome, FAMILIES[arch])
    mode = next(m for m in LORA_MODES if m in o.modes)
    installed = [str(m["name"]) for m in welcome.models if m.get("kind") == "lora" and not m.get("problem")]
    left_out = [n for n in installed if n not in o.loras]
    assert left_out, "some installed LoRA is of a family the model does not take"
    ran = []
    for i, name in enumerate(left_out):
        settings = Settings(mode=mode, model=o.model, prompt=f"a cat <lora:{name}:0.5>", steps=1, seed=1, batch=1)
        answer = refused(client, settings.replace(extend_right=16), {}, f"{arch}-other-lora-{i}")
        if not (answer.startswith("unsupported") and "made for" in answer):
            ran.append(f"{name}: {answer or 'ran'}")
    assert not ran, "not offered but not refused:\n" + "\n".join(ran)


def test_a_server_without_lora_families_gets_the_models_own_family():
    listing = [
        {"name": "chroma-hd", "kind": "checkpoint", "arch": "chroma"},
        {"name": "ink", "kind": "lora", "arch": "flux"},
        {"name": "own", "kind": "lora", "arch": "chroma"},
        {"name": "broken", "kind": "lora", "arch": "flux", "problem": "not a LoRA"},
    ]
    older = {"modes": ["generate"], "families": {"chroma": {"modes": ["generate"]}}}
    newer = {"modes": ["generate"], "families": {"chroma": {"modes": ["generate"], "lora_families": ["flux"]}}}

    def loras(caps: dict) -> tuple:
        welcome = protocol.Welcome(protocol="1.0", server_version="1", capabilities=caps, models=tuple(listing))
        return offers(welcome, "chroma-hd").loras

    assert loras(older) == ("own",) and loras(newer) == ("ink",)
    # no families at all (a server from before families were described): still the model's own family, as it refuses
    assert loras({"modes": ["generate"]}) == ("own",)
    unlisted = protocol.Welcome(protocol="1.0", server_version="1", capabilities={}, models=tuple(listing))
    assert offers(unlisted, "a model it does not list").loras == ("ink", "own"), "an unknown model: the server decides"


def test_the_editors_lora_lists_follow_the_server(session):
    """Krita's LoRA list (the panel's state) and GIMP's LoRA slots offer the Flux.1 LoRA on Chroma, Fill and Kontext."""
    from gimp_plugin.arguments import BY_MODE
    from gimp_plugin.choices import listed_choices
    from gimp_plugin.offered import sensitivity
    from krita_memory_host import MemoryHost, MemoryStore, UiLoop
    from krita_plugin.paintbridge.session import Session
    from client.server import LocalServer

    _client, welcome = session
    nicks = {"lora": [n for n, _ in listed_choices("lora", [dict(m) for m in welcome.models])]}
    ui = UiLoop()
    panel = Session(
        MemoryHost(), MemoryStore({"autostart": "false"}), ui.post, ui.schedule, LocalServer(None, Path("-"))
    )
    panel.on_welcome(welcome)
    panel.on_models([dict(m) for m in welcome.models])
    for arch in ("chroma", "flux-fill", "flux-kontext", "sd15", "qwen-image-edit-plus"):
        model = FAMILIES[arch]
        expected = offers(welcome, model).loras
        gimp = {n for n, ok in sensitivity(BY_MODE["inpaint"], welcome, model, nicks)["lora"].items() if ok}
        assert gimp == {"none", *expected}, arch
        panel.set_option("model", model)
        assert tuple(panel.loras.available()) == expected, arch
    assert panel.loras.available() == ["tiny-lora-qwen"]


def test_modes_without_a_checkpoint_run(session):
    client, welcome = session
    o = offers(welcome, CLASSICAL)
    failures = []
    for mode in ("inpaint", "outpaint", "upscale", "preprocess"):
        for i, (label, settings, extras) in enumerate(variations(o, mode)):
            answer = refused(client, settings.replace(model="classical"), extras, f"classical-{mode}-{i}")
            if answer and not answer.startswith(ALLOWED):
                failures.append(f"{mode} / {label}: {answer}")
    assert not failures, "offered but refused:\n" + "\n".join(failures)


def test_an_older_server_gets_everything_it_announces():
    welcome = protocol.Welcome(
        protocol="1.0",
        server_version="0.9",
        capabilities={"modes": ["generate", "inpaint"], "control_types": ["canny"]},
    )
    o = offers(welcome, "anything")
    assert not o.known and o.modes == ("generate", "inpaint") and o.controls_for("inpaint") == ("canny",)


def test_gimp_dialogs_grey_out_what_the_picked_model_cannot_run(session):
    from gimp_plugin.argchoices import CONTROL_CHOICES, PREPROCESSOR_CHOICES, REFERENCE_CHOICES
    from gimp_plugin.arguments import BY_MODE, BY_NAME
    from gimp_plugin.choices import listed_choices
    from gimp_plugin.offered import sensitivity

    _client, welcome = session
    models = [dict(m) for m in welcome.models]
    spec = BY_MODE["inpaint"]
    nicks = {
        "lora": [n for n, _ in listed_choices("lora", models)],
        "control-type": [n for n, _ in CONTROL_CHOICES],
        "reference-type": [n for n, _ in REFERENCE_CHOICES],
        "detail-targets": ["face", "hand", "face-hand"],
        "speed": ["style", "quality", "fast"],
    }

    def runs(model: str, name: str):
        return {nick for nick, ok in sensitivity(spec, welcome, model, nicks)[name].items() if ok}

    assert runs("tiny-sd15", "lora") == {"none", "tiny-lora-sd15"} and runs("tiny-sdxl", "lora") == {
        "none",
        "tiny-lora-sdxl",
    }
    assert runs("tiny-flux", "lora") == runs("tiny-chroma", "lora") == {"none", "tiny-lora-flux"}
    assert runs("tiny-sd15", "control-type") == {"canny"} and runs("tiny-flux", "control-type") == {"canny"}
    assert runs("tiny-sdxl", "control-type") == set(offers(welcome, "tiny-sdxl").control_types)
    assert "tile" not in runs("tiny-sdxl", "control-type"), "a first union ControlNet has no tile mode"
    assert runs("tiny-sd15", "reference-type") == {"style", "composition", "content", "face"}, "face: a download away"
    assert runs("tiny-flux", "reference-type") == {"style", "content"}, "Flux Redux"
    assert runs("tiny-sd3", "reference-type") == set() and runs("tiny-flux", "detail-targets") == set()
    assert runs("tiny-sd15", "detail-targets") == {"face", "hand", "face-hand"}
    assert runs("classical", "control-type") == set()
    assert runs("tiny-sd15", "speed") == runs("tiny-sdxl", "speed") == {"style", "quality", "fast"}
    assert runs("tiny-flux", "speed") == runs("tiny-sd3", "speed") == runs("classical", "speed") == {"style", "quality"}
    assert runs("default", "lora") == runs(offers(welcome).model, "lora"), (
        "'default' is the server's default checkpoint"
    )
    control_layer = BY_NAME["plug-in-paintbridge-control-layer"]
    ready = sensitivity(control_layer, welcome, "", {"preprocessor": [n for n, _ in PREPROCESSOR_CHOICES]})
    caps = welcome.capabilities["preprocessors"]
    offered = {n for n, _ in PREPROCESSOR_CHOICES}
    assert {n for n, ok in ready["preprocessor"].items() if ok} == {p["name"] for p in caps if p["ready"]} & offered
    assert not ready["preprocessor"]["pose"] or any(p["name"] == "pose" and p["ready"] for p in caps)
