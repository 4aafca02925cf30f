"""Trained detector weights for the tests, as a package ships them: MediaPipe 0.10.21's Python wheel (Apache-2.0,
Google) carries its palm detectors and its short-range face detector (BlazeFace) as ``.tflite`` files, which OpenCV
runs itself. Only those files are used, never the ``mediapipe`` package: its requirements (opencv-contrib-python among
them, which would replace the server's OpenCV; matplotlib, jax in some versions) are more than three weights files
justify. An installed ``mediapipe`` 0.10.21 is read in place; otherwise pip fetches the wheel once (no dependencies,
35.6 MB), the three files are taken out, checked against their SHA-256 and kept in the tests' cache folder."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

VERSION = "0.10.21"
FILES = {  # path in the wheel -> SHA-256
    "mediapipe/modules/palm_detection/palm_detection_full.tflite": "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    "mediapipe/modules/palm_detection/palm_detection_lite.tflite": "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
}
MAX_FILE = 16 << 20  # each of them is under 3 MB


def _good(path: Path, sha: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha


def _installed(wheel_path: str) -> Path:
    spec = importlib.util.find_spec("mediapipe")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent")
    return Path(list(spec.submodule_search_locations)[0]).parent / wheel_path


def _fetch(folder: Path) -> None:
    """The wheel from PyPI with pip (any platform's wheel carries the same files), its three files into ``folder``."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                "manylinux_2_28_x86_64",
                "--python-version",
                "3.11",
                "-d",
                tmp,
                f"mediapipe=={VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(Path(tmp).glob("mediapipe-*.whl"))
        if proc.returncode or not wheels:
            pytest.skip(
                f"MediaPipe {VERSION}'s wheel (trained detector weights) could not be fetched: "
                f"{proc.stderr.strip()[-300:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, sha in FILES.items():
                if wheel.getinfo(name).file_size > MAX_FILE:
                    raise ValueError(f"{name} in the wheel is larger than expected")
                data = wheel.read(name)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise ValueError(f"{name} in MediaPipe {VERSION}'s wheel has an unexpected SHA-256")
                folder.mkdir(parents=True, exist_ok=True)
                (folder / Path(name).name).write_bytes(data)


def trained(wheel_path: str, cache: Path) -> Path:
    """The trained weights file ``wheel_path`` (a key of ``FILES``): from an installed mediapipe, the cache, or
    fetched into the cache; the test is skipped, saying why, when none can be had."""
    sha = FILES[wheel_path]
    for path in (_installed(wheel_path), cache / f"mediapipe-{VERSION}" / Path(wheel_path).name):
        if _good(path, sha):
            return path
    _fetch(cache / f"mediapipe-{VERSION}")
    return cache / f"mediapipe-{VERSION}" / Path(wheel_path).name
