"""Where Krita and GIMP 3 keep a user's plug-ins, on Linux (plain, Flatpak, Snap), Windows and macOS.

Krita loads Python plugins from ``<data>/krita/pykrita`` and enables them in ``kritarc``. GIMP 3 loads plug-ins from
``<config>/GIMP/<major.minor>/plug-ins``: the profile folder is named after the version *series*, so GIMP 3.0 uses
``GIMP/3.0`` and GIMP 3.2 ``GIMP/3.2`` (GIMP's meson.build sets ``GIMP_USER_VERSION`` to ``major.minor``);
``$GIMP3_DIRECTORY`` replaces the whole profile folder. Plug-ins go into every GIMP 3 profile folder that exists, or
the one of the version found, or ``3.0``.

An application counts as found when its program is on PATH, its settings folder exists, or (Flatpak, Snap, macOS,
Windows) its installation folder exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .system import System

KRITA = "krita"
GIMP = "gimp"
GIMP_FALLBACK_SERIES = "3.0"
_GIMP3_SERIES = re.compile(r"^3\.\d+$")


@dataclass
class HostTarget:
    """One place to install a plugin: ``plugin_dir`` (``pykrita`` or ``plug-ins``), ``kritarc`` for Krita."""

    app: str
    variant: str  # "linux", "flatpak", "snap", "windows", "macos", "given" (--krita-dir / --gimp-dir)
    plugin_dir: Path
    kritarc: Optional[Path] = None
    found_by: str = ""
    sandboxed: bool = False  # Flatpak/Snap: the plugin may not be allowed to start the server itself

    def label(self) -> str:
        name = "Krita" if self.app == KRITA else "GIMP 3"
        return name if self.variant in ("linux", "windows", "macos", "given") else f"{name} ({self.variant.title()})"


@dataclass
class Search:
    """The targets found for one application, and what was looked at (for the 'not found' message)."""

    app: str
    targets: List[HostTarget] = field(default_factory=list)
    looked_at: List[str] = field(default_factory=list)

    def not_found_message(self) -> str:
        name = "Krita" if self.app == KRITA else "GIMP 3"
        flag = "--krita-dir PYKRITA_FOLDER" if self.app == KRITA else "--gimp-dir PLUG_INS_FOLDER"
        return (
            f"{name} was not found (looked for: {'; '.join(self.looked_at)}), so its plugin was not installed. "
            f"Install {name} and run this again, or pass {flag}."
        )


def _first_evidence(checks: List[tuple]) -> str:
    """The description of the first true check of (description, bool) pairs, or ''."""
    return next((what for what, ok in checks if ok), "")


# --- Krita -----------------------------------------------------------------------------------------------------------


def find_krita(system: System) -> Search:
    """Krita's pykrita folder(s) and kritarc for this user."""
    search = Search(KRITA)
    home = system.home
    if system.windows:
        data = system.appdata() / "krita"
        program_files = system.env_path("ProgramFiles", Path("C:/Program Files"))
        exe = program_files / "Krita (x64)" / "bin" / "krita.exe"
        _add(
            search,
            KRITA,
            "windows",
            data / "pykrita",
            system.local_appdata() / "kritarc",
            [("krita on PATH", bool(system.which("krita"))), (str(data), data.is_dir()), (str(exe), exe.is_file())],
        )
        return search
    if system.macos:
        data = system.app_support() / "krita"
        app = system.system_path("Applications", "krita.app")
        _add(
            search,
            KRITA,
            "macos",
            data / "pykrita",
            home / "Library" / "Preferences" / "kritarc",
            [(str(app), app.is_dir()), (str(data), data.is_dir()), ("krita on PATH", bool(system.which("krita")))],
        )
        return search
    data, config = system.data_home(), system.config_home()
    _add(
        search,
        KRITA,
        "linux",
        data / "krita" / "pykrita",
        config / "kritarc",
        [
            ("krita on PATH", bool(system.which("krita"))),
            (str(data / "krita"), (data / "krita").is_dir()),
            (str(config / "kritarc"), (config / "kritarc").is_file()),
        ],
    )
    flat = home / ".var" / "app" / "org.kde.krita"
    _add(
        search,
        KRITA,
        "flatpak",
        flat / "data" / "krita" / "pykrita",
        flat / "config" / "kritarc",
        _flatpak_checks(system, "org.kde.krita"),
        sandboxed=True,
    )
    snap = home / "snap" / "krita" / "current"
    _add(
        search,
        KRITA,
        "snap",
        snap / ".local" / "share" / "krita" / "pykrita",
        snap / ".config" / "kritarc",
        _snap_checks(system, "krita"),
        sandboxed=True,
    )
    return search


def _flatpak_checks(system: System, app_id: str) -> List[tuple]:
    user = system.home / ".var" / "app" / app_id
    installs = [
        system.data_home() / "flatpak" / "app" / app_id,
        system.system_path("var", "lib", "flatpak", "app", app_id),
    ]
    return [(str(user), user.is_dir())] + [(str(p), p.is_dir()) for p in installs]


def _snap_checks(system: System, name: str) -> List[tuple]:
    user = system.home / "snap" / name
    return [
        (str(user), user.is_dir()),
        (str(system.system_path("snap", name)), system.system_path("snap", name).is_dir()),
    ]


def _add(
    search: Search,
    app: str,
    variant: str,
    plugin_dir: Path,
    kritarc: Optional[Path],
    checks: List[tuple],
    sandboxed: bool = False,
) -> None:
    search.looked_at.extend(what for what, _ in checks)
    evidence = _first_evidence(checks)
    if evidence:
        search.targets.append(HostTarget(app, variant, plugin_dir, kritarc, evidence, sandboxed))


# --- GIMP 3 ----------------------------------------------------------------------------------------------------------


def gimp_series_from_version(text: Optional[str]) -> Optional[str]:
    """``"3.2"`` from ``gimp --version`` output such as ``GNU Image Manipulation Program version 3.2.4``."""
    match = re.search(r"\b(\d+)\.(\d+)\.\d+", text or "")
    if match and match.group(1) == "3":
        return f"3.{match.group(2)}"
    return None


def _gimp_program_series(system: System) -> tuple:
    """(series, evidence) from a GIMP 3 program on PATH, or (None, '')."""
    for name in ("gimp-3.2", "gimp-3.0", "gimp-3", "gimp"):
        path = system.which(name)
        if not path:
            continue
        series = gimp_series_from_version(system.output([path, "--version"]))
        if series is None and name != "gimp":
            series = name[len("gimp-") :] if _GIMP3_SERIES.match(name[len("gimp-") :]) else GIMP_FALLBACK_SERIES
        if series:
            return series, f"{name} on PATH (GIMP {series})"
    return None, ""


def gimp_profile_dirs(gimp_root: Path, series: Optional[str]) -> List[Path]:
    """The profile folders under ``gimp_root`` (``.../GIMP``) to install into: every existing ``3.x`` one, else the
    found version's, else ``3.0``."""
    existing = (
        sorted(p for p in gimp_root.iterdir() if p.is_dir() and _GIMP3_SERIES.match(p.name))
        if gimp_root.is_dir()
        else []
    )
    if existing:
        return existing
    return [gimp_root / (series or GIMP_FALLBACK_SERIES)]


def _gimp_root_has_profile(gimp_root: Path) -> bool:
    return gimp_root.is_dir() and any(_GIMP3_SERIES.match(p.name) for p in gimp_root.iterdir() if p.is_dir())


def find_gimp(system: System) -> Search:
    """GIMP 3's plug-ins folder(s) for this user."""
    search = Search(GIMP)
    custom = system.environ.get("GIMP3_DIRECTORY")
    if custom:
        profile = Path(custom) if Path(custom).is_absolute() else system.home / custom
        search.looked_at.append(f"$GIMP3_DIRECTORY={custom}")
        search.targets.append(
            HostTarget(
                GIMP,
                "linux" if not (system.windows or system.macos) else ("windows" if system.windows else "macos"),
                profile / "plug-ins",
                found_by="$GIMP3_DIRECTORY",
            )
        )
        return search
    series, program = _gimp_program_series(system)
    if system.windows:
        root = system.appdata() / "GIMP"
        program_files = system.env_path("ProgramFiles", Path("C:/Program Files"))
        install = program_files / "GIMP 3"
        _add_gimp(
            search,
            "windows",
            root,
            series,
            [
                (program or "gimp-3 on PATH", bool(program)),
                (str(root) + "\\3.x", _gimp_root_has_profile(root)),
                (str(install), install.is_dir()),
            ],
        )
        return search
    if system.macos:
        root = system.app_support() / "GIMP"
        app = system.system_path("Applications", "GIMP.app")
        _add_gimp(
            search,
            "macos",
            root,
            series,
            [
                (str(app), app.is_dir()),
                (str(root / "3.x"), _gimp_root_has_profile(root)),
                (program or "gimp-3 on PATH", bool(program)),
            ],
        )
        return search
    root = system.config_home() / "GIMP"
    _add_gimp(
        search,
        "linux",
        root,
        series,
        [(program or "gimp 3 on PATH", bool(program)), (str(root / "3.x"), _gimp_root_has_profile(root))],
    )
    flat = system.home / ".var" / "app" / "org.gimp.GIMP"
    _add_gimp(
        search, "flatpak", flat / "config" / "GIMP", None, _flatpak_checks(system, "org.gimp.GIMP"), sandboxed=True
    )
    snap = system.home / "snap" / "gimp" / "current"
    _add_gimp(search, "snap", snap / ".config" / "GIMP", None, _snap_checks(system, "gimp"), sandboxed=True)
    return search


def _add_gimp(
    search: Search, variant: str, gimp_root: Path, series: Optional[str], checks: List[tuple], sandboxed: bool = False
) -> None:
    search.looked_at.extend(what for what, _ in checks)
    evidence = _first_evidence(checks)
    if evidence:
        for profile in gimp_profile_dirs(gimp_root, series):
            search.targets.append(HostTarget(GIMP, variant, profile / "plug-ins", None, evidence, sandboxed))


def given_target(app: str, folder: Path, system: System) -> HostTarget:
    """A target from ``--krita-dir`` / ``--gimp-dir``; Krita's kritarc is the usual one for this system."""
    kritarc = None
    if app == KRITA:
        found = find_krita(system)
        kritarc = found.targets[0].kritarc if found.targets else _default_kritarc(system)
    return HostTarget(app, "given", Path(folder), kritarc, "given on the command line")


def _default_kritarc(system: System) -> Path:
    if system.windows:
        return system.local_appdata() / "kritarc"
    if system.macos:
        return system.home / "Library" / "Preferences" / "kritarc"
    return system.config_home() / "kritarc"
