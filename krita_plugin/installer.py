"""Install the Paintbridge plugin into a Krita ``pykrita`` folder and enable it in ``kritarc`` (stdlib only).

Called by the top-level ``install.py``; the installed folder is self-contained: the plugin package, a copy of
``protocol`` and pure-Python ``msgpack``/``websockets`` (both put there by ``install.vendor_runtime``), and
``server.json`` recording how to start the local server.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

PLUGIN_NAME = "paintbridge"
_SOURCE = Path(__file__).resolve().parent


def install(
    pykrita_dir: Path,
    kritarc: Path,
    server_command: Sequence[str],
    vendor_runtime: Optional[Callable[[Path], None]] = None,
) -> Path:
    """Copy the plugin into ``pykrita_dir``, vendor its runtime, record ``server_command``, enable it in ``kritarc``.

    ``vendor_runtime(dest)`` defaults to ``install.vendor_runtime`` of the repository's ``install.py``.
    Returns the installed package folder. An older installed copy is replaced.
    """
    pykrita_dir = Path(pykrita_dir)
    if not server_command or not all(isinstance(part, str) and part for part in server_command):
        raise ValueError(f"server_command must be a non-empty list of non-empty strings, got {server_command!r}")
    pykrita_dir.mkdir(parents=True, exist_ok=True)
    dest = pykrita_dir / PLUGIN_NAME
    staging = pykrita_dir / f".{PLUGIN_NAME}.installing"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(_SOURCE / PLUGIN_NAME, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if vendor_runtime is None:
        vendor_runtime = _repo_vendor_runtime()
    vendor_runtime(staging)
    write_server_config(staging, server_command)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    shutil.copyfile(_SOURCE / f"{PLUGIN_NAME}.desktop", pykrita_dir / f"{PLUGIN_NAME}.desktop")
    enable_in_kritarc(Path(kritarc), PLUGIN_NAME)
    return dest


def _repo_vendor_runtime() -> Callable[[Path], None]:
    """``vendor_runtime`` of the repository's ``install.py`` (one folder above this one)."""
    repo = str(_SOURCE.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    import install as repo_install

    return repo_install.vendor_runtime


def write_server_config(plugin_dir: Path, server_command: Sequence[str]) -> Path:
    """Record the command that starts the local server in ``server.json`` (the plugin adds ``--host``/``--port``):
    ``install.record_server_command``, the one writer both plugins share."""
    repo = str(_SOURCE.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    import install as repo_install

    return repo_install.record_server_command(Path(plugin_dir), list(server_command))


def enable_in_kritarc(kritarc: Path, name: str = PLUGIN_NAME) -> None:
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
