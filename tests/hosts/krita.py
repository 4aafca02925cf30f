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
from typing import Mapping, Optional, Sequence

from pbsetup.plugins import enable_in_kritarc

SCREEN = "1600x1000x24"

# The smallest plugin that proves Krita ran Python: it writes a file and quits (used to build the template HOME).
_QUIT_PLUGIN = """
import os
from krita import Krita
try:
    from PyQt5.QtCore import QTimer
except ImportError:  # Krita 6
    from PyQt6.QtCore import QTimer

def _quit():
    with open(os.environ["PB_TEMPLATE_DONE"], "w") as f:
        f.write("ok")
    Krita.instance().action("file_quit").trigger()

Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, _quit))
"""


class KritaUnavailable(RuntimeError):
    """Krita or Xvfb is not installed here."""


def cache_dir() -> Path:
    """``$PAINTBRIDGE_CACHE`` or ``~/.cache/paintbridge``."""
    return Path(os.environ.get("PAINTBRIDGE_CACHE") or Path.home() / ".cache" / "paintbridge")


@dataclass(frozen=True)
class KritaHost:
    """A Krita installation: this machine's (``root`` None) or one inside a Debian root folder entered with chroot."""

    root: Optional[Path] = None

    def path(self, inside: str) -> Path:
        """A path as seen from this machine for a path inside the host."""
        return Path(inside) if self.root is None else self.root / inside.lstrip("/")

    def inside(self, path: Path) -> str:
        """A path on this machine as Krita sees it (it must lie inside the root)."""
        return str(path) if self.root is None else "/" + str(Path(path).relative_to(self.root))

    def missing_tools(self) -> list[str]:
        """What this host lacks to run Krita headless (empty when all is there)."""
        tools = ["/usr/bin/krita", "/usr/bin/xvfb-run", "/usr/bin/xauth"]
        missing = [t for t in tools if not self.path(t).exists()]
        if self.root is not None and os.geteuid() != 0:
            missing.append("root privileges (chroot)")
        return missing

    def version(self) -> str:
        """Krita's version as the Debian package states it, e.g. ``5.1.5``."""
        cmd = ["dpkg-query", "-W", "-f=${Version}", "krita"]
        if self.root is not None:
            cmd = ["chroot", str(self.root)] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        # "1:5.1.5+dfsg-2+deb12u1" -> "5.1.5"
        return out.split(":", 1)[-1].split("+", 1)[0].split("-", 1)[0] or "unknown"

    def scratch(self, prefix: str = "krita-") -> Path:
        """A fresh folder Krita can see (under the root's /tmp for a chroot host)."""
        base = None if self.root is None else self.root / "tmp"
        return Path(tempfile.mkdtemp(prefix=prefix, dir=base))

    def command(self, env: Mapping[str, str], timeout: float) -> list:
        krita = [
            "timeout",
            "-k",
            "10",
            str(int(timeout)),
            "xvfb-run",
            "-a",
            "-s",
            f"-screen 0 {SCREEN}",
            "krita",
            "--nosplash",
        ]
        if self.root is None:
            return krita
        return ["chroot", str(self.root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *krita]


NATIVE = KritaHost()


def trixie_host() -> KritaHost:
    """Debian 13's Krita 5.2.9 (embedded Python 3.13) in the cached trixie root; krita and python3-pyqt5 are added
    to the root on first use."""
    from . import trixie

    return KritaHost(trixie.ensure_trixie_root(["krita", "python3-pyqt5"]))


def krita6_host() -> KritaHost:
    """Krita 6 (Qt 6, PyQt6) from Debian experimental in a cached Debian unstable root."""
    from . import trixie

    return KritaHost(trixie.ensure_root(trixie.KRITA6))


def missing_tools() -> list[str]:
    """What this machine lacks to run its own Krita headless (empty when all is there)."""
    return NATIVE.missing_tools()


@dataclass
class KritaHome:
    """One isolated set of folders for a Krita run (``root`` is a path on this machine)."""

    root: Path
    host: KritaHost = NATIVE

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
        """The environment of a run (paths as Krita sees them)."""
        runtime = self.root / "runtime"
        tmp = self.root / "tmp"
        runtime.mkdir(mode=0o700, exist_ok=True)
        tmp.mkdir(exist_ok=True)
        inside = self.host.inside
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin" if self.host.root else os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": inside(self.home),
            "XDG_CONFIG_HOME": inside(self.config),
            "XDG_DATA_HOME": inside(self.data),
            "XDG_CACHE_HOME": inside(self.home / ".cache"),
            "XDG_RUNTIME_DIR": inside(runtime),
            "TMPDIR": inside(tmp),
            "QT_QPA_PLATFORM": "xcb",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(extra or {})
        return env


def write_plugin(pykrita: Path, name: str, source: str, enable_in: Optional[Path] = None) -> None:
    """Install a one-file pykrita plugin ``name`` (desktop file + package); enable it in ``enable_in`` (a kritarc)."""
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


def _run(
    home: KritaHome, timeout: float, env_extra: Optional[Mapping[str, str]] = None, log_name: str = "krita.log"
) -> subprocess.CompletedProcess:
    log = home.root / log_name
    env = home.env(env_extra)
    cmd = home.host.command(env, timeout)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env if home.host.root is None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(home.root),
        )
        try:
            rc = proc.wait(timeout + 20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    return subprocess.CompletedProcess(cmd, rc, log.read_bytes(), b"")


def template_home(host: KritaHost = NATIVE) -> Path:
    """The cached, initialised template HOME for ``host`` (built on first use, atomically, under a lock)."""
    if host.missing_tools():
        raise KritaUnavailable(f"missing: {', '.join(host.missing_tools())}")
    base = cache_dir() / "hosts" / f"krita-{host.version()}"
    ready = base / "home"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_dir() and (ready / ".paintbridge-template-ready").exists():
            return ready
        build = host.scratch("template-")
        kh = KritaHome(build, host)
        kh.home.mkdir(parents=True)
        done = build / "done"
        write_plugin(kh.pykrita, "pb_template_quit", _QUIT_PLUGIN, enable_in=kh.kritarc)
        result = _run(kh, 120, {"PB_TEMPLATE_DONE": host.inside(done)})
        if not done.exists():
            raise RuntimeError(
                f"Krita did not start to build the template HOME:\n{result.stdout.decode(errors='replace')[-3000:]}"
            )
        shutil.rmtree(kh.pykrita / "pb_template_quit")
        (kh.pykrita / "pb_template_quit.desktop").unlink()
        (kh.home / ".paintbridge-template-ready").write_text("ok")
        if ready.exists():
            shutil.rmtree(ready)
        shutil.copytree(kh.home, ready, symlinks=True)
        shutil.rmtree(build, ignore_errors=True)
        return ready


def new_home(workdir: Optional[Path] = None, host: KritaHost = NATIVE) -> KritaHome:
    """A fresh isolated Krita HOME (in ``workdir``, or a scratch folder the host can see), copied from the template."""
    kh = KritaHome(Path(workdir) if workdir is not None else host.scratch(), host)
    kh.root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template_home(host), kh.home, symlinks=True)
    return kh


DISPLAY_ATTEMPTS = 3  # Krita starts tried when Xvfb could not take its display (see run_krita)


def run_krita(
    home: KritaHome, result_file: Path, timeout: float = 180, env_extra: Optional[Mapping[str, str]] = None
) -> dict:
    """Start Krita in ``home`` and wait for it to quit; returns the JSON a driver plugin wrote to ``result_file``.

    Raises RuntimeError with the tail of Krita's log when no result file was written (see ``run_krita_group``).
    """
    return run_krita_group(home, [result_file], timeout, env_extra)[0]


def run_krita_group(
    home: KritaHome, result_files: Sequence[Path], timeout: float = 180, env_extra: Optional[Mapping[str, str]] = None
) -> list[Optional[dict]]:
    """Start Krita in ``home`` once and wait for it to quit; returns the JSON a driver plugin wrote to each of
    ``result_files`` (one per scenario it ran in order), None for each one it did not write.

    Raises RuntimeError with the tail of Krita's log when no result file at all was written.

    Twice in 40-odd Krita starts of two full test runs here, Krita stopped 0.2 s after starting with "could not
    connect to display :99" (other runs before and after were fine). The likely cause: ``xvfb-run -a`` takes the
    lowest display whose lock file is gone, while the previous run's Xvfb, killed by xvfb-run without waiting, may
    still hold that display's socket, so the new Xvfb cannot listen (not reproduced on demand). That start is
    repeated (up to ``DISPLAY_ATTEMPTS`` in all, counted in each result's ``_krita.display_retries``); any other
    failure is not.
    """
    retries = 0
    while True:
        started = time.monotonic()
        proc = _run(home, timeout, env_extra)
        elapsed = time.monotonic() - started
        log = proc.stdout.decode(errors="replace")
        wrote = any(f.exists() for f in result_files)
        if wrote or "could not connect to display" not in log or retries + 1 >= DISPLAY_ATTEMPTS:
            break
        retries += 1
        time.sleep(2.0)
    if not wrote:
        names = ", ".join(f.parent.name + "/" + f.name for f in result_files)
        raise RuntimeError(
            f"Krita exited ({proc.returncode}) after {elapsed:.1f} s without writing {names}; log tail:\n{log[-6000:]}"
        )
    krita = {
        "returncode": proc.returncode,
        "elapsed": elapsed,
        "log_tail": log[-4000:],
        "version": home.host.version(),
        "display_retries": retries,
    }
    results: list[Optional[dict]] = []
    for result_file in result_files:
        if not result_file.exists():
            results.append(None)
            continue
        data = json.loads(result_file.read_text())
        data.setdefault("_krita", {}).update(krita)
        results.append(data)
    return results
