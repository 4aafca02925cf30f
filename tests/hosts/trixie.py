"""Cached Debian root folders to run real host applications from tests: Debian 13 ("trixie": GIMP 3.0, Krita 5.2.9)
and Debian unstable with experimental's Krita 6 (Qt 6, PyQt6).

Built once with ``debootstrap`` and entered with ``chroot`` (no mounts needed for batch runs; the chroot shares the
network namespace, so a program inside reaches a server on 127.0.0.1 outside it). The build is atomic: it happens in a
temporary folder that is renamed into place only when complete, so an interrupted build is never mistaken for a good
cache. Extra packages are installed into the cached root on demand and recorded, under a lock, so several test sessions
may share one root.

Needs root, ``debootstrap`` and ``chroot`` on the machine running the tests, and Debian's package registry.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence, Tuple

MIRROR = os.environ.get("PAINTBRIDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@dataclass(frozen=True)
class RootSpec:
    """One cached root: its folder name, Debian suite, the packages it is built with (apt arguments, e.g.
    ``krita/experimental``) and extra apt sources; ``dated`` suites carry a Valid-Until that a registry mirror's
    frozen copy may have passed, so apt is told not to judge the lists' age."""

    name: str
    suite: str
    packages: Tuple[str, ...]
    extra_sources: Tuple[str, ...] = ()
    dated: bool = False


# Debian 13: GIMP 3 with its Python plug-in support, and the tools for GUI tests under Xvfb.
TRIXIE = RootSpec(
    "trixie",
    "trixie",
    (
        "gimp",
        "python3",
        "python3-gi",
        "gir1.2-gimp-3.0",
        "xvfb",
        "xauth",
        "xdotool",
        "imagemagick",
        "fonts-dejavu-core",
    ),
)
# Debian unstable with experimental's Krita 6 (Qt 6; its Python plugins use PyQt6).
KRITA6 = RootSpec(
    "sid-krita6",
    "sid",
    ("krita/experimental", "python3-pyqt6", "xvfb", "xauth", "fonts-dejavu-core"),
    extra_sources=(f"deb {MIRROR} experimental main",),
    dated=True,
)
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}
_READY = "paintbridge-root-ready"
_PACKAGES_DIR = "paintbridge-packages"


class HostRootError(RuntimeError):
    """The Debian root folder could not be built or a command in it could not be run."""


def cache_dir() -> Path:
    """``$PAINTBRIDGE_CACHE`` or ``~/.cache/paintbridge``."""
    return Path(os.environ.get("PAINTBRIDGE_CACHE") or Path.home() / ".cache" / "paintbridge")


def root_path(spec: RootSpec = TRIXIE) -> Path:
    """Where a cached root lives (it may not exist yet)."""
    return cache_dir() / "hosts" / spec.name


def trixie_root_path() -> Path:
    return root_path(TRIXIE)


def root_ready(spec: RootSpec = TRIXIE) -> bool:
    """Whether a complete cached root is there (it then runs without debootstrap)."""
    return (root_path(spec) / _READY).exists()


def missing_tools() -> list[str]:
    """Tools on this machine a root build needs but lacks (empty when all is there)."""
    missing = [
        tool
        for tool in ("debootstrap", "chroot")
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()
    ]
    if os.geteuid() != 0:
        missing.append("root privileges")
    return missing


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(msg: str) -> None:
    print(f"[trixie] {msg}", flush=True)


def _check(cmd: Sequence[str], what: str, timeout: float, env: Optional[Mapping[str, str]] = None) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
    )
    if proc.returncode != 0:
        raise HostRootError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")
    _log(f"{what}: {time.monotonic() - start:.0f} s")


def _apt_install(root: Path, packages: Sequence[str]) -> None:
    env = dict(BASE_ENV)
    _check(["chroot", str(root), "apt-get", "update", "-q"], "apt-get update", 600, env)
    _check(
        ["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        f"apt-get install {' '.join(packages)}",
        1800,
        env,
    )
    _check(["chroot", str(root), "apt-get", "clean"], "apt-get clean", 120, env)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mounts."""
    prefix = str(path.resolve())
    found = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a (half-built) root: first undo any mount an interrupted debootstrap left in it (proc, sys, dev), and
    never delete through a mount that is still there."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = _mounts_under(path)
    if left:
        raise HostRootError(f"cannot remove {path}: still mounted there: {', '.join(left)}")
    shutil.rmtree(path, ignore_errors=True)


def _marker(root: Path, package: str) -> Path:
    return root / "var" / "lib" / _PACKAGES_DIR / package.replace("/", "@")


def _build(spec: RootSpec, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{spec.name}-build-*"):
        _log(f"removing an interrupted build: {stale}")
        _remove_tree(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-build-", dir=final.parent))
    try:
        _check(["debootstrap", "--variant=minbase", spec.suite, str(tmp), MIRROR], "debootstrap", 1800)
        if spec.extra_sources:
            (tmp / "etc" / "apt" / "sources.list.d" / "paintbridge.list").write_text(
                "\n".join(spec.extra_sources) + "\n"
            )
        if spec.dated:
            (tmp / "etc" / "apt" / "apt.conf.d" / "99paintbridge-dated").write_text(
                'Acquire::Check-Valid-Until "false";\n'
            )
        _apt_install(tmp, spec.packages)
        for package in spec.packages:
            _marker(tmp, package).parent.mkdir(parents=True, exist_ok=True)
            _marker(tmp, package).touch()
        (tmp / _READY).write_text(" ".join(spec.packages) + "\n")
        os.rename(tmp, final)
    except BaseException:
        _remove_tree(tmp)
        raise


def ensure_trixie_root(extra_packages: Sequence[str] = ()) -> Path:
    """The cached Debian 13 root with GIMP 3, Xvfb tools and ``extra_packages`` (e.g. ``["krita"]``) installed.

    Builds it when missing (a few minutes, about 1.3 GB); safe to call from several processes at once.
    """
    return ensure_root(TRIXIE, extra_packages)


def ensure_root(spec: RootSpec, extra_packages: Sequence[str] = ()) -> Path:
    """The cached root ``spec`` with ``extra_packages`` installed; built when missing, safe from several processes."""
    final = root_path(spec)
    lock = final.parent / f".{spec.name}.lock"
    if (final / _READY).exists() and all(_marker(final, p).exists() for p in extra_packages):
        return final
    missing = missing_tools()
    if missing:
        raise HostRootError(f"building the Debian {spec.suite} test root needs {', '.join(missing)}")
    with _locked(lock):
        if not (final / _READY).exists():
            if final.exists():  # a root without the ready marker is not trusted
                _remove_tree(final)
            _log(f"building the Debian {spec.suite} root in {final} (a few minutes, once)")
            _build(spec, final)
        todo = [p for p in extra_packages if not _marker(final, p).exists()]
        if todo:
            _apt_install(final, todo)
            for package in todo:
                _marker(final, package).parent.mkdir(parents=True, exist_ok=True)
                _marker(final, package).touch()
    return final


def run_in_root(
    root: Path,
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    input: Optional[str] = None,
    timeout: float = 300,
    cwd: str = "/",
) -> subprocess.CompletedProcess:
    """Run ``argv`` inside ``root`` with a clean environment (``BASE_ENV`` plus ``env``); output captured as text."""
    full_env = dict(BASE_ENV)
    full_env.update(env or {})
    inner = [
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in full_env.items()),
        "/bin/sh",
        "-c",
        'cd "$0" && exec "$@"',
        cwd,
        *argv,
    ]
    return subprocess.run(
        ["chroot", str(root), *inner],
        input=input,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL if input is None else None,
    )


def popen_in_root(
    root: Path,
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    cwd: str = "/",
    **kwargs,
) -> subprocess.Popen:
    """Start ``argv`` inside ``root`` in the background (same environment rules as ``run_in_root``)."""
    full_env = dict(BASE_ENV)
    full_env.update(env or {})
    inner = [
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in full_env.items()),
        "/bin/sh",
        "-c",
        'cd "$0" && exec "$@"',
        cwd,
        *argv,
    ]
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(["chroot", str(root), *inner], **kwargs)


@contextmanager
def scratch_dir(root: Path, prefix: str = "pb-") -> Iterator[tuple[Path, str]]:
    """A fresh folder under the root's /tmp: yields (path outside, path inside the root); removed afterwards."""
    outside = Path(tempfile.mkdtemp(prefix=prefix, dir=root / "tmp"))
    try:
        yield outside, "/" + str(outside.relative_to(root))
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@contextmanager
def shared_dev_shm(root: Path) -> Iterator[bool]:
    """This machine's ``/dev/shm`` bind-mounted on the root's for as long as the block runs, so a program inside sees
    the server's shared folders as on one machine (True); False when it cannot be mounted (not root)."""
    target = root / "dev" / "shm"
    if os.path.ismount(target):
        yield True
        return
    mounted = subprocess.run(["mount", "--bind", "/dev/shm", str(target)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


if __name__ == "__main__":
    import sys

    roots = {spec.name: spec for spec in (TRIXIE, KRITA6)}
    name = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in roots else TRIXIE.name
    packages = [p for p in sys.argv[1:] if p != name]
    print(ensure_root(roots[name], packages))
