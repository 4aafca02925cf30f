"""Run a real Krita (Debian's 5.1.5) headless under Xvfb with pykrita plugins, isolated from the user's own Krita.

Every run gets its own HOME and XDG folders, copied from a template HOME that one cold start initialised once (Krita
builds its resource database on first start: ~14 s; a run from the copied template then starts in a few seconds). The
template is cached under ``${PAINTBRIDGE_CACHE:-~/.cache/paintbridge}/hosts/krita-<version>/home`` and rebuilt when
missing. Success is judged by a result file a plugin writes, never by Krita's exit code alone (a second Krita with the
same HOME hands over to the first one and exits 0 having run nothing).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from krita_plugin.installer import enable_in_kritarc

KRITA = shutil.which("krita") or "/usr/bin/krita"
XVFB_RUN = shutil.which("xvfb-run") or "/usr/bin/xvfb-run"
SCREEN = "1600x1000x24"

# The smallest plugin that proves Krita ran Python: it writes a file and quits (used to build the template HOME).
_QUIT_PLUGIN = '''
import os
from krita import Krita
from PyQt5.QtCore import QTimer

def _quit():
    with open(os.environ["PB_TEMPLATE_DONE"], "w") as f:
        f.write("ok")
    Krita.instance().action("file_quit").trigger()

Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, _quit))
'''


class KritaUnavailable(RuntimeError):
    """Krita or Xvfb is not installed here."""


def cache_dir() -> Path:
    """``$PAINTBRIDGE_CACHE`` or ``~/.cache/paintbridge``."""
    return Path(os.environ.get("PAINTBRIDGE_CACHE") or Path.home() / ".cache" / "paintbridge")


def missing_tools() -> list[str]:
    """What this machine lacks to run Krita headless (empty when all is there)."""
    return [tool for tool in (KRITA, XVFB_RUN, "/usr/bin/xauth") if not Path(tool).exists()]


def krita_version() -> str:
    """Krita's version as the Debian package states it (no display needed), e.g. ``5.1.5``."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "krita"], capture_output=True, text=True).stdout
    # "1:5.1.5+dfsg-2+deb12u1" -> "5.1.5"
    return out.split(":", 1)[-1].split("+", 1)[0].split("-", 1)[0] or "unknown"


@dataclass
class KritaHome:
    """One isolated set of folders for a Krita run."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def config(self) -> Path:
        return self.home / ".config"

    @property
    def data(self) -> Path:
        return self.home / ".local" / "share"

    @property
    def pykrita(self) -> Path:
        return self.data / "krita" / "pykrita"

    @property
    def kritarc(self) -> Path:
        return self.config / "kritarc"

    def env(self, extra: Optional[Mapping[str, str]] = None) -> dict:
        runtime = self.root / "runtime"
        tmp = self.root / "tmp"
        runtime.mkdir(mode=0o700, exist_ok=True)
        tmp.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.config),
            "XDG_DATA_HOME": str(self.data),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_RUNTIME_DIR": str(runtime),
            "TMPDIR": str(tmp),
            "QT_QPA_PLATFORM": "xcb",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(extra or {})
        return env


def write_plugin(pykrita: Path, name: str, source: str, enable_in: Optional[Path] = None) -> None:
    """Install a one-file pykrita plugin ``name`` (desktop file + package) and enable it in ``enable_in`` (a kritarc)."""
    pykrita.mkdir(parents=True, exist_ok=True)
    (pykrita / f"{name}.desktop").write_text(
        "[Desktop Entry]\nType=Service\nServiceTypes=Krita/PythonPlugin\n"
        f"X-KDE-Library={name}\nX-Python-2-Compatible=false\nName={name}\nComment=test plugin\n"
    )
    pkg = pykrita / name
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text(source)
    if enable_in is not None:
        enable_plugin(enable_in, name)


def enable_plugin(kritarc: Path, name: str) -> None:
    """Set ``enable_<name>=true`` in the ``[python]`` group of a kritarc (the installer's own code)."""
    enable_in_kritarc(kritarc, name)


def _run(home: KritaHome, timeout: float, env_extra: Optional[Mapping[str, str]] = None,
         log_name: str = "krita.log") -> subprocess.CompletedProcess:
    log = home.root / log_name
    cmd = ["timeout", "-k", "10", str(int(timeout)), XVFB_RUN, "-a", "-s", f"-screen 0 {SCREEN}", KRITA, "--nosplash"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=home.env(env_extra), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(home.root))
        try:
            rc = proc.wait(timeout + 20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    return subprocess.CompletedProcess(cmd, rc, log.read_bytes(), b"")


def template_home() -> Path:
    """The cached, initialised template HOME (built on first use, atomically, under a lock)."""
    if missing_tools():
        raise KritaUnavailable(f"missing: {', '.join(missing_tools())}")
    base = cache_dir() / "hosts" / f"krita-{krita_version()}"
    ready = base / "home"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_dir() and (ready / ".paintbridge-template-ready").exists():
            return ready
        build = Path(tempfile.mkdtemp(prefix="template-", dir=base))
        kh = KritaHome(build)
        kh.home.mkdir(parents=True)
        done = build / "done"
        write_plugin(kh.pykrita, "pb_template_quit", _QUIT_PLUGIN, enable_in=kh.kritarc)
        result = _run(kh, 120, {"PB_TEMPLATE_DONE": str(done)})
        if not done.exists():
            raise RuntimeError(f"Krita did not start to build the template HOME:\n{result.stdout.decode(errors='replace')[-3000:]}")
        shutil.rmtree(kh.pykrita / "pb_template_quit")
        (kh.pykrita / "pb_template_quit.desktop").unlink()
        (kh.home / ".paintbridge-template-ready").write_text("ok")
        if ready.exists():
            shutil.rmtree(ready)
        kh.home.rename(ready)
        shutil.rmtree(build, ignore_errors=True)
        return ready


def new_home(workdir: Path) -> KritaHome:
    """A fresh isolated Krita HOME in ``workdir``, copied from the template."""
    kh = KritaHome(Path(workdir))
    kh.root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template_home(), kh.home, symlinks=True)
    return kh


def run_krita(home: KritaHome, result_file: Path, timeout: float = 180,
              env_extra: Optional[Mapping[str, str]] = None) -> dict:
    """Start Krita in ``home`` and wait for it to quit; returns the JSON a driver plugin wrote to ``result_file``.

    Raises RuntimeError with the tail of Krita's log when no result file was written.
    """
    started = time.monotonic()
    proc = _run(home, timeout, env_extra)
    elapsed = time.monotonic() - started
    log = proc.stdout.decode(errors="replace")
    if not result_file.exists():
        raise RuntimeError(f"Krita exited ({proc.returncode}) after {elapsed:.1f} s without writing "
                           f"{result_file.name}; log tail:\n{log[-6000:]}")
    data = json.loads(result_file.read_text())
    data.setdefault("_krita", {})
    data["_krita"].update({"returncode": proc.returncode, "elapsed": elapsed, "log_tail": log[-4000:]})
    return data
