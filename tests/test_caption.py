"""Prompt from the picture (mode ``caption``): the protocol's fields, the sentence-to-tags rule, captioner folders in
the registry, and caption jobs through the real websocket server on a tiny random BLIP of the real architecture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from protocol import CAPTION_STYLES, ImagePayload, Job, Params, Result, parse_client_message, parse_server_message
from protocol.client import Client, JobFailed
from protocol.errors import ProtocolError
from server.caption.tags import as_tags, caption_tags


def picture(seed: int, w: int = 48, h: int = 40) -> np.ndarray:
    """An RGBA picture of coloured blocks (different for each seed), with a transparent corner."""
    rng = np.random.default_rng(seed)
    img = np.repeat(np.repeat(rng.integers(0, 256, (h // 8, w // 8, 4), dtype=np.uint8), 8, 0), 8, 1)
    img[..., 3] = 255
    img[:8, :8, 3] = 0
    return np.ascontiguousarray(img)


def caption_job(image: np.ndarray, style: str = "sentence", model: str = "", job_id: str = "c1") -> Job:
    payload = ImagePayload(image.shape[1], image.shape[0], "rgba8", image.tobytes())
    return Job(job_id, "caption", model=model, image=payload, params=Params(caption_style=style))


# --- protocol ---------------------------------------------------------------------------------------------------------


def test_caption_style_and_result_text_are_typed_fields():
    assert CAPTION_STYLES == ("sentence", "tags")
    job = caption_job(picture(0), "tags")
    assert parse_client_message(job.to_wire()).params.caption_style == "tags"
    wire = job.to_wire()
    wire["params"]["caption_style"] = "poem"
    with pytest.raises(ProtocolError) as info:
        parse_client_message(wire)
    assert info.value.code == "bad_request" and info.value.field == "params.caption_style"
    wire = caption_job(picture(0)).to_wire()
    del wire["image"]
    with pytest.raises(ProtocolError) as info:
        parse_client_message(wire)
    assert info.value.field == "image" and "caption" in info.value.message
    result = parse_server_message(Result("c1", (), text="a red sofa").to_wire())
    assert result.text == "a red sofa" and result.layers == ()
    assert parse_server_message(Result("c2", ()).to_wire()).text == ""
    wrong = Result("c3", ()).to_wire()
    wrong["text"] = 3
    with pytest.raises(ProtocolError) as info:
        parse_server_message(wrong)
    assert info.value.field == "text"


# --- tags -------------------------------------------------------------------------------------------------------------


def test_a_sentence_becomes_its_phrases_as_tags():
    assert caption_tags("a woman sitting on a bench with a dog in the park") == [
        "woman sitting",
        "bench",
        "dog",
        "park",
    ]
    assert as_tags("There is a red car, and a red car near a house.") == "red car, house"
    assert caption_tags("") == [] and caption_tags("the of a") == []
    assert len(caption_tags(" and ".join(f"thing{i}" for i in range(50)))) == 24


# --- the registry -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captioner() -> Path:
    import tiny_blip

    return tiny_blip.captioner_folder()


@pytest.mark.engine  # loads a model or starts a server process
def test_captioner_folders_are_recognised_and_odd_ones_say_why(captioner, tmp_path):
    from server.models.registry import ModelRegistry

    folder = tmp_path / "captioners"
    shutil.copytree(captioner, folder / "blip")
    shutil.copytree(captioner, folder / "vqa")
    config = json.loads((folder / "vqa" / "config.json").read_text())
    (folder / "vqa" / "config.json").write_text(json.dumps(dict(config, architectures=["BlipForQuestionAnswering"])))
    shutil.copytree(captioner, folder / "bare", ignore=shutil.ignore_patterns("*processor_config.json"))
    (folder / "other").mkdir()
    (folder / "other" / "config.json").write_text('{"model_type": "llama"}')
    (folder / "single.safetensors").write_bytes((captioner / "model.safetensors").read_bytes())
    registry = ModelRegistry([tmp_path])
    found = {e.name: e for e in registry.entries("captioner")}
    assert set(found) == {"blip", "vqa", "bare", "other", "single"}
    assert found["blip"].problem is None and found["blip"].arch == "blip"
    assert (
        "BlipForQuestionAnswering" in found["vqa"].problem
        and "paintbridge models pull captioner" in found["vqa"].problem
    )
    assert "preprocessor_config.json" in found["bare"].problem
    assert "'llama'" in found["other"].problem
    assert "folder in the transformers format" in found["single"].problem
    with pytest.raises(ProtocolError) as info:
        registry.get("other", "captioner")
    assert info.value.code == "unsupported"


def test_the_catalogue_pulls_a_whole_captioner_folder():
    from server.downloads import Catalogue
    from server.models.captioners import PROCESSOR_FILES, PULL_HINT

    preset = Catalogue.load().presets[PULL_HINT.rsplit(" ", 1)[1]]
    targets = {f.target for f in preset.files}
    folder = {t.rsplit("/", 1)[0] for t in targets}
    assert len(folder) == 1 and folder.pop().startswith("captioners/")
    names = {t.rsplit("/", 1)[1] for t in targets}
    assert {"config.json", "model.safetensors", PROCESSOR_FILES[0], "tokenizer.json"} <= names
    assert all(f.kind == "captioner" and f.licence == "BSD-3-Clause" and "caption" in f.modes for f in preset.files)


# --- through the server -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caption_server(captioner, tmp_path_factory):
    from protocol.messages import Limits
    from server.app import ServerThread
    from server.config import ServerConfig
    import tiny_blip

    models = tmp_path_factory.mktemp("caption-models")
    tiny_blip.install(models)
    thread = ServerThread(ServerConfig(host="127.0.0.1", port=0, model_dirs=[models], limits=Limits())).start()
    yield thread
    thread.stop()


def direct_caption(folder: Path, image: np.ndarray) -> str:
    """What the tiny model itself says of ``image`` (the engine's settings), without the server."""
    import torch

    from server.caption import MAX_NEW_TOKENS, NUM_BEAMS, load_captioner, picture as seen

    model, processor = load_captioner(folder)
    with torch.inference_mode():
        ids = model.generate(
            **processor(images=seen(image), return_tensors="pt"),
            max_new_tokens=MAX_NEW_TOKENS,
            num_beams=NUM_BEAMS,
            no_repeat_ngram_size=3,
        )
    return " ".join(processor.decode(ids[0], skip_special_tokens=True).split())


@pytest.mark.engine  # loads a model or starts a server process
def test_caption_returns_the_models_words_through_the_protocol(caption_server, captioner):
    events = []
    with Client(caption_server.url, "caption-test") as client:
        assert "caption" in client.welcome.capabilities["modes"]
        assert client.welcome.capabilities["captioners"] == ["tiny-blip"]
        assert client.welcome.capabilities["caption_styles"] == list(CAPTION_STYLES)
        assert any(m["kind"] == "captioner" and m["name"] == "tiny-blip" for m in client.welcome.models)
        first = client.run(caption_job(picture(1)), on_event=events.append)
        other = client.run(caption_job(picture(2), job_id="c2"))
        tags = client.run(caption_job(picture(1), "tags", model="tiny-blip", job_id="c3"))
    assert first.layers == () and first.text.strip() and first.text == direct_caption(captioner, picture(1))
    assert other.text == direct_caption(captioner, picture(2)) and other.text != first.text, "the picture counts"
    assert tags.text == as_tags(first.text) and tags.params["caption_style"] == "tags"
    steps = [e for e in events if e.type == "progress"]
    assert steps and steps[-1].step == steps[-1].total


def test_a_missing_captioner_is_refused_naming_what_to_pull(start_server, captioner, tmp_path):
    server = start_server()
    with Client(server.url, "caption-test") as client:
        with pytest.raises(JobFailed) as info:
            client.run(caption_job(picture(0)))
        assert info.value.code == "model_not_found" and info.value.field == "model"
        assert "paintbridge models pull captioner" in str(info.value) and "captioners" in str(info.value)
        with pytest.raises(JobFailed) as info:
            client.run(caption_job(picture(0), model="nowhere", job_id="c2"))
        assert info.value.code == "model_not_found" and "no captioner named 'nowhere'" in str(info.value)
        assert client.list_models()  # the server keeps serving


@pytest.mark.engine  # loads a model or starts a server process
def test_a_cancelled_caption_ends_within_a_token(captioner, tmp_path):
    from server.caption import CaptionEngine
    from server.core import Job as EngineJob, JobCancelled, JobContext
    from server.models.registry import ModelRegistry
    import tiny_blip

    tiny_blip.install(tmp_path)
    engine = CaptionEngine(ModelRegistry([tmp_path]))
    seen = []
    ctx = JobContext(lambda step, total, preview: (seen.append(step), ctx.cancel() if step == 3 else None))
    with pytest.raises(JobCancelled):
        engine.run(EngineJob("c", "caption", image=picture(0)), ctx)
    assert max(seen) == 3 and ctx.text is None


def test_the_client_builds_a_caption_job_of_the_selection_with_the_captioner():
    from client import jobs
    from client.errors import JobInputError
    from client.settings import Settings
    from client.wire import Box

    settings = Settings(mode="caption", model="sd15", captioner="tiny-blip", caption_style="tags", prompt="old")
    plan = jobs.plan_read("caption", Box(4, 6, 10, 8), 40, 30)
    assert plan.box == Box(4, 6, 10, 8) and plan.image and not plan.mask
    assert jobs.plan_read("caption", Box(0, 0, 0, 0), 40, 30).box == Box(0, 0, 40, 30)
    job = jobs.build_job(settings, jobs.JobInputs(plan.box, bytes(10 * 8 * 4)), job_id="k1")
    assert (job.mode, job.model, job.params.caption_style, job.x, job.y) == ("caption", "tiny-blip", "tags", 4, 6)
    with pytest.raises(JobInputError, match="field 'caption_style' must be one of sentence, tags, got 'poem'"):
        jobs.build_job(settings.replace(caption_style="poem"), jobs.JobInputs(plan.box, bytes(320)), job_id="k2")


@pytest.mark.engine  # loads a model or starts a server process
def test_a_cluster_replica_answers_a_caption_with_its_words_and_loads_no_checkpoint(captioner, tmp_path):
    """The engine replica of cluster mode (run here without Ray): the caption's words travel in its ``done`` event."""
    import asyncio

    import tiny_blip
    from server.cluster.replica import EngineReplica, checkpoint_key
    from server.core import Job as EngineJob

    tiny_blip.install(tmp_path)
    job = EngineJob("c", "caption", model="tiny-blip", image=picture(3))
    assert checkpoint_key(job) is None
    replica = EngineReplica("r0", [str(tmp_path)])

    async def events() -> list:
        return [event async for event in replica.run(job)]

    done = [e for e in asyncio.run(events()) if e[0] != "progress"]
    assert [e[0] for e in done] == ["done"] and done[0][1] == []
    assert done[0][3] == direct_caption(captioner, picture(3))


@pytest.mark.engine  # loads a model or starts a server process
def test_the_command_line_prints_the_caption_and_lists_the_captioner(captioner, tmp_path, paintbridge_cli):
    from PIL import Image

    import tiny_blip

    models = tmp_path / "models"
    tiny_blip.install(models)
    Image.fromarray(picture(4), "RGBA").save(tmp_path / "in.png")
    cli = paintbridge_cli
    run = cli("run", "caption", "--models", str(models), "--image", str(tmp_path / "in.png"), "--caption-style", "tags")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == as_tags(direct_caption(captioner, picture(4)))
    listed = cli("models", "--models", str(models))
    assert listed.returncode == 0 and "tiny-blip" in listed.stdout and "captioner" in listed.stdout, listed.stdout
    refused = cli("run", "inpaint", "--models", str(models), "--image", str(tmp_path / "in.png"))
    assert refused.returncode == 2 and "needs --out" in refused.stderr
