"""Install the GIMP 3 plug-in into a ``plug-ins`` folder (standard library only; ``install.py`` calls ``install``).

Layout of the installed plug-in (GIMP runs ``plug-ins/NAME/NAME.py``)::

    plug-ins/paintbridge/
        paintbridge.py      entry point (executable)
        gimp_plugin/        this package
        protocol/           copy of the wire contract         } written by install.vendor_runtime
        client/             copy of the editor-independent core }
        vendor/             pure-Python msgpack, websockets   }
        server.json         the command that starts the server (install.record_server_command)

The folder is assembled beside the target and swapped in, so an interrupted install leaves the old one working.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Optional

NAME = "paintbridge"
PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
ENTRY = "paintbridge.py"


def default_plugins_dirs() -> List[Path]:
    """Where GIMP 3 looks for a user's plug-ins on this system (first = the usual one)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
        return [base / "GIMP" / "3.0" / "plug-ins"]
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins"]
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [config / "GIMP" / "3.0" / "plug-ins",
            home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0" / "plug-ins"]


def _install_module() -> ModuleType:
    """The top-level install.py (already loaded, or loaded from the source checkout)."""
    for name in ("install", "__main__"):
        module = sys.modules.get(name)
        if module is not None and callable(getattr(module, "vendor_runtime", None)):
            return module
    path = REPO / "install.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the GIMP plug-in is installed from a Paintbridge source checkout")
    spec = importlib.util.spec_from_file_location("paintbridge_install", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def install(plugins_dir: Path, server_command: Optional[List[str]] = None) -> Path:
    """Copy the plug-in into ``plugins_dir/paintbridge`` (replacing an older copy) and return that folder.

    ``server_command`` (e.g. ``[venv python, "-m", "server", "serve"]``) is recorded so the plug-in can start a local
    server that is not running; without it the plug-in only reports that the server is down.
    """
    plugins_dir = Path(plugins_dir)
    plugins_dir.mkdir(parents=True, exist_ok=True)
    dest = plugins_dir / NAME
    staging = plugins_dir / f".{NAME}.installing"
    old = plugins_dir / f".{NAME}.old"
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    staging.mkdir()
    try:
        package = staging / "gimp_plugin"
        package.mkdir()
        for source in sorted(PACKAGE_DIR.glob("*.py")):
            if source.name not in (ENTRY, "installer.py"):
                shutil.copy2(source, package / source.name)
        entry = staging / ENTRY
        shutil.copy2(PACKAGE_DIR / ENTRY, entry)
        entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        install_py = _install_module()
        install_py.vendor_runtime(staging)
        install_py.record_server_command(staging, server_command)
        if dest.exists() or dest.is_symlink():
            if dest.is_symlink():
                dest.unlink()
            else:
                dest.rename(old)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not dest.exists():
            old.rename(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return dest


if __name__ == "__main__":
    target = install(Path(sys.argv[1]) if len(sys.argv) > 1 else default_plugins_dirs()[0])
    print(f"GIMP 3 plug-in installed in {target}")
