"""Install the Krita plugin and the GIMP 3 plug-in (standard library only), one way for both editors.

Each plugin folder is self-contained: the plugin's own package, copies of ``protocol/`` and ``client/`` side by side,
pure-Python ``msgpack``/``websockets`` in ``vendor/`` (``vendor_runtime``), and ``server.json`` with the command that
starts the local server (``record_server_command``). Each is assembled beside its target and swapped in
(``swap_in``): an install that fails half-way leaves the old copy working.

    pykrita/paintbridge.desktop          plug-ins/paintbridge/
    pykrita/paintbridge/                     paintbridge.py    entry point (executable)
        (krita_plugin/paintbridge/*)         gimp_plugin/      the plug-in's package
        protocol/ client/ vendor/            protocol/ client/ vendor/
        server.json                          server.json
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
NAME = "paintbridge"  # the plugin's folder in both editors
VENDORED = ("msgpack", "websockets")
OWN_PACKAGES = ("protocol", "client")  # copied into each plugin, next to each other
SERVER_FILE = "server.json"  # in each plugin folder: {"command": [...]}, read by client.server.read_server_command
GIMP_ENTRY = "paintbridge.py"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.pyd", "*.c", "*.pyx", "README.md")


def package_dir(name: str, python: Optional[Path] = None) -> Path:
    """Where package ``name`` lives for ``python`` (None: this interpreter)."""
    if python is None:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"{name} is not installed for {sys.executable}: the plugins vendor it from there")
        return Path(spec.origin).parent
    out = subprocess.run(
        [str(python), "-c", f"import {name}, os; print(os.path.dirname({name}.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def vendor_runtime(dest: Path, python: Optional[Path] = None) -> None:
    """Make ``dest`` self-contained: ``dest/protocol`` and ``dest/client`` (copies of ours, side by side) and
    ``dest/vendor/{msgpack,websockets}`` from ``python``'s packages (None: this interpreter's).

    Only pure-Python files are copied (compiled speed-ups are dropped; both packages fall back to pure Python), so the
    plugin works in any host Python 3.10+ whatever Python the server runs on.
    """
    for package in OWN_PACKAGES:
        if (dest / package).exists():
            shutil.rmtree(dest / package)
        shutil.copytree(REPO / package, dest / package, ignore=IGNORED)
    vendor = dest / "vendor"
    if vendor.exists():
        shutil.rmtree(vendor)
    vendor.mkdir(parents=True)
    for name in VENDORED:
        shutil.copytree(package_dir(name, python), vendor / name, ignore=IGNORED)


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


def swap_in(dest: Path, build: Callable[[Path], None]) -> Path:
    """Assemble a folder with ``build(staging)`` beside ``dest`` and swap it in for ``dest``; on any failure the old
    ``dest`` is back as it was and the half-built folder is gone. Returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.installing")
    old = dest.with_name(f".{dest.name}.old")
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    staging.mkdir()
    try:
        build(staging)
        if dest.is_symlink():
            dest.unlink()
        elif dest.exists():
            dest.rename(old)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not dest.exists():
            old.rename(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _checked_command(server_command: Optional[Sequence[str]]) -> Optional[List[str]]:
    if server_command is None:
        return None
    if not server_command or not all(isinstance(part, str) and part for part in server_command):
        raise ValueError(f"server_command must be a non-empty list of non-empty strings, got {server_command!r}")
    return list(server_command)


def install_krita(
    pykrita_dir: Path, kritarc: Path, server_command: Optional[Sequence[str]], python: Optional[Path] = None
) -> Path:
    """The Krita plugin into ``pykrita_dir/paintbridge`` (with its ``.desktop`` file), enabled in ``kritarc``;
    ``python``: whose msgpack/websockets to vendor. Returns the plugin's folder."""
    command = _checked_command(server_command)
    source = REPO / "krita_plugin"

    def build(staging: Path) -> None:
        shutil.copytree(
            source / NAME, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True
        )
        vendor_runtime(staging, python)
        record_server_command(staging, command)

    dest = swap_in(Path(pykrita_dir) / NAME, build)
    shutil.copyfile(source / f"{NAME}.desktop", Path(pykrita_dir) / f"{NAME}.desktop")
    enable_in_kritarc(Path(kritarc), NAME)
    return dest


def install_gimp(
    plugins_dir: Path, server_command: Optional[Sequence[str]] = None, python: Optional[Path] = None
) -> Path:
    """The GIMP 3 plug-in into ``plugins_dir/paintbridge`` (GIMP runs ``paintbridge/paintbridge.py``); ``python``:
    whose msgpack/websockets to vendor. Without a server command the plug-in only reports that the server is down.
    Returns the plug-in's folder."""
    command = _checked_command(server_command)
    source = REPO / "gimp_plugin"

    def build(staging: Path) -> None:
        package = staging / "gimp_plugin"
        package.mkdir()
        for path in sorted(source.glob("*.py")):
            if path.name != GIMP_ENTRY:
                shutil.copy2(path, package / path.name)
        entry = staging / GIMP_ENTRY
        shutil.copy2(source / GIMP_ENTRY, entry)
        entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        vendor_runtime(staging, python)
        record_server_command(staging, command)

    return swap_in(Path(plugins_dir) / NAME, build)


def enable_in_kritarc(kritarc: Path, name: str = NAME) -> None:
    """Set ``enable_<name>=true`` in the ``[python]`` group of ``kritarc``, keeping every other line as it was."""
    lines = kritarc.read_text(encoding="utf-8").splitlines() if kritarc.exists() else []
    key = f"enable_{name}"
    start = next((i for i, line in enumerate(lines) if line.strip() == "[python]"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[python]", f"{key}=true"]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        body = [i for i in range(start + 1, end) if lines[i].split("=", 1)[0].strip() == key]
        if body:
            lines[body[0]] = f"{key}=true"
            for i in reversed(body[1:]):
                del lines[i]
        else:
            insert_at = end
            while insert_at > start + 1 and not lines[insert_at - 1].strip():
                insert_at -= 1
            lines.insert(insert_at, f"{key}=true")
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    kritarc.write_text("\n".join(lines) + "\n", encoding="utf-8")
