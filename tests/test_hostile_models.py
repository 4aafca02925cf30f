"""Hostile model files: every reader of a model file (safetensors and GGUF headers, pickles, JSON configs, the ONNX face
detector, links and special files in the models folders) refuses a lying or damaged file with a message that names the
file and its fault, before allocating what the file claims, while the listing keeps serving the good models."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import struct
import threading
import tracemalloc
from pathlib import Path

import pytest
import torch

import factory
from protocol.errors import ProtocolError
from server.detect import FaceDetector
from server.models import configcheck, headers, loading, pickles
from server.models.registry import ModelRegistry
from server.upscale.models import load_upscaler

MB = 1 << 20


# --- file makers -----------------------------------------------------------------------------------------------------


def safetensors_bytes(header: object, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file whose header is ``header`` (any JSON value, or raw bytes) followed by ``data``."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def gguf_bytes(
    tensors: int = 1,
    kvs: int = 1,
    dims=(4, 4),
    offset: int = 0,
    data: bytes = b"\0" * 64,
    magic: bytes = b"GGUF",
    version: int = 3,
) -> bytes:
    """A GGUF v3 file with one string key/value and one F32 tensor entry; the counts in its fixed header may lie."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    out = magic + struct.pack("<IQQ", version, tensors, kvs)
    out += string("general.architecture") + struct.pack("<I", 8) + string("flux")
    out += string("img_in.weight") + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
    out += struct.pack("<IQ", 0, offset)
    out += b"\0" * (-len(out) % 32)
    return out + data


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def onnx_bytes(dims, raw: bytes) -> bytes:
    """A one-node ONNX model (y = x + w) whose initialiser ``w`` declares ``dims`` float values and carries ``raw``."""

    def value_info(name: str) -> bytes:
        tensor_type = _field(1, 1) + _field(2, _field(1, _field(1, 1)))
        return _field(1, name.encode()) + _field(2, _field(1, tensor_type))

    initialiser = b"".join(_field(1, d) for d in dims) + _field(2, 1) + _field(8, b"w") + _field(9, raw)
    node = _field(1, b"x") + _field(1, b"w") + _field(2, b"y") + _field(4, b"Add")
    graph = (
        _field(1, node)
        + _field(2, b"g")
        + _field(5, initialiser)
        + _field(11, value_info("x"))
        + _field(12, value_info("y"))
    )
    return _field(1, 7) + _field(8, _field(2, 13)) + _field(7, graph)


class Payload:
    """A pickle that would create ``marker`` when unpickled by a full unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def peak_python_bytes(fn) -> int:
    """Peak bytes the Python allocator held while ``fn`` ran (its exception swallowed)."""
    tracemalloc.start()
    try:
        fn()
    except Exception:  # noqa: BLE001 - only the memory is measured here
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.fixture
def models(tmp_path) -> Path:
    """A models folder with good tiny models (a LoRA, a checkpoint file, an upscaler-less layout) to keep listed."""
    return factory.make_models_dir(tmp_path / "models", ("lora-sd15", "sd15-file"))


def listing(root: Path, **kwargs) -> dict:
    return {(e["kind"], e["name"]): e for e in ModelRegistry([root], **kwargs).listing()}


def assert_good_still_listed(found: dict) -> None:
    assert found[("lora", "tiny-lora-sd15")].get("problem") is None
    assert found[("checkpoint", "tiny-sd15-file")].get("problem") is None


# --- safetensors headers ---------------------------------------------------------------------------------------------

F32 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
LYING_SAFETENSORS = {
    "header-longer-than-file": (safetensors_bytes({"a": F32}, b"\0" * 16, length=4000), "4000-byte header"),
    "huge-header": (safetensors_bytes({}, length=1 << 40), "header (at most"),
    "huge-shape": (
        safetensors_bytes({"a": {"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 16]}}, b"\0" * 16),
        "declares shape",
    ),
    "offsets-beyond-file": (
        safetensors_bytes({"a": {"dtype": "F32", "shape": [1 << 20], "data_offsets": [0, 4 << 20]}}, b"\0" * 16),
        "truncated",
    ),
    "overlapping": (
        safetensors_bytes({"a": F32, "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}, b"\0" * 24),
        "overlap",
    ),
    "absurd-dtype": (
        safetensors_bytes({"a": {"dtype": "F1024", "shape": [1], "data_offsets": [0, 128]}}, b"\0" * 128),
        "unknown dtype",
    ),
    "negative-dim": (
        safetensors_bytes({"a": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, b"\0" * 16),
        "invalid shape",
    ),
    "no-shape": (safetensors_bytes({"a": {"dtype": "F32", "data_offsets": [0, 16]}}, b"\0" * 16), "invalid shape"),
    "not-a-map": (safetensors_bytes([1, 2, 3]), "not a map"),
    "nested-bomb": (safetensors_bytes(b"[" * 100_000 + b"]" * 100_000), "not JSON"),
    "not-json": (safetensors_bytes(b"{not json"), "not JSON"),
}


@pytest.mark.parametrize("case", sorted(LYING_SAFETENSORS))
def test_lying_safetensors_headers_are_refused_by_name_and_the_rest_listed(models, case):
    content, fault = LYING_SAFETENSORS[case]
    for folder in ("checkpoints", "loras", "controlnet", "vae"):
        (models / folder).mkdir(exist_ok=True)
        (models / folder / f"{case}.safetensors").write_bytes(content)
    found = listing(models)
    for kind in ("checkpoint", "lora", "controlnet", "vae"):
        problem = found[(kind, case)]["problem"]
        assert f"{case}.safetensors" in problem and fault in problem, problem
        assert not problem.startswith("cannot be inspected"), problem  # the documented refusal, not a crash
    assert_good_still_listed(found)


def test_a_lying_header_is_refused_before_its_claims_are_believed(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(
        safetensors_bytes({"a": {"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 16]}}, b"\0" * 16)
    )
    assert peak_python_bytes(lambda: headers.safetensors_header(path)) < MB
    path.write_bytes(safetensors_bytes({}, length=(16 << 20) - 1) + b"\0" * 64)  # a header the file cannot hold
    assert peak_python_bytes(lambda: headers.safetensors_header(path)) < MB


def test_a_lying_safetensors_upscaler_is_refused_when_loaded(tmp_path):
    path = tmp_path / "4x-lie.safetensors"
    path.write_bytes(LYING_SAFETENSORS["offsets-beyond-file"][0])
    with pytest.raises(ProtocolError) as err:
        load_upscaler(path)
    assert err.value.code == "unsupported" and "4x-lie.safetensors" in err.value.message
    assert "truncated" in err.value.message


# --- GGUF ------------------------------------------------------------------------------------------------------------

LYING_GGUF = {
    "absurd-tensor-count": (gguf_bytes(tensors=1 << 62), "more than a file"),
    "absurd-kv-count": (gguf_bytes(kvs=1 << 62), "more than a file"),
    "absurd-shape": (gguf_bytes(dims=(1 << 40, 1 << 40)), "not a readable GGUF"),
    "data-beyond-file": (gguf_bytes(offset=1 << 30), "not a readable GGUF"),
    "wrong-magic": (gguf_bytes(magic=b"GGML"), "not a GGUF file"),
    "wrong-version": (gguf_bytes(version=99), "version 99"),
}


@pytest.mark.parametrize("case", sorted(LYING_GGUF))
def test_lying_gguf_files_are_refused_by_name(models, case):
    content, fault = LYING_GGUF[case]
    (models / "diffusion_models").mkdir(exist_ok=True)
    (models / "diffusion_models" / f"{case}.gguf").write_bytes(content)
    found = listing(models)
    problem = found[("checkpoint", case)]["problem"]
    assert f"{case}.gguf" in problem and fault in problem, problem
    assert_good_still_listed(found)


# --- JSON configs ----------------------------------------------------------------------------------------------------


def test_a_config_declaring_a_huge_model_is_refused_before_anything_is_built(models):
    (models / "checkpoints" / "huge.safetensors").symlink_to(factory.checkpoint_file("sd15"))
    shutil.copytree(
        factory.checkpoint_file("sd15").with_name("tiny-sd15-file.config"), models / "checkpoints" / "huge.config"
    )
    config = models / "checkpoints" / "huge.config" / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_size": 10**9}))
    found = listing(models)
    problem = found[("checkpoint", "huge")]["problem"]
    assert "text_encoder/config.json" in problem and "hidden_size = 1000000000" in problem, problem
    assert_good_still_listed(found)

    encoders = models / "clip_vision" / "giant"  # a transformers image-encoder folder
    encoders.mkdir(parents=True)
    (encoders / "config.json").write_text(
        json.dumps({"model_type": "clip_vision_model", "hidden_size": 10**9, "num_hidden_layers": 10**9})
    )
    (encoders / "model.safetensors").write_bytes(safetensors_bytes({}))
    problem = listing(models)[("clip_vision", "giant")]["problem"]
    assert "giant/config.json" in problem and "= 1000000000" in problem, problem


def test_a_config_changed_after_listing_is_checked_again_when_loading(models):
    registry = ModelRegistry([models])
    entry = registry.get("tiny-sd15-file", "checkpoint")
    sidecar = models / "checkpoints" / "tiny-sd15-file.config"
    sidecar.unlink()  # a link into the shared cache: replaced by a copy to edit
    shutil.copytree(factory.checkpoint_file("sd15").with_name("tiny-sd15-file.config"), sidecar)
    config = models / "checkpoints" / "tiny-sd15-file.config" / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "cross_attention_dim": 10**9}))
    with pytest.raises(ProtocolError) as err:
        loading.load_checkpoint(entry, torch.float32)
    assert "unet/config.json" in err.value.message and "cross_attention_dim = 1000000000" in err.value.message


def test_a_sidecar_config_bigger_than_its_weights_is_refused_before_the_model_is_built(models):
    (models / "controlnet").mkdir(exist_ok=True)
    target = models / "controlnet" / "controlnet-canny-tiny-sdxl.safetensors"
    target.symlink_to(factory.controlnet_path("cn-sdxl-canny"))
    config = json.loads((factory.checkpoint_folder("sdxl") / "unet" / "config.json").read_text())
    keys = (
        "in_channels",
        "down_block_types",
        "block_out_channels",
        "layers_per_block",
        "cross_attention_dim",
        "attention_head_dim",
        "transformer_layers_per_block",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
        "norm_num_groups",
    )
    config = {k: config[k] for k in keys if k in config}
    config["block_out_channels"] = [c * 128 for c in config["block_out_channels"]]  # within every bound, but
    # tens of GB of parameters: not these weights
    config["norm_num_groups"] = 32
    sidecar = models / "controlnet" / "controlnet-canny-tiny-sdxl.config"
    sidecar.mkdir()
    (sidecar / "config.json").write_text(json.dumps(config))
    entry = ModelRegistry([models]).get("controlnet-canny-tiny-sdxl", "controlnet")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ProtocolError) as err:
        loading.load_controlnet(entry, torch.float32)
    assert "declares a model of" in err.value.message and "GB" in err.value.message, err.value.message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 * 1024  # KB: nothing of 10 GB was built


def test_configs_that_are_not_configs_are_refused(tmp_path):
    path = tmp_path / "config.json"
    for content, fault in (
        (b"[" * 50_000 + b"]" * 50_000, "not a readable JSON"),
        (b"[1]", "not a JSON map"),
        (b" " * (2 << 20), "a model config is a few KB"),
        (json.dumps({"a": {"b": {"num_layers": 5000}}}).encode(), "a.b.num_layers = 5000"),
    ):
        path.write_bytes(content)
        with pytest.raises(configcheck.ConfigError) as err:
            configcheck.read_config(path)
        assert fault in str(err.value), str(err.value)


# --- pickles ---------------------------------------------------------------------------------------------------------


def test_a_pickled_upscaler_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    ups = tmp_path / "models" / "upscale_models"
    ups.mkdir(parents=True)
    torch.save({"conv_first.weight": torch.zeros(1), "x": Payload(marker)}, ups / "4x-zip.pth")
    with open(ups / "4x-legacy.pth", "wb") as fh:
        pickle.dump({"params_ema": Payload(marker)}, fh, protocol=2)
    registry = ModelRegistry([tmp_path / "models"])
    for name in ("4x-zip", "4x-legacy"):
        with pytest.raises(ProtocolError) as err:
            load_upscaler(registry.get(name, "upscaler").path)
        assert f"{name}.pth" in err.value.message and "besides tensors" in err.value.message
        assert "posix.system" in err.value.message or "system" in err.value.message
    with open(ups / "4x-legacy.pth", "rb") as fh:
        pickle.load(fh)  # our own payload, to prove it is live: a full unpickler runs it...
    assert marker.exists()
    marker.unlink()
    for name in ("4x-zip", "4x-legacy"):
        with pytest.raises(pickles.PickleRefused):
            pickles.load_weights_only(ups / f"{name}.pth")
    assert not marker.exists()  # ...and the weights-only loader does not


def test_a_pickle_declaring_a_huge_storage_is_refused_without_allocating_it(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(4)}, legacy, _use_new_zipfile_serialization=False)
    raw = legacy.read_bytes()
    declared = b"cpuq\x06K\x04N"  # the storage's element count (4) in the legacy format's persistent id
    assert declared in raw
    huge = tmp_path / "huge.pth"
    huge.write_bytes(raw.replace(declared, b"cpuq\x06\x8a\x06" + (1 << 40).to_bytes(6, "little") + b"N"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(pickles.PickleRefused) as err:
        pickles.load_weights_only(huge, "upscaler")
    assert "huge.pth" in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KB


# --- ONNX face detector ----------------------------------------------------------------------------------------------


def test_an_onnx_detector_with_a_lying_initialiser_is_refused(tmp_path):
    good = tmp_path / "good_yunet.onnx"
    good.write_bytes(onnx_bytes([1], b"\0" * 4))
    lying = tmp_path / "lying_yunet.onnx"
    lying.write_bytes(onnx_bytes([10**9], b"\0" * 4))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ProtocolError) as err:
        FaceDetector(lying)
    assert err.value.code == "unsupported" and "lying_yunet.onnx" in err.value.message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KB: 4 GB were not allocated
    huge = tmp_path / "huge_yunet.onnx"
    huge.write_bytes(onnx_bytes([3 << 20], b"\0" * (12 << 20)))
    with pytest.raises(ProtocolError) as err:
        FaceDetector(huge)
    assert "huge_yunet.onnx" in err.value.message and "0.2 MB" in err.value.message


# --- links and special files -----------------------------------------------------------------------------------------


def test_links_out_of_the_models_folder_and_special_files_are_refused_by_name(models, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "stray.safetensors").write_bytes(safetensors_bytes({}))
    (models / "loras" / "everything").symlink_to(tmp_path, target_is_directory=True)
    (models / "loras" / "elsewhere").symlink_to(outside, target_is_directory=True)
    os.mkfifo(models / "loras" / "pipe.safetensors")
    os.mkfifo(models / "checkpoints" / "pipe.gguf")
    (models / "upscale_models").mkdir()
    os.mkfifo(models / "upscale_models" / "4x-pipe.pth")
    (models / "loras" / "hostname.safetensors").symlink_to("/etc/hostname")

    result = {}
    scan = threading.Thread(target=lambda: result.update(listing(models)), daemon=True)
    scan.start()
    scan.join(60)
    assert not scan.is_alive(), "the scan blocked on a named pipe"
    found = result
    for name in ("everything", "elsewhere"):
        problem = found[("lora", name)]["problem"]
        assert "outside the models folders" in problem and "not searched" in problem, problem
    assert not any("stray" in name for _, name in found)  # the linked folder was not walked
    for kind, name, file in (
        ("lora", "pipe", "pipe.safetensors"),
        ("checkpoint", "pipe", "pipe.gguf"),
        ("upscaler", "4x-pipe", "4x-pipe.pth"),
    ):
        problem = found[(kind, name)]["problem"]
        assert file in problem and "not a regular file" in problem, problem
    assert "hostname.safetensors" in found[("lora", "hostname")]["problem"]  # a linked file is read as a model
    assert_good_still_listed(found)


def test_pickles_are_refused_on_a_torch_whose_weights_only_loader_has_a_known_hole(tmp_path, monkeypatch):
    path = tmp_path / "4x-fine.pth"
    torch.save({"conv_first.weight": torch.zeros(2)}, path)
    assert "conv_first.weight" in pickles.load_weights_only(path)
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.5.1"))
    with pytest.raises(pickles.PickleRefused) as err:
        pickles.load_weights_only(path, "upscaler")
    assert "4x-fine.pth" in str(err.value) and "CVE-2025-32434" in str(err.value)


def test_pickled_upscalers_are_listed_by_default_and_other_pickles_only_when_allowed(tmp_path):
    for folder, name in (("upscale_models", "4x-plain.pth"), ("checkpoints", "plain.ckpt"), ("loras", "plain.pt")):
        (tmp_path / folder).mkdir()
        torch.save({"w": torch.zeros(1)}, tmp_path / folder / name)
    kinds = {(e["kind"], e["name"]) for e in ModelRegistry([tmp_path]).listing()}
    assert kinds == {("upscaler", "4x-plain")}
    allowed = {(e["kind"], e["name"]) for e in ModelRegistry([tmp_path], allow_pickle=True).listing()}
    assert allowed == {("upscaler", "4x-plain"), ("checkpoint", "plain"), ("lora", "plain")}
