#!/usr/bin/env python3
"""Set up Paintbridge with nothing but the standard library (this script runs on Python 3.10+; the server it installs
needs Python 3.11+, found on PATH or given with --python).

    python3 install.py              venv + server + the right PyTorch, the Krita and GIMP 3 plugins, the models folder
    python3 install.py --uv         the same, with uv installing the packages (faster; reads pip's settings)
    python3 install.py --dev        the same plus test tools, the cluster extra and the system packages the real-host
                                    tests need
    python3 install.py --cluster    the same as the first plus studio mode (Ray Serve: serve --cluster, worker)
    python3 install.py --dry-run    print every action (folders, packages, PyTorch build) and change nothing
    python3 install.py --uninstall  remove exactly what earlier runs installed (listed in the install record)

Works on Linux (plain, Flatpak and Snap installs of Krita and GIMP), Windows and macOS. The server lives in a virtual
environment (``.venv`` beside this file unless ``--venv`` says otherwise). The plugins are copied into Krita's
``pykrita`` folder and GIMP 3's ``plug-ins`` folder, each self-contained: a copy of ``protocol/`` and pure-Python
``msgpack`` and ``websockets`` travel inside them, with ``client/`` (the editor-independent half of both plugins) next
to ``protocol/``, and each records the command that starts the server (``server.json``). Running it
again upgrades everything in place; what it installed is recorded in ``<data>/paintbridge/install-record.json``.
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 10):  # keep this file parseable by old Pythons so this message is what they print
    sys.exit(
        "install.py needs Python 3.10 or newer (the Paintbridge server itself needs 3.11+); this is "
        + sys.version.split()[0]
    )

import argparse
import os
import shutil
import subprocess
import venv
from pathlib import Path
from typing import List, Optional, Sequence

from pbsetup import checks, hosts, plugins, torchbuild, uvpip
from pbsetup.checks import InstallError
from pbsetup.plan import Plan, log
from pbsetup.record import Record, disable_in_kritarc, remove_if_empty, remove_path
from pbsetup.system import System, models_dir, record_path

REPO = Path(__file__).resolve().parent
# What the real-host tests need on a Debian machine: Krita under Xvfb, X tools, debootstrap for the GIMP 3 root.
DEV_APT_PACKAGES = ("krita", "python3-pyqt5", "xvfb", "xauth", "xdotool", "debootstrap", "imagemagick")
MODEL_SUBFOLDERS = ("checkpoints", "vae", "loras", "embeddings", "controlnet", "upscale_models", "annotators")


def run(cmd: Sequence[str], system: Optional[System] = None, **kwargs) -> None:
    """Run ``cmd``, showing it; a failure raises InstallError (naming a missing network when that is the cause)."""
    text = " ".join(str(c) for c in cmd)
    log("$ " + text)
    result = subprocess.run([str(c) for c in cmd], **kwargs)
    if result.returncode != 0:
        raise checks.pip_failure(system or System(), result.returncode, text)


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
    return Path(venv_dir) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def server_command(venv_dir: Path) -> List[str]:
    """The command that starts the server; the plugins record it so they can start the server themselves."""
    return [str(venv_python(venv_dir)), "-m", "server", "serve"]


def torch_version(python: Path) -> Optional[str]:
    """The torch version installed for ``python``, or None (no venv yet, or no torch in it)."""
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('torch'))"], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def plan_server(plan: Plan, args: argparse.Namespace, system: System, record: Record) -> None:
    """The venv, the PyTorch build for this hardware, and Paintbridge itself (editable) with its dependencies."""
    venv_dir: Path = args.venv
    python = venv_python(venv_dir)
    new_venv = not python.exists()
    checks.check_writable(venv_dir, "the server's virtual environment", "Pass --venv FOLDER to put it elsewhere.")
    hardware = torchbuild.detect_hardware(system)
    choice = torchbuild.choose_torch(system, hardware, args.torch)
    log(choice.describe())  # said before anything is downloaded
    installed = None if new_venv else torch_version(python)
    torch_args: List[str] = []
    if installed and not args.torch:
        log(f"torch {installed} is already in {venv_dir}: kept (pass --torch BUILD to change it)")
    else:
        choice, note = torchbuild.reachable_choice(system, choice)
        if note:
            log(note)
        if choice.index_url:
            torch_args = ["torch", "torchvision", "--index-url", choice.index_url]
            if installed:
                torch_args[2:2] = ["--force-reinstall", "--no-deps"]
    need = (0.0 if installed and not args.torch else choice.size_gb(system)) + (
        torchbuild.OTHER_PACKAGES_GB if new_venv else 0.0
    )
    if need:
        checks.check_disk_space(system, venv_dir, need, f"the server's packages (PyTorch {choice.build} and the rest)")
    if new_venv:
        python_cmd = checks.given_python(system, args.python) if args.python else checks.find_server_python(system)
        plan.add(
            f"create the virtual environment {venv_dir} with {' '.join(python_cmd)}",
            lambda: _create_venv(venv_dir, python_cmd, record),
        )
    else:
        plan.add(f"update the server in the existing virtual environment {venv_dir}")
    if args.uv:
        plan.add(
            f"install uv into {venv_dir} (it installs the rest, reading pip's settings)",
            lambda: run(installer(python, False) + ["uv"], system),
        )
    if torch_args:
        plan.add(
            f"install PyTorch ({choice.build} build) from {choice.index_url}" + (" with uv" if args.uv else ""),
            lambda: run(installer(python, args.uv, True) + torch_args, system),
        )
    extras = (["dev", "cluster"] if args.dev else []) + (["cluster"] if args.cluster and not args.dev else [])
    target = f"{REPO}[{','.join(extras)}]" if extras else str(REPO)
    what = "with PyTorch " + ("(kept)" if installed and not args.torch else f"({choice.build} build)")
    plan.add(
        f"install Paintbridge {'and its test tools ' if args.dev else ''}"
        f"{'with the cluster extra (Ray Serve) ' if 'cluster' in extras else ''}into {venv_dir} (editable), {what}"
        + (" with uv" if args.uv else ""),
        lambda: run(installer(python, args.uv) + ["-e", target], system),
    )


def installer(python: Path, use_uv: bool, own_index: bool = False) -> List[str]:
    """The install command for the venv of ``python``: pip, or uv with pip's settings (``own_index``: the caller
    passes its own --index-url)."""
    if not use_uv:
        return [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    config = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    uv = python.parent / ("uv.exe" if os.name == "nt" else "uv")
    return (
        [str(uv), "pip", "install", "-q", "--python", str(python)]
        + uvpip.PIPS_INDEX_STRATEGY
        + uvpip.uv_options(config, not own_index)
    )


def _create_venv(venv_dir: Path, python_cmd: List[str], record: Record) -> None:
    if python_cmd == [sys.executable]:
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    else:
        run(python_cmd + ["-m", "venv", str(venv_dir)])
    record.venv, record.venv_created = str(venv_dir), True
    record.save()


# --- plugins ---------------------------------------------------------------------------------------------------------


def _missing_dirs(folder: Path) -> List[Path]:
    """``folder`` and those above it that do not exist yet (what creating it creates)."""
    out = []
    while not folder.exists() and folder.parent != folder:
        out.append(folder)
        folder = folder.parent
    return out


def plugin_targets(args: argparse.Namespace, system: System) -> List[hosts.HostTarget]:
    """Where the plugins go: the folders given on the command line, else every Krita and GIMP 3 install found."""
    targets: List[hosts.HostTarget] = []
    for app, given, find in (
        (hosts.KRITA, args.krita_dir, hosts.find_krita),
        (hosts.GIMP, args.gimp_dir, hosts.find_gimp),
    ):
        if given:
            targets.append(hosts.given_target(app, given, system))
            continue
        search = find(system)
        if not search.targets:
            log(search.not_found_message())
        targets += search.targets
    return targets


def plan_plugins(plan: Plan, args: argparse.Namespace, system: System, record: Record) -> None:
    command = server_command(args.venv)
    python = venv_python(args.venv)
    for target in plugin_targets(args, system):
        flag = "--krita-dir" if target.app == hosts.KRITA else "--gimp-dir"
        checks.check_writable(target.plugin_dir, f"the {target.label()} plugin", f"Pass {flag} FOLDER to choose one.")
        if target.kritarc is not None:
            checks.check_writable(target.kritarc.parent, "Krita's settings (kritarc)")
        where = f" ({target.found_by})" if target.found_by else ""
        text = f"install the {target.label()} plugin into {target.plugin_dir}{where}"
        if target.kritarc is not None:
            text += f" and enable it in {target.kritarc}"
        if target.sandboxed:
            text += (
                f" (it runs sandboxed and may not be allowed to start the server itself: start the server with "
                f"'{' '.join(command)}' before using the plugin)"
            )
        plan.add(text, lambda t=target: _install_plugin(t, command, python, record))


def _install_plugin(target: hosts.HostTarget, command: List[str], python: Path, record: Record) -> None:
    """One editor's plugin, vendoring the server venv's msgpack/websockets, recorded for --uninstall."""
    vendor_python = python if python.exists() else None
    for folder in _missing_dirs(target.plugin_dir) + (_missing_dirs(target.kritarc.parent) if target.kritarc else []):
        record.add("created_dirs", folder)
    if target.app == hosts.KRITA:
        assert target.kritarc is not None
        dest = plugins.install_krita(target.plugin_dir, target.kritarc, command, vendor_python)
        record.add("files", dest)
        record.add("files", target.plugin_dir / f"{dest.name}.desktop")
        record.add("kritarcs", target.kritarc)
        log(f"Krita plugin installed in {dest}: restart Krita, then Settings > Dockers > Paintbridge")
    else:
        dest = plugins.install_gimp(target.plugin_dir, command, vendor_python)
        record.add("files", dest)
        log(f"GIMP 3 plug-in installed in {dest}: restart GIMP, then Filters > Paintbridge")
    record.save()


# --- models folder, uninstall ----------------------------------------------------------------------------------------


def plan_models(plan: Plan, system: System, record: Record) -> Path:
    models = models_dir(system)
    checks.check_writable(models, "the models folder", "Set PAINTBRIDGE_MODELS to a folder you can write.")
    missing = [models / sub for sub in MODEL_SUBFOLDERS if not (models / sub).is_dir()]
    if missing:

        def make() -> None:
            for folder in missing:
                for created in reversed(_missing_dirs(folder)):
                    record.add("created_dirs", created)
                folder.mkdir(parents=True, exist_ok=True)
            record.save()

        plan.add(f"create the models folder {models} ({', '.join(p.name + '/' for p in missing)})", make)
    return models


def plan_uninstall(plan: Plan, record: Record) -> None:
    """Remove what ``record`` lists; folders it created go only when empty (downloaded models stay)."""
    for item in record.files:
        plan.add(f"remove {item}", lambda p=Path(item): remove_path(p))
    for kritarc in record.kritarcs:
        plan.add(f"remove enable_paintbridge from {kritarc}", lambda p=Path(kritarc): disable_in_kritarc(p))
    if record.venv_created and record.venv:
        plan.add(f"remove the virtual environment {record.venv}", lambda p=Path(record.venv): remove_path(p))
    plan.add(f"remove the install record {record.path}", lambda: remove_path(record.path))
    for folder in sorted(
        set(record.created_dirs) | {str(record.path.parent)}, key=lambda d: len(Path(d).parts), reverse=True
    ):

        def drop(p: Path = Path(folder)) -> None:
            if p.is_dir() and not remove_if_empty(p) and p.name in MODEL_SUBFOLDERS + ("models",):
                log(
                    f"kept {p}: it holds files that are not Paintbridge's (your models?); delete it by hand if you "
                    "want them gone"
                )

        plan.add(f"remove {folder} if it is empty", drop)


# --- main ------------------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Set up the Paintbridge server and the Krita and GIMP 3 plugins.")
    p.add_argument(
        "--dev",
        action="store_true",
        help="also install test tools, the real-host test packages and the "
        "cluster extra (Ray Serve; its tests run in the normal suite)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="also install studio mode (Ray Serve): paintbridge serve --cluster and paintbridge worker",
    )
    p.add_argument("--venv", type=Path, default=REPO / ".venv", help="where the server's virtual environment goes")
    p.add_argument(
        "--python",
        type=Path,
        help="the Python 3.11+ to create the venv with (default: this one if new "
        "enough, else python3.13/3.12/3.11 from PATH)",
    )
    p.add_argument(
        "--torch",
        choices=torchbuild.BUILDS,
        help="PyTorch build (default: detected from the GPU; 'default' = whatever pip picks)",
    )
    p.add_argument(
        "--uv",
        action="store_true",
        help="install the server's packages with uv (faster; pip's settings are passed on to it)",
    )
    p.add_argument("--krita-dir", type=Path, help="Krita's pykrita folder (default: found for this system)")
    p.add_argument("--gimp-dir", type=Path, help="GIMP 3's plug-ins folder (default: found for this system)")
    p.add_argument("--no-plugins", action="store_true", help="do not install the Krita and GIMP plugins")
    p.add_argument(
        "--plugins-only",
        action="store_true",
        help="only install the plugins (and the models folder) for the existing venv at --venv",
    )
    p.add_argument("--dry-run", action="store_true", help="print every action and change nothing")
    p.add_argument("--uninstall", action="store_true", help="remove what earlier runs installed")
    return p


def main(argv: Optional[Sequence[str]] = None, system: Optional[System] = None) -> int:
    args = parser().parse_args(argv)
    system = system or System()
    args.venv = Path(args.venv).expanduser().absolute()
    plan = Plan(dry_run=args.dry_run)
    record = Record.load(record_path(system))
    try:
        if args.uninstall:
            if not record.path.exists():
                log(f"nothing to uninstall: there is no install record at {record.path}")
                return 0
            plan_uninstall(plan, record)
            plan.run()
            return 0
        if args.dev:
            plan.add(
                "install the system packages the real-host tests need (" + ", ".join(DEV_APT_PACKAGES) + ")",
                lambda: install_apt_packages(DEV_APT_PACKAGES),
            )
        if args.plugins_only:
            if not venv_python(args.venv).exists():
                raise InstallError(
                    f"--plugins-only: there is no virtual environment at {args.venv}; run install.py "
                    "without --plugins-only first, or pass --venv with an existing one"
                )
        else:
            plan_server(plan, args, system, record)
        plan.run()  # the server first: plugins vendor packages from its venv
        models = plan_models(plan, system, record)
        if not args.no_plugins:
            plan_plugins(plan, args, system, record)
        plan.run()
    except InstallError as err:
        log(f"error: {err}")
        return 1
    except ValueError as err:  # a --torch build this system has none of
        log(f"error: {err}")
        return 2
    log(
        f"models folder: {models} (checkpoints/, loras/, vae/, controlnet/, upscale_models/, annotators/); "
        f"get a starter set with: {venv_python(args.venv)} -m server models pull sd15"
    )
    log(
        ("dry run: nothing was changed. " if args.dry_run else "done. ")
        + "Start the server with: "
        + " ".join(server_command(args.venv))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
