"""Which PyTorch build fits this machine, and from which package index.

Detection reads what the system says about its GPUs (``nvidia-smi``, ``rocminfo``, ``lspci``, Windows' video
controller names, macOS' ``sysctl``), never a Python package, so it works before anything is installed.

| hardware                | build   | index                                              |
|-------------------------|---------|----------------------------------------------------|
| NVIDIA, Linux           | cuda    | the default index (PyPI's Linux wheels are CUDA builds) |
| NVIDIA, Windows         | cuda    | PyTorch's ``cu128`` index (PyPI's Windows wheels are CPU only) |
| AMD, Linux              | rocm    | PyTorch's ``rocm6.4`` index                        |
| Intel Arc (Linux, Win)  | xpu     | PyTorch's ``xpu`` index                            |
| Apple silicon           | mps     | the default index (macOS wheels include MPS)       |
| none of these, Linux    | cpu     | PyTorch's ``cpu`` index (no 5 GB of CUDA libraries)|
| none of these, Win/Mac  | cpu     | the default index (already CPU builds)             |

The index versions (cu128, rocm6.4) follow PyTorch's current releases; keep ``INDEXES`` in step with
https://pytorch.org/get-started/locally/ when they move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .system import System

PYTORCH_INDEX = "https://download.pytorch.org/whl"
INDEXES = {
    "cuda": f"{PYTORCH_INDEX}/cu128",
    "rocm": f"{PYTORCH_INDEX}/rocm6.4",
    "xpu": f"{PYTORCH_INDEX}/xpu",
    "cpu": f"{PYTORCH_INDEX}/cpu",
}
BUILDS = ("cpu", "cuda", "rocm", "xpu", "mps", "default")
# Rough download + install size of torch and torchvision per build, in GB (for the disk-space check).
SIZES_GB = {"cuda": 6.0, "rocm": 16.0, "xpu": 5.0, "cpu": 1.2, "mps": 0.9}
OTHER_PACKAGES_GB = 1.5  # diffusers, transformers, opencv, ... in the venv
_INTEL_DISCRETE = re.compile(r"\b(arc|dg2|battlemage|alchemist|data center gpu)\b", re.IGNORECASE)
_AMD = re.compile(r"\b(amd|ati|radeon)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Hardware:
    """What was found: ``gpu`` is "nvidia", "amd", "intel", "apple" or None; ``detail`` says from where."""

    gpu: Optional[str]
    detail: str


@dataclass(frozen=True)
class TorchChoice:
    """The build to install and the index it comes from (None: the package index pip is set up with)."""

    build: str
    index_url: Optional[str]
    reason: str

    def describe(self) -> str:
        source = f"from {self.index_url}" if self.index_url else "from your usual package index (PyPI)"
        return f"PyTorch build: {self.build} ({self.reason}), {source}"

    def size_gb(self, system: System) -> float:
        build = self.build
        if build == "default":
            build = "cuda" if system.platform.startswith("linux") else "cpu"
        return SIZES_GB.get(build, SIZES_GB["cuda"])


def _pci_gpus(system: System) -> str:
    """lspci's display controllers (VGA, 3D, Display lines)."""
    text = system.output(["lspci"]) or ""
    return "\n".join(line for line in text.splitlines() if re.search(r"VGA|3D controller|Display controller", line))


def _windows_gpus(system: System) -> str:
    return system.output(["powershell", "-NoProfile", "-Command", "(Get-CimInstance Win32_VideoController).Name"]) or ""


def detect_hardware(system: System) -> Hardware:
    """The GPU family PyTorch can use here, from the system's own tools."""
    if system.macos:
        arm = (
            system.machine.lower() in ("arm64", "aarch64")
            or (system.output(["sysctl", "-n", "hw.optional.arm64"]) or "").strip() == "1"
        )
        return (
            Hardware("apple", "Apple silicon (sysctl hw.optional.arm64)")
            if arm
            else Hardware(None, "an Intel Mac (no GPU PyTorch can use)")
        )
    if system.which("nvidia-smi"):
        names = system.output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
        if names and names.strip():
            return Hardware("nvidia", f"nvidia-smi: {names.strip().splitlines()[0]}")
    if system.windows:
        names = _windows_gpus(system)
        for line in names.splitlines():
            if "nvidia" in line.lower():
                return Hardware("nvidia", f"video controller: {line.strip()}")
        for line in names.splitlines():
            if "intel" in line.lower() and _INTEL_DISCRETE.search(line):
                return Hardware("intel", f"video controller: {line.strip()}")
        for line in names.splitlines():
            if _AMD.search(line):
                return Hardware("amd", f"video controller: {line.strip()}")
        return Hardware(None, "no NVIDIA, AMD or Intel Arc video controller")
    if system.which("rocminfo"):
        info = system.output(["rocminfo"]) or ""
        if re.search(r"Name:\s+gfx\d+", info):
            return Hardware("amd", "rocminfo lists a gfx agent")
    gpus = _pci_gpus(system)
    for line in gpus.splitlines():
        low = line.lower()
        if "nvidia" in low:
            return Hardware("nvidia", f"lspci: {line.strip()} (but nvidia-smi does not answer: install the driver)")
        if _AMD.search(line):
            return Hardware("amd", f"lspci: {line.strip()}")
        if "intel" in low and _INTEL_DISCRETE.search(line):
            return Hardware("intel", f"lspci: {line.strip()}")
    return Hardware(None, "no NVIDIA, AMD or Intel Arc GPU found")


def choose_torch(system: System, hardware: Hardware, override: Optional[str] = None) -> TorchChoice:
    """The build for ``hardware`` (or the one ``--torch`` names) and its index."""
    linux = system.platform.startswith("linux")
    if override:
        if override not in BUILDS:
            raise ValueError(f"--torch must be one of {', '.join(BUILDS)}, not {override!r}")
        return _build(system, override, "chosen with --torch")
    if hardware.gpu == "nvidia":
        return _build(system, "cuda", hardware.detail)
    if hardware.gpu == "amd":
        if linux:
            return _build(system, "rocm", hardware.detail)
        return TorchChoice(
            "cpu", None, f"{hardware.detail}; PyTorch has no ROCm build for this system, so the CPU build"
        )
    if hardware.gpu == "intel":
        return _build(system, "xpu", hardware.detail)
    if hardware.gpu == "apple":
        return _build(system, "mps", hardware.detail)
    return _build(system, "cpu", hardware.detail)


def _build(system: System, build: str, reason: str) -> TorchChoice:
    linux = system.platform.startswith("linux")
    if build == "default":
        return TorchChoice("default", None, reason)
    if build == "mps":
        if not system.macos:
            raise ValueError("--torch mps is for macOS on Apple silicon only")
        return TorchChoice("mps", None, reason)
    if system.macos:
        if build != "cpu":
            raise ValueError(f"--torch {build}: PyTorch has no {build} build for macOS (use mps or cpu)")
        return TorchChoice("cpu", None, reason)
    if build == "cuda" and linux:
        return TorchChoice("cuda", None, reason)
    if build == "rocm" and not linux:
        raise ValueError("--torch rocm: PyTorch's ROCm builds are for Linux only")
    if build == "cpu" and not linux:
        return TorchChoice("cpu", None, reason)
    return TorchChoice(build, INDEXES[build], reason)


def reachable_choice(system: System, choice: TorchChoice) -> tuple:
    """(choice, note): ``choice`` when its index answers, else the default build and a note that says so."""
    if choice.index_url is None or system.reachable(choice.index_url + "/"):
        return choice, ""
    fallback = TorchChoice("default", None, f"fallback: {choice.index_url} cannot be reached")
    note = (
        f"PyTorch's package index for the {choice.build} build ({choice.index_url}) cannot be reached from here, "
        f"so the default build from your usual package index is installed instead"
        + (
            " (on Linux that is a CUDA build, about 5 GB, which also runs on the CPU)"
            if system.platform.startswith("linux")
            else ""
        )
        + f". Run again with --torch {choice.build} once that index is reachable."
    )
    return fallback, note
