"""The catalogue's DiT starter sets against our recognition: each set laid out in a models folder exactly where
``paintbridge models pull`` puts it (the catalogue's targets), with tiny random-weight stand-ins of the published
layouts under the published names, is recognised file by file as the kind and family the catalogue says, and each
split checkpoint finds its parts there (text encoder, VAE, tokenizer and image processor) as its jobs would."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest

import tiny_qwen
import tiny_zimage
from server.downloads import Catalogue
from server.families import controlnets, parts
from server.families import qwen as qwen_family
from server.models import qwen
from server.models.registry import ModelRegistry
from server.stylejob import fewstep_pull

CATALOGUE = Catalogue.load()
# what the registry calls a part's family where the catalogue names the set's family instead
PART_ARCHS = {"text_encoder": qwen.TEXT_ENCODER, "vae": None}


def _edit_transformer() -> Path:
    return tiny_qwen.checkpoint_folder("qwen-edit-plus") / "transformer" / "diffusion_pytorch_model.safetensors"


def _processor_files(tmp: Path) -> Path:
    """The tiny Edit Plus processor saved part by part, as the diffusers release's ``processor/`` holds it
    (``preprocessor_config.json``, ``video_preprocessor_config.json``, the tokenizer's files)."""
    from transformers import AutoProcessor

    built = AutoProcessor.from_pretrained(
        str(tiny_qwen.checkpoint_folder("qwen-edit-plus") / "processor"), local_files_only=True
    )
    out = tmp / "processor-files"
    for part in (built.image_processor, built.video_processor, built.tokenizer):
        part.save_pretrained(out)
    return out


def standins(tmp: Path) -> Dict[str, Callable[[str], Path]]:
    """Catalogue file id prefix -> the tiny stand-in of a file of that name (given the file's name)."""
    split = tiny_qwen.split_files()
    tokenizer = tiny_qwen.checkpoint_folder("qwen") / "tokenizer"
    processor = _processor_files(tmp)
    return {
        "qwen-image": lambda _n: split / "diffusion_models" / "tiny-qwen-split.safetensors",
        "qwen-image-edit-2509": lambda _n: _edit_transformer(),
        "qwen-image-tokenizer-": lambda n: tokenizer / n,
        "qwen-image-edit-2509-tokenizer-": lambda n: tokenizer / n,
        "qwen-image-edit-2509-processor-": lambda n: processor / n,
        "qwen-2.5-vl-7b-text-encoder": lambda _n: split / "text_encoders" / "tiny-qwen_2.5_vl.safetensors",
        "qwen-image-vae": lambda _n: split / "vae" / "tiny-qwen_image_vae.safetensors",
        "qwen-image-lightning": lambda _n: tiny_qwen.lora(),
        "z-image-controlnet-union": lambda _n: tiny_zimage.controlnet_file(),
    }


def lay_out(models: Path, preset: str, tmp: Path) -> None:
    """Each file of ``preset`` at its catalogue target, as its tiny stand-in (files the tiny release does not have,
    such as the chat template, are left out)."""
    makers = standins(tmp)
    for item in CATALOGUE.presets[preset].files:
        prefix = max((p for p in makers if item.id == p or (p.endswith("-") and item.id.startswith(p))), key=len)
        src = makers[prefix](item.target.rsplit("/", 1)[-1])
        if src.exists():
            dest = models / item.target
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


@pytest.fixture(scope="module")
def qwen_models(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("models")
    lay_out(models, "qwen", tmp_path_factory.mktemp("built"))
    return models


def _registry_entry(registry: ModelRegistry, item):
    """The registry's entry for a catalogue file, by its path."""
    path = item.path_in(registry.dirs[0]).resolve()
    found = [e for e in registry.entries() if Path(e.path).resolve() == path]
    assert len(found) == 1, f"{item.id}: {item.target} is listed {len(found)} times"
    return found[0]


def test_the_qwen_set_is_recognised_as_the_families_the_catalogue_names(qwen_models):
    registry = ModelRegistry([qwen_models])
    weights = [f for f in CATALOGUE.presets["qwen"].files if f.target.endswith(".safetensors")]
    assert {f.kind for f in weights} == {"checkpoint", "text_encoder", "vae", "lora"}
    for item in weights:
        entry = _registry_entry(registry, item)
        assert entry.problem is None, (item.id, entry.problem)
        assert entry.kind == item.kind, item.id
        assert entry.arch == PART_ARCHS.get(item.kind, item.family), item.id
    # the tokenizer and processor files beside the transformers are no models of their own
    assert len(registry.entries()) == len(weights)
    lightning = _registry_entry(registry, CATALOGUE.files["qwen-image-lightning"])
    assert (lightning.info["few_step"]["family"], lightning.info["few_step"]["steps"]) == ("lightning", 8)
    edit = _registry_entry(registry, CATALOGUE.files["qwen-image-edit-2509"])
    assert edit.info["variant"] == "edit-2509" and edit.listing()["edit"]


@pytest.mark.parametrize(
    "item,config",
    [
        ("qwen-image", lambda: tiny_qwen.split_files() / "diffusion_models" / "tiny-qwen-split.config"),
        ("qwen-image-edit-2509", lambda: tiny_qwen.checkpoint_folder("qwen-edit-plus")),
    ],
)
def test_each_qwen_checkpoint_finds_its_parts_where_the_set_puts_them(qwen_models, item, config):
    """The parts a job would load: text encoder and VAE from text_encoders/ and vae/, the tokenizer (and the Edit
    model's image processor) from ``<name>.config/`` (the tiny sizes' configs stand in for the shipped ones)."""
    registry = ModelRegistry([qwen_models])
    entry = _registry_entry(registry, CATALOGUE.files[item])
    found = parts.find(entry, config(), registry)
    targets = {CATALOGUE.files["qwen-2.5-vl-7b-text-encoder"].target, CATALOGUE.files["qwen-image-vae"].target}
    used = {str(Path(s.path).relative_to(qwen_models)) for s in (*found.encoders.values(), found.vae)}
    assert used == targets
    loaded = qwen_family.preprocessors(entry, config() / "missing")
    assert set(loaded) == ({"tokenizer", "processor"} if entry.arch in qwen.EDIT_FAMILIES else {"tokenizer"})
    assert loaded["tokenizer"]("a red apple").input_ids


def test_the_z_image_union_controlnet_is_recognised_as_z_image(tmp_path):
    models = tmp_path / "models"
    lay_out(models, "z-image-controlnet", tmp_path)
    item = CATALOGUE.files["z-image-controlnet-union"]
    entry = _registry_entry(ModelRegistry([models]), item)
    assert (entry.kind, entry.arch, entry.problem) == ("controlnet", item.family, None)
    assert entry.info["union"] and set(controlnets.union_types(entry.arch)) == set(item.controls)


def test_make_live_fast_offers_the_lightning_lora_for_qwen_image():
    assert fewstep_pull("qwen-image") == "qwen-image-lightning"


def test_the_new_sets_are_listed_for_pull_in_the_panels_and_the_readme(tmp_path):
    """What the server's ``presets`` answer carries, as the plugins' download sections read it (client core), and
    the README's list of what ``paintbridge models pull`` takes."""
    from client.downloads import presets_from
    from server.pulls import preset_entries

    entries = {p["name"]: p for p in preset_entries(CATALOGUE, [tmp_path])}
    assert entries["qwen"]["families"] == ["qwen-image", "qwen-image-edit-plus"]
    assert entries["z-image-controlnet"]["families"] == ["z-image"]
    statuses = {s.name: s for s in presets_from(entries.values())}
    assert statuses["qwen"].line("edit").startswith("qwen: lacks 1 file(s) for edit, about 20.4 GB")
    assert (
        statuses["z-image-controlnet"]
        .line("generate", "depth")
        .startswith("z-image-controlnet: lacks 1 file(s) for generate / depth")
    )
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    listed = readme.split("`paintbridge models pull NAME` downloads a set (NAME: ", 1)[1].split(")", 1)[0]
    assert {n.strip(" `") for n in listed.split(",")} == set(CATALOGUE.presets)


def test_paintbridge_models_lists_the_set_s_files_by_family_and_what_each_lacks(qwen_models):
    """``paintbridge models`` over the laid-out set: each file listed with its family and the catalogue's words, and
    the starter sets with what they lack (the tiny processor has no chat template; the ControlNet set is not there)."""
    from test_downloads import _cli

    out = _cli(["models", "--models", str(qwen_models)], {})
    assert out.returncode == 0, out.stderr
    checkpoint = next(line for line in out.stdout.splitlines() if "qwen_image_fp8_e4m3fn" in line)
    assert checkpoint.split()[:2] == ["checkpoint", "qwen-image"] and "(Qwen-Image transformer" in checkpoint
    assert f"  qwen        lacks 1 of {len(CATALOGUE.presets['qwen'].files)} files" in out.stdout, out.stdout
    assert "chat_template.jinja" in out.stdout and "  z-image-controlnet lacks 1 of 1 files" in out.stdout
