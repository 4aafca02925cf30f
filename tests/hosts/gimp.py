"""Run GIMP 3.0 (from the cached Debian 13 root) on batch scripts, and under Xvfb, with the plug-in installed by the
project's own installer into a throw-away profile.

A batch run calls checks by name: functions of ``gimp_checks.py`` (built on ``gimp_prelude.py``'s helpers such as
``check``, ``make_image``, ``run_proc``), several in one GIMP start (``run_checks``); each one's outcome (passed, its
count of checks, or the traceback of the check that failed) comes back by name.
``GuiSession`` calls one check in GIMP's window under Xvfb.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from pbsetup.plugins import install_gimp as install

from .trixie import ensure_trixie_root, popen_in_root, run_in_root

PRELUDE = Path(__file__).with_name("gimp_prelude.py")
CHECKS = Path(__file__).with_name("gimp_checks.py")
OUTCOME = re.compile(r"^PAINTBRIDGE CHECK (\{.*\})$", re.MULTILINE)
NOISE = re.compile(
    r"script_fu_add_resource_arg|scriptfu-WARNING|cannot open display|stale context|gimp_finalize|G_IS_OBJECT"
    r"|Failed to parse tag cache|gimp_wire_read\(\): unexpected EOF|Welcome to GIMP|stray image|gimp_flush\(\)"
    r"|^\s*$"
)


@dataclass
class GimpProfile:
    """A fresh GIMP profile inside the root: ``outside`` is its path on this machine, ``inside`` in the root."""

    root: Path
    outside: Path
    inside: str
    plugin_dir: Optional[Path] = None

    @property
    def env(self) -> Dict[str, str]:
        return {
            "HOME": self.inside,
            "XDG_CONFIG_HOME": f"{self.inside}/config",
            "XDG_CACHE_HOME": f"{self.inside}/cache",
            "XDG_DATA_HOME": f"{self.inside}/data",
            "XDG_RUNTIME_DIR": f"{self.inside}/run",
            "NO_AT_BRIDGE": "1",
        }

    def inner(self, path: Path) -> str:
        """``path`` (on this machine, under the root) as seen inside the root."""
        return "/" + Path(path).relative_to(self.root).as_posix()

    @property
    def gimp_dir(self) -> Path:
        """GIMP's profile folder (``Gimp.directory()``) seen from this machine."""
        return self.outside / "config" / "GIMP" / "3.0"


@dataclass
class BatchResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        lines = (self.stdout + "\n" + self.stderr).splitlines()
        return "\n".join(line for line in lines if not NOISE.search(line))


@contextmanager
def gimp_profile(install_plugin: bool = True, server_command: Optional[List[str]] = None) -> Iterator[GimpProfile]:
    """A fresh profile in the root, its GIMP settings copied from ``profile_template``, with the plug-in installed by
    ``pbsetup.plugins.install_gimp``; removed afterwards."""
    root = ensure_trixie_root()
    template = profile_template(root)
    with _empty_profile(root) as profile:
        shutil.rmtree(profile.outside / "config")
        shutil.copytree(template, profile.outside / "config", symlinks=True)
        if install_plugin:
            profile.plugin_dir = install(profile.gimp_dir / "plug-ins", server_command)
        yield profile


@contextmanager
def _empty_profile(root: Path) -> Iterator[GimpProfile]:
    """A profile with empty folders in ``root``; removed afterwards."""
    outside = Path(tempfile.mkdtemp(prefix="pb-gimp-", dir=root / "tmp"))
    try:
        for sub in ("config", "cache", "data", "run"):
            (outside / sub).mkdir(mode=0o700)
        yield GimpProfile(root, outside, "/" + str(outside.relative_to(root)))
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def gimp_version(root: Path) -> str:
    """The version of the root's ``gimp`` package, as its dpkg database states it (e.g. ``3.0.4-3``)."""
    cmd = ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f=${Version}", "gimp"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def profile_template(root: Path) -> Path:
    """The config folder of a profile that one gimp-console start without plug-ins of its own filled, cached per GIMP
    version beside the root (built once, under a lock). A first start in an empty profile queries every plug-in GIMP
    ships (seconds of CPU, tens of seconds on a loaded machine); a profile copied from this one queries only the
    plug-ins installed into it."""
    base = root.parent / f"gimp-profile-{gimp_version(root)}"
    ready = base / "config"
    if ready.is_dir():
        return ready
    base.mkdir(exist_ok=True)
    with open(base / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_dir():
            return ready
        with _empty_profile(root) as profile:
            cmd = "gimp-console-3.0 -i -d -f --batch-interpreter python-fu-eval -b - --quit < /dev/null"
            proc = run_in_root(root, ["/bin/sh", "-c", cmd], env=profile.env, timeout=600, cwd=profile.inside)
            if proc.returncode != 0 or not (profile.gimp_dir / "pluginrc").exists():
                raise RuntimeError(
                    f"GIMP did not start to fill the template profile (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
                )
            staging = base / "config.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(profile.outside / "config", staging, symlinks=True)
            staging.rename(ready)
        return ready


@dataclass
class ChecksRun:
    """One gimp-console start that called named checks: each one's outcome by name."""

    batch: BatchResult
    outcomes: Dict[str, Dict[str, Any]]

    @property
    def output(self) -> str:
        return self.batch.output

    def assert_ok(self, name: str) -> Dict[str, Any]:
        """The outcome of check ``name``; fails with its traceback (or GIMP's output when it never reported)."""
        outcome = self.outcomes.get(name)
        assert outcome is not None, (
            f"the GIMP batch run ended before check {name} reported (exit {self.batch.returncode}):\n"
            f"{self.batch.output[-6000:]}"
        )
        assert outcome["ok"] and outcome["checks"] > 0, (
            f"GIMP check {name} failed after {outcome['checks']} checks:\n{outcome.get('error', '')}\n"
            f"GIMP's output:\n{self.batch.output[-3000:]}"
        )
        return outcome


_CALLER = """
import json, traceback
import gimp_checks
for name, params in json.loads({calls!r}):
    before = gimp_checks.CHECKS[0]
    outcome = {{"name": name, "ok": True}}
    try:
        getattr(gimp_checks, name)(params)
    except BaseException:
        outcome.update(ok=False, error=traceback.format_exc())
    outcome["checks"] = gimp_checks.CHECKS[0] - before
    print("PAINTBRIDGE CHECK " + json.dumps(outcome))
    sys.stdout.flush()
"""


def _stage(profile: GimpProfile, caller: str) -> str:
    """Copy the checks and their prelude into a new folder of ``profile`` with a ``caller`` script that imports them
    from there; the caller's path as GIMP sees it."""
    folder = profile.outside / f"checks-{time.monotonic_ns()}"
    folder.mkdir()
    for module in (PRELUDE, CHECKS):
        shutil.copyfile(module, folder / module.name)
    inside = profile.inner(folder)
    (folder / "caller.py").write_text(f"import sys\nsys.path.insert(0, {inside!r})\n" + caller)
    return f"{inside}/caller.py"


def run_checks(profile: GimpProfile, calls: Sequence[Tuple[str, Dict[str, Any]]], timeout: float = 300) -> ChecksRun:
    """Call the named functions of ``gimp_checks.py`` with their parameters, one after another in one gimp-console
    start (a failed check is reported and the next one runs); ``timeout`` is for the whole run."""
    caller = _stage(profile, _CALLER.format(calls=json.dumps(list(calls))))
    cmd = f"gimp-console-3.0 -i -d -f --batch-interpreter python-fu-eval -b - --quit < {caller}"
    proc = run_in_root(profile.root, ["/bin/sh", "-c", cmd], env=profile.env, timeout=timeout, cwd=profile.inside)
    batch = BatchResult(proc.returncode, proc.stdout, proc.stderr)
    outcomes = {o["name"]: o for o in map(json.loads, OUTCOME.findall(proc.stdout))}
    return ChecksRun(batch, outcomes)


def run_check(profile: GimpProfile, name: str, timeout: float = 300, **params: Any) -> Dict[str, Any]:
    """Call one named check in its own gimp-console start; its outcome, or a failure with its traceback."""
    return run_checks(profile, [(name, params)], timeout).assert_ok(name)


class GuiSession:
    """GIMP 3.0 with its window on an Xvfb display inside the root, running a batch script in the GUI process."""

    def __init__(self, profile: GimpProfile, screen: str = "1280x900x24") -> None:
        self.profile = profile
        self.display = ""
        self.screen = screen
        self.xvfb: Optional[subprocess.Popen] = None
        self.gimp: Optional[subprocess.Popen] = None
        self.log = profile.outside / "gimp-gui.log"

    @property
    def env(self) -> Dict[str, str]:
        return dict(self.profile.env, DISPLAY=self.display)

    def _start_xvfb(self) -> None:
        """Xvfb on a free display number (it picks one itself and writes it to a pipe: -displayfd)."""
        (self.profile.root / "tmp" / ".X11-unix").mkdir(mode=0o1777, exist_ok=True)
        read_fd, write_fd = os.pipe()
        try:
            self.xvfb = popen_in_root(
                self.profile.root,
                ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", self.screen, "-nolisten", "tcp"],
                env=self.profile.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start (no display number)")
        self.display = f":{number}"

    def start(self, check: str, params: Dict[str, Any]) -> "GuiSession":
        """Start GIMP's window and call the check ``check`` of ``gimp_checks.py`` inside it with ``params`` (a failed
        check's traceback goes to ``log``)."""
        self._start_xvfb()
        caller = _stage(
            self.profile, f"import json, gimp_checks\ngimp_checks.{check}(json.loads({json.dumps(params)!r}))\n"
        )
        batch = f"exec(open('{caller}').read())"
        log = open(self.log, "w")
        self.gimp = popen_in_root(
            self.profile.root,
            ["gimp-3.0", "--no-splash", "--batch-interpreter", "python-fu-eval", "-b", batch],
            env=self.env,
            cwd=self.profile.inside,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def xdotool(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return run_in_root(self.profile.root, ["xdotool", *args], env=self.env, timeout=timeout)

    def wait_window(self, title: str, timeout: float = 90) -> str:
        """The id of the first visible window whose title contains ``title``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gimp is not None and self.gimp.poll() is not None:
                raise RuntimeError(
                    f"GIMP exited ({self.gimp.returncode}) before '{title}' showed up:\n{self.log.read_text()[-4000:]}"
                )
            out = self.xdotool("search", "--onlyvisible", "--name", title)
            if out.returncode == 0 and out.stdout.split():
                return out.stdout.split()[0]
            time.sleep(0.5)
        raise TimeoutError(f"no window titled '{title}' within {timeout} s:\n{self.log.read_text()[-4000:]}")

    def wait_file(self, name: str, timeout: float = 120) -> Path:
        """Wait until the GUI script writes ``name`` in the profile folder."""
        path = self.profile.outside / name
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.gimp is not None and self.gimp.poll() is not None:
                raise RuntimeError(
                    f"GIMP exited ({self.gimp.returncode}) before writing {name}:\n{self.log.read_text()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the GUI script did not write {name} within {timeout} s:\n{self.log.read_text()[-4000:]}"
                )
            time.sleep(0.2)
        return path

    def screenshot(self, target: Path) -> Path:
        """Save the whole screen as PNG at ``target`` (a path on this machine)."""
        inner = f"{self.profile.inside}/shot-{time.monotonic_ns()}.png"
        out = run_in_root(self.profile.root, ["import", "-window", "root", inner], env=self.env, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"screenshot failed: {out.stderr}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.profile.root / inner.lstrip("/"), target)
        return target

    def screenshot_quietly(self, target: Path) -> None:
        """A screenshot for a failure report; never raises."""
        try:
            self.screenshot(target)
        except Exception:  # noqa: BLE001 - the original failure matters more
            pass

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.gimp is not None
        return self.gimp.wait(timeout)

    def stop(self) -> None:
        for proc in (self.gimp, self.xvfb):
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, 9)
                    except ProcessLookupError:
                        pass
