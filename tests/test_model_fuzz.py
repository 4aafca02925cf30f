"""Property-based fuzzing of every model-file reader: random bytes and mutations of valid files may only ever end in the
reader's documented refusal (never another exception), and parsing a header never holds more than a bounded amount of
memory, whatever sizes the bytes claim."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from server.detect import FaceDetector
from server.models import configcheck, headers, identify, pickles
from server.models.registry import ModelRegistry
from test_hostile_models import gguf_bytes, onnx_bytes, safetensors_bytes

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
HEADER_MEMORY = 64 << 20


def _valid_safetensors() -> bytes:
    from safetensors.torch import save

    return save(
        {"a.weight": torch.ones(3, 4), "b.bias": torch.zeros(5, dtype=torch.float16)},
        metadata={"ss_network_module": "networks.lora"},
    )


def _valid_pickle() -> bytes:
    buffer = io.BytesIO()
    torch.save({"conv_first.weight": torch.ones(2, 3)}, buffer)
    return buffer.getvalue()


VALID = {
    "safetensors": _valid_safetensors(),
    "gguf": gguf_bytes(),
    "pth": _valid_pickle(),
    "onnx": onnx_bytes([1], b"\0" * 4),
}


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` with a few bytes overwritten, cut short, or with bytes inserted."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(("set", "cut", "insert", "int")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "int" and len(data) >= at + 8:  # a length or count replaced by an extreme value
            data[at : at + 8] = struct.pack("<Q", draw(st.sampled_from((0, 1, 255, 1 << 31, 1 << 40, (1 << 64) - 1))))
    return bytes(data)


def files(kind: str):
    return st.binary(max_size=512) | mutated(VALID[kind])


_json_leaf = st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=8)
_entry = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(sorted(headers.DTYPE_BITS) + ["F1024", ""]) | _json_leaf,
        "shape": st.lists(st.integers(-2, 1 << 40), max_size=5) | _json_leaf,
        "data_offsets": st.lists(st.integers(-2, 1 << 40), max_size=3) | _json_leaf,
    },
)
headers_json = st.dictionaries(st.text(max_size=12), _entry | _json_leaf, max_size=6)


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=files("safetensors") | headers_json.map(lambda h: safetensors_bytes(h, b"\0" * 64)))
def test_safetensors_headers_only_ever_refuse_with_header_error(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("st"), "x.safetensors", data)
    tracemalloc.start()
    try:
        shapes, _ = headers.safetensors_header(path)
    except headers.HeaderError as err:
        assert "x.safetensors" in str(err)
    else:  # accepted: every tensor lies inside the file, as safetensors itself agrees
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            assert set(fh.keys()) == set(shapes)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < HEADER_MEMORY


@FUZZ
@given(data=files("gguf"))
def test_gguf_files_only_ever_refuse_with_detect_error(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("gguf"), "x.gguf", data)
    try:
        identify.gguf_shapes(path)
    except identify.DetectError as err:
        assert "x.gguf" in str(err)


@FEW
@given(data=files("pth"))
def test_pickles_only_ever_refuse_with_pickle_refused(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("pth"), "x.pth", data)
    try:
        pickles.load_weights_only(path, "upscaler", mmap=True)
    except pickles.PickleRefused as err:
        assert "x.pth" in str(err)


_config_values = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(("hidden_size", "num_hidden_layers", "vocab_size", "block_out_channels", "rope_theta", "x"))
            | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=16,
)


@FUZZ
@given(data=st.binary(max_size=256) | _config_values.map(lambda v: json.dumps(v).encode()))
def test_configs_only_ever_refuse_with_config_error(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("cfg"), "config.json", data)
    try:
        config = configcheck.read_config(path)
    except configcheck.ConfigError as err:
        assert "config.json" in str(err)
    else:
        assert isinstance(config, dict)


@FEW
@given(data=files("onnx"))
def test_face_detector_files_only_ever_refuse_with_unsupported(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("onnx"), "face_detection_yunet_x.onnx", data)
    try:
        FaceDetector(path)
    except ProtocolError as err:
        assert err.code == "unsupported" and "face_detection_yunet_x.onnx" in err.message


@FEW
@given(
    blobs=st.lists(
        st.binary(max_size=256) | mutated(VALID["safetensors"]) | mutated(VALID["gguf"]), min_size=1, max_size=3
    )
)
def test_the_registry_lists_any_bytes_with_a_reason_and_never_fails(tmp_path_factory, blobs):
    root = tmp_path_factory.mktemp("models")
    names = []
    for i, blob in enumerate(blobs):
        for folder, suffix in (
            ("checkpoints", ".safetensors"),
            ("loras", ".safetensors"),
            ("vae", ".safetensors"),
            ("controlnet", ".safetensors"),
            ("embeddings", ".safetensors"),
            ("clip_vision", ".safetensors"),
            ("ipadapter", ".safetensors"),
            ("style_models", ".safetensors"),
            ("diffusion_models", ".gguf"),
        ):
            (root / folder).mkdir(exist_ok=True)
            (root / folder / f"f{i}{suffix}").write_bytes(blob)
        names.append(f"f{i}")
    for entry in ModelRegistry([root]).listing():
        if entry.get("problem"):
            assert not entry["problem"].startswith("cannot be inspected"), entry  # a documented refusal, not a crash


def test_the_fuzzed_readers_accept_their_valid_files(tmp_path):
    assert headers.safetensors_header(_write(tmp_path, "a.safetensors", VALID["safetensors"]))[0]["a.weight"] == (3, 4)
    assert identify.gguf_shapes(_write(tmp_path, "a.gguf", VALID["gguf"]))["img_in.weight"] == (4, 4)
    assert "conv_first.weight" in pickles.load_weights_only(_write(tmp_path, "a.pth", VALID["pth"]))
    FaceDetector(_write(tmp_path, "a.onnx", VALID["onnx"]))


@pytest.mark.parametrize("kind", sorted(VALID))
def test_mutations_reach_past_the_first_check(kind):
    """The mutation strategy keeps most of a valid file, so fuzzing explores deep parts of each reader."""
    assert len(VALID[kind]) > 16
