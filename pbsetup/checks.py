"""What can stop an install, each with a message that says what is wrong and what to do.

``InstallError`` carries that message; install.py prints it and exits with status 1.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from .system import System

SERVER_PYTHON = (3, 11)
PYPI = "https://pypi.org/simple/"


class InstallError(Exception):
    """An install cannot go on; the message is for the painter."""


def python_version(system: System, program: Sequence[str]) -> Optional[tuple]:
    """(major, minor) of the Python started by ``program``, or None."""
    out = system.output(list(program) + ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    try:
        major, minor = (out or "").strip().splitlines()[-1].split(".")
        return int(major), int(minor)
    except (ValueError, IndexError):
        return None


def find_server_python(
    system: System, current: tuple = tuple(sys.version_info[:2]), executable: str = sys.executable
) -> List[str]:
    """The command of a Python 3.11+ for the server's venv: this one when new enough, else one found on PATH."""
    if current >= SERVER_PYTHON:
        return [executable]
    candidates: List[List[str]] = []
    for minor in (13, 12, 11):
        name = f"python3.{minor}"
        if system.which(name):
            candidates.append([system.which(name)])  # type: ignore[list-item]
    if system.windows and system.which("py"):
        candidates += [[system.which("py"), f"-3.{minor}"] for minor in (13, 12, 11)]  # type: ignore[list-item]
    for program in candidates:
        version = python_version(system, program)
        if version and version >= SERVER_PYTHON:
            return program
    raise InstallError(
        f"no suitable Python: install.py runs on Python 3.10+, but the Paintbridge server needs Python "
        f"{SERVER_PYTHON[0]}.{SERVER_PYTHON[1]} or newer, and this is {current[0]}.{current[1]} with none newer on "
        "PATH (looked for python3.13, python3.12, python3.11" + (", py -3.x" if system.windows else "") + "). "
        "Install Python 3.11 or newer (python.org, or your system's packages, e.g. 'apt install python3.11'), "
        "then run install.py with it, or pass --python PATH_TO_PYTHON3.11+."
    )


def given_python(system: System, program: Path) -> List[str]:
    """``--python PATH`` as a command, after checking it is a Python 3.11+."""
    version = python_version(system, [str(program)])
    if version is None or version < SERVER_PYTHON:
        found = "it does not run" if version is None else f"it is Python {version[0]}.{version[1]}"
        raise InstallError(
            f"no suitable Python: --python {program} cannot host the server ({found}); it needs "
            f"Python {SERVER_PYTHON[0]}.{SERVER_PYTHON[1]} or newer."
        )
    return [str(program)]


def check_writable(folder: Path, what: str, hint: str = "") -> None:
    """Raise InstallError when ``folder`` (or the nearest folder above it that exists) cannot be written."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    problem = ""
    if not probe.is_dir():
        problem = f"{probe} is a file, not a folder"
    else:
        try:
            with tempfile.NamedTemporaryFile(dir=probe, prefix=".paintbridge-write-test-"):
                pass
        except OSError as err:
            problem = f"{err.strerror or err} in {probe}"
        else:
            if not os.access(probe, os.W_OK):
                problem = f"no write permission in {probe}"
    if problem:
        raise InstallError(
            f"cannot write {what} to {folder}: {problem}. "
            + (hint or "Run install.py as the user who owns that folder, or choose another one.")
        )


def check_disk_space(system: System, folder: Path, need_gb: float, what: str) -> None:
    """Raise InstallError when the disk holding ``folder`` has less than ``need_gb`` free."""
    free = system.free_bytes(folder)
    if free < need_gb * 1e9:
        raise InstallError(
            f"not enough disk space for {what}: about {need_gb:.1f} GB is needed in {folder}, only "
            f"{free / 1e9:.1f} GB is free. Free some space (or pass --venv on a disk with more room) and run again."
        )


def pip_failure(system: System, returncode: int, command: str) -> InstallError:
    """The error for a failed pip run: 'no network' when the package index cannot be reached."""
    if not system.reachable(PYPI):
        return InstallError(
            f"no network: the package index ({PYPI}) cannot be reached, so '{command}' could not download what it "
            "needs. Connect to the internet (or set up a package mirror for pip) and run install.py again: "
            "it continues where it stopped."
        )
    return InstallError(
        f"'{command}' failed (exit status {returncode}); its messages are above. "
        "Fix what they name and run install.py again."
    )
