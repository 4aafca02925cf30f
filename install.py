#!/usr/bin/env python3
"""Set up Paintbridge with nothing but the standard library.

    python3 install.py            venv + server, the Krita and GIMP plugins, the models folder
    python3 install.py --dev      the same plus test tools and the system packages the real-host tests need

The server lives in a virtual environment (``.venv`` beside this file unless ``--venv`` says otherwise). The plugins are
copied into Krita's ``pykrita`` folder and GIMP 3's ``plug-ins`` folder, each self-contained: a copy of ``protocol/`` and
pure-Python ``msgpack`` and ``websockets`` travel inside them, and each records the command that starts the server.
Both plugins carry ``client/`` too (the editor-independent half of a plugin) next to their ``protocol/`` copy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parent
VENDORED = ("msgpack", "websockets")
OWN_PACKAGES = ("protocol", "client")  # copied into each plugin, next to each other
SERVER_FILE = "server.json"  # in each plugin folder: {"command": [...]}, read by client.server.read_server_command
# What the real-host tests need on a Debian machine: Krita under Xvfb, X tools, debootstrap for the GIMP 3 root.
DEV_APT_PACKAGES = ("krita", "python3-pyqt5", "xvfb", "xauth", "xdotool", "debootstrap", "imagemagick")
MODEL_SUBFOLDERS = ("checkpoints", "vae", "loras", "embeddings", "controlnet", "upscale_models", "annotators")


def log(msg: str) -> None:
    print(f"[install] {msg}", flush=True)


def run(cmd: Sequence[str], **kwargs) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


# --- system packages -------------------------------------------------------------------------------------------------

def missing_apt_packages(packages: Sequence[str]) -> List[str]:
    """Packages from ``packages`` that dpkg does not report as installed."""
    missing = []
    for name in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if "install ok installed" not in out.stdout:
            missing.append(name)
    return missing


def install_apt_packages(packages: Sequence[str]) -> None:
    """Install missing Debian packages (as root, or through sudo)."""
    if not shutil.which("dpkg-query"):
        log("not a Debian-like system: install by hand what the host tests need: " + ", ".join(packages))
        return
    missing = missing_apt_packages(packages)
    if not missing:
        return
    prefix: List[str] = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(prefix + ["apt-get", "update", "-q"], env=env)
    run(prefix + ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, env=env)


# --- the server's virtual environment --------------------------------------------------------------------------------

def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def server_command(venv_dir: Path) -> List[str]:
    """The command that starts the server; the plugins record it so they can start the server themselves."""
    return [str(venv_python(venv_dir)), "-m", "server", "serve"]


def ensure_venv(venv_dir: Path, dev: bool) -> Path:
    """Create the venv if needed and install Paintbridge (editable) with its dependencies into it."""
    python = venv_python(venv_dir)
    if not python.exists():
        log(f"creating the virtual environment {venv_dir}")
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    target = f"{REPO}[dev]" if dev else str(REPO)
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", target])
    return python


# --- plugins ---------------------------------------------------------------------------------------------------------

def _package_dir(name: str, python: Optional[Path]) -> Path:
    """Where package ``name`` lives for ``python``; by default for this interpreter, else the default venv's."""
    if python is None:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            return Path(spec.origin).parent
        python = venv_python(REPO / ".venv")
    out = subprocess.run([str(python), "-c", f"import {name}, os; print(os.path.dirname({name}.__file__))"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def vendor_runtime(dest: Path, python: Optional[Path] = None) -> None:
    """Make ``dest`` self-contained: ``dest/protocol`` and ``dest/client`` (copies of ours, side by side) and
    ``dest/vendor/{msgpack,websockets}``.

    Only pure-Python files are copied (compiled speed-ups are dropped; both packages fall back to pure Python), so the
    plugin works in any host Python 3.10+ whatever Python the server runs on.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.pyd", "*.c", "*.pyx", "README.md")
    for package in OWN_PACKAGES:
        if (dest / package).exists():
            shutil.rmtree(dest / package)
        shutil.copytree(REPO / package, dest / package, ignore=ignore)
    vendor = dest / "vendor"
    if vendor.exists():
        shutil.rmtree(vendor)
    vendor.mkdir(parents=True)
    for name in VENDORED:
        shutil.copytree(_package_dir(name, python), vendor / name, ignore=ignore)


def record_server_command(dest: Path, command: Optional[Sequence[str]]) -> Optional[Path]:
    """Record in ``dest/server.json`` how to start the local server (both plugins read it with
    ``client.server.read_server_command``; they add ``--host``/``--port``). A relative program path is made absolute:
    the editors start the server from their own working folders. No command: no file (the plugin then only says the
    server is down)."""
    path = Path(dest) / SERVER_FILE
    if not command:
        if path.exists():
            path.unlink()
        return None
    command = [str(part) for part in command]
    if not all(command):
        raise ValueError(f"the server command has an empty part: {command!r}")
    program = Path(command[0])
    if not program.is_absolute() and len(program.parts) > 1:  # not a bare name found on PATH; links kept (a venv)
        command[0] = os.path.abspath(program)
    path.write_text(json.dumps({"command": command}, indent=2) + "\n", encoding="utf-8")
    return path


def _load_installer(folder: str):
    path = REPO / folder / "installer.py"
    spec = importlib.util.spec_from_file_location(f"paintbridge_{folder}_installer", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def krita_paths() -> tuple:
    """(pykrita folder, kritarc) for this user."""
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return data / "krita" / "pykrita", config / "kritarc"


def gimp_plugins_dir() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "GIMP" / "3.0" / "plug-ins"


def install_plugins(venv_dir: Path) -> None:
    command = server_command(venv_dir)
    pykrita, kritarc = krita_paths()
    where = _load_installer("krita_plugin").install(pykrita, kritarc, command)
    log(f"Krita plugin installed in {where} (enabled in {kritarc}; restart Krita, then Settings > Dockers > Paintbridge)")
    where = _load_installer("gimp_plugin").install(gimp_plugins_dir(), command)
    log(f"GIMP 3 plug-in installed in {where} (Filters > Paintbridge)")


def ensure_models_dir() -> Path:
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    models = Path(os.environ.get("PAINTBRIDGE_MODELS") or data / "paintbridge" / "models")
    for sub in MODEL_SUBFOLDERS:
        (models / sub).mkdir(parents=True, exist_ok=True)
    return models


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Set up the Paintbridge server and plugins.")
    p.add_argument("--dev", action="store_true", help="also install test tools and the real-host test packages")
    p.add_argument("--venv", type=Path, default=REPO / ".venv", help="where the server's virtual environment goes")
    p.add_argument("--no-plugins", action="store_true", help="do not install the Krita and GIMP plugins")
    args = p.parse_args(argv)
    if sys.version_info < (3, 11):
        log(f"the server needs Python 3.11 or newer; this is {sys.version.split()[0]}")
        return 1
    if args.dev:
        install_apt_packages(DEV_APT_PACKAGES)
    ensure_venv(args.venv, args.dev)
    models = ensure_models_dir()
    log(f"models folder: {models} (checkpoints/, loras/, vae/, embeddings/, controlnet/, upscale_models/)")
    if not args.no_plugins:
        install_plugins(args.venv)
    log("done. Start the server with: " + " ".join(server_command(args.venv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
