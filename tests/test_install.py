"""install.py and pbsetup/: host folders on Linux (plain, Flatpak, Snap), Windows and macOS in temporary HOMEs, the
PyTorch build for each detected GPU (detection inputs faked through ``pbsetup.system.System``), ``--dry-run``,
upgrade in place, ``--uninstall``, and the messages for what can stop an install.

The plugin installs are real (files copied, runtime vendored from this test's own venv, kritarc edited); the venv is
this test's own (``--plugins-only``), since building a fresh one takes minutes.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import install
from pbsetup import checks, hosts, torchbuild
from pbsetup.checks import InstallError
from pbsetup.system import System

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the venv running the tests: its python has msgpack and websockets to vendor


def fake_system(
    home: Path,
    platform: str = "linux",
    programs: Optional[Dict[str, str]] = None,
    outputs: Optional[Dict[str, str]] = None,
    environ: Optional[Dict[str, str]] = None,
    reachable: bool = False,
    free_gb: float = 1000.0,
    machine: str = "x86_64",
) -> System:
    """A machine with HOME ``home``: ``programs`` on PATH, ``outputs`` by program name, nothing else."""
    programs = programs or {}
    outputs = outputs or {}
    root = home / "_root"
    root.mkdir(parents=True, exist_ok=True)
    return System(
        platform=platform,
        machine=machine,
        home=home,
        environ=dict(environ or {}),
        root=root,
        which=lambda name: programs.get(name),
        output=lambda cmd: outputs.get(Path(cmd[0]).name),
        reachable=lambda url: reachable,
        free_bytes=lambda path: int(free_gb * 1e9),
    )


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {
        p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))
    }


def run_install(system: System, *args: str, capsys=None) -> tuple:
    rc = install.main(["--plugins-only", "--venv", str(VENV), *args], system=system)
    out = capsys.readouterr().out if capsys else ""
    return rc, out


# --- folders per system ----------------------------------------------------------------------------------------------


def test_linux_plain_layout(tmp_path):
    system = fake_system(
        tmp_path,
        programs={"krita": "/usr/bin/krita", "gimp": "/usr/bin/gimp"},
        outputs={"gimp": "GNU Image Manipulation Program version 3.2.4\n"},
    )
    krita = hosts.find_krita(system).targets
    assert [(t.variant, t.plugin_dir, t.kritarc) for t in krita] == [
        ("linux", tmp_path / ".local/share/krita/pykrita", tmp_path / ".config/kritarc")
    ]
    gimp = hosts.find_gimp(system).targets
    assert [t.plugin_dir for t in gimp] == [tmp_path / ".config/GIMP/3.2/plug-ins"], "the found version's folder"
    # Existing profile folders win: every GIMP 3.x profile gets the plug-in.
    (tmp_path / ".config/GIMP/3.0").mkdir(parents=True)
    (tmp_path / ".config/GIMP/3.2").mkdir()
    (tmp_path / ".config/GIMP/2.10").mkdir()
    assert [t.plugin_dir for t in hosts.find_gimp(system).targets] == [
        tmp_path / ".config/GIMP/3.0/plug-ins",
        tmp_path / ".config/GIMP/3.2/plug-ins",
    ]
    # XDG folders are honoured.
    xdg = fake_system(
        tmp_path,
        programs={"krita": "/usr/bin/krita"},
        environ={"XDG_DATA_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": str(tmp_path / "c")},
    )
    assert hosts.find_krita(xdg).targets[0].plugin_dir == tmp_path / "d/krita/pykrita"
    assert hosts.find_krita(xdg).targets[0].kritarc == tmp_path / "c/kritarc"


def test_gimp_2_alone_is_not_gimp_3(tmp_path):
    system = fake_system(
        tmp_path,
        programs={"gimp": "/usr/bin/gimp"},
        outputs={"gimp": "GNU Image Manipulation Program version 2.10.38\n"},
    )
    search = hosts.find_gimp(system)
    assert search.targets == [] and "GIMP 3 was not found" in search.not_found_message()
    assert "--gimp-dir" in search.not_found_message()


def test_flatpak_and_snap_layouts(tmp_path):
    (tmp_path / ".var/app/org.kde.krita").mkdir(parents=True)
    (tmp_path / ".var/app/org.gimp.GIMP").mkdir(parents=True)
    (tmp_path / "snap/krita").mkdir(parents=True)
    (tmp_path / "snap/gimp").mkdir(parents=True)
    system = fake_system(tmp_path)
    krita = {t.variant: t for t in hosts.find_krita(system).targets}
    assert set(krita) == {"flatpak", "snap"}
    assert krita["flatpak"].plugin_dir == tmp_path / ".var/app/org.kde.krita/data/krita/pykrita"
    assert krita["flatpak"].kritarc == tmp_path / ".var/app/org.kde.krita/config/kritarc"
    assert krita["snap"].plugin_dir == tmp_path / "snap/krita/current/.local/share/krita/pykrita"
    assert krita["snap"].kritarc == tmp_path / "snap/krita/current/.config/kritarc"
    assert all(t.sandboxed for t in krita.values())
    gimp = {t.variant: t.plugin_dir for t in hosts.find_gimp(system).targets}
    assert gimp == {
        "flatpak": tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins",
        "snap": tmp_path / "snap/gimp/current/.config/GIMP/3.0/plug-ins",
    }


def test_windows_layout(tmp_path):
    appdata, local = tmp_path / "AppData/Roaming", tmp_path / "AppData/Local"
    (appdata / "krita").mkdir(parents=True)
    (appdata / "GIMP/3.0").mkdir(parents=True)
    system = fake_system(tmp_path, platform="win32", environ={"APPDATA": str(appdata), "LOCALAPPDATA": str(local)})
    krita = hosts.find_krita(system).targets
    assert [(t.variant, t.plugin_dir, t.kritarc) for t in krita] == [
        ("windows", appdata / "krita/pykrita", local / "kritarc")
    ]
    assert [t.plugin_dir for t in hosts.find_gimp(system).targets] == [appdata / "GIMP/3.0/plug-ins"]


def test_macos_layout(tmp_path):
    system = fake_system(tmp_path, platform="darwin", machine="arm64")
    (system.root / "Applications/krita.app").mkdir(parents=True)
    (system.root / "Applications/GIMP.app").mkdir(parents=True)
    support = tmp_path / "Library/Application Support"
    krita = hosts.find_krita(system).targets
    assert [(t.plugin_dir, t.kritarc) for t in krita] == [
        (support / "krita/pykrita", tmp_path / "Library/Preferences/kritarc")
    ]
    assert [t.plugin_dir for t in hosts.find_gimp(system).targets] == [support / "GIMP/3.0/plug-ins"]


def test_gimp3_directory_replaces_the_profile(tmp_path):
    system = fake_system(tmp_path, environ={"GIMP3_DIRECTORY": str(tmp_path / "myprofile")})
    assert [t.plugin_dir for t in hosts.find_gimp(system).targets] == [tmp_path / "myprofile/plug-ins"]


# --- real installs into temporary HOMEs ------------------------------------------------------------------------------

LAYOUTS = {
    "linux": (
        dict(programs={"krita": "/usr/bin/krita", "gimp-3.0": "/usr/bin/gimp-3.0"}),
        [],
        [".local/share/krita/pykrita", ".config/GIMP/3.0/plug-ins"],
        [".config/kritarc"],
    ),
    "flatpak": (
        {},
        [".var/app/org.kde.krita", ".var/app/org.gimp.GIMP"],
        [".var/app/org.kde.krita/data/krita/pykrita", ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"],
        [".var/app/org.kde.krita/config/kritarc"],
    ),
    "snap": (
        {},
        ["snap/krita", "snap/gimp"],
        ["snap/krita/current/.local/share/krita/pykrita", "snap/gimp/current/.config/GIMP/3.0/plug-ins"],
        ["snap/krita/current/.config/kritarc"],
    ),
    "windows": (
        dict(platform="win32"),
        ["AppData/Roaming/krita", "AppData/Roaming/GIMP/3.0"],
        ["AppData/Roaming/krita/pykrita", "AppData/Roaming/GIMP/3.0/plug-ins"],
        ["AppData/Local/kritarc"],
    ),
    "macos": (
        dict(platform="darwin", machine="arm64"),
        ["Library/Application Support/krita", "Library/Application Support/GIMP/3.0"],
        ["Library/Application Support/krita/pykrita", "Library/Application Support/GIMP/3.0/plug-ins"],
        ["Library/Preferences/kritarc"],
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_install_upgrade_and_uninstall_in_a_temporary_home(layout, tmp_path, capsys):
    options, existing, plugin_dirs, kritarcs = LAYOUTS[layout]
    home = tmp_path / "home"
    for folder in existing:
        (home / folder).mkdir(parents=True)
    environ = (
        {"APPDATA": str(home / "AppData/Roaming"), "LOCALAPPDATA": str(home / "AppData/Local")}
        if layout == "windows"
        else {}
    )
    system = fake_system(home, environ=environ, **options)
    before = snapshot(home)

    rc, out = run_install(system, capsys=capsys)
    assert rc == 0, out
    pykrita, plug_ins = (home / d for d in plugin_dirs)
    assert (pykrita / "paintbridge/__init__.py").is_file() and (pykrita / "paintbridge.desktop").is_file()
    assert (pykrita / "paintbridge/vendor/msgpack").is_dir() and (pykrita / "paintbridge/protocol").is_dir()
    command = json.loads((pykrita / "paintbridge/server.json").read_text())["command"]
    assert command == install.server_command(VENV)
    assert (plug_ins / "paintbridge/paintbridge.py").is_file()
    assert "enable_paintbridge=true" in (home / kritarcs[0]).read_text()
    models = home / ".local/share/paintbridge/models"
    assert all((models / sub).is_dir() for sub in install.MODEL_SUBFOLDERS)
    record = json.loads((home / ".local/share/paintbridge/install-record.json").read_text())
    assert str(pykrita / "paintbridge") in record["files"] and str(plug_ins / "paintbridge") in record["files"]

    # A second run upgrades in place: same files, no duplicates, no leftovers.
    (pykrita / "paintbridge/stale.txt").write_text("from an older version")
    installed = {k: v for k, v in snapshot(home).items() if "stale" not in k}
    rc, out = run_install(system, capsys=capsys)
    assert rc == 0, out
    assert snapshot(home) == installed
    assert json.loads((home / ".local/share/paintbridge/install-record.json").read_text()) == record

    # Uninstall: back to exactly what was there before.
    rc, out = install.main(["--uninstall"], system=system), capsys.readouterr().out
    assert rc == 0, out
    assert snapshot(home) == before


def test_uninstall_keeps_downloaded_models_and_users_kritarc_lines(tmp_path, capsys):
    system = fake_system(tmp_path, programs={"krita": "/usr/bin/krita"})
    kritarc = tmp_path / ".config/kritarc"
    kritarc.parent.mkdir(parents=True)
    kritarc.write_text("[General]\ntheme=dark\n\n[python]\nenable_other=true\n")
    assert run_install(system, capsys=capsys)[0] == 0
    model = tmp_path / ".local/share/paintbridge/models/checkpoints/mine.safetensors"
    model.write_bytes(b"weights")
    assert install.main(["--uninstall"], system=system) == 0
    out = capsys.readouterr().out
    assert model.read_bytes() == b"weights" and "kept" in out
    assert kritarc.read_text() == "[General]\ntheme=dark\n\n[python]\nenable_other=true\n"
    assert not (tmp_path / ".local/share/krita/pykrita/paintbridge").exists()
    assert install.main(["--uninstall"], system=system) == 0
    assert "nothing to uninstall" in capsys.readouterr().out


def test_dry_run_prints_every_action_and_changes_nothing(tmp_path, capsys):
    (tmp_path / ".var/app/org.kde.krita").mkdir(parents=True)
    (tmp_path / ".config/GIMP/3.0").mkdir(parents=True)
    system = fake_system(tmp_path, programs={"krita": "/usr/bin/krita"})
    before = snapshot(tmp_path)
    rc = install.main(["--dry-run", "--venv", str(tmp_path / "newvenv")], system=system)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert snapshot(tmp_path) == before
    for expected in (
        "PyTorch build: cpu",
        "would: create the virtual environment",
        "would: install Paintbridge",
        "would: create the models folder",
        "would: install the Krita plugin into",
        "would: install the Krita (Flatpak) plugin into",
        "would: install the GIMP 3 plugin into",
        "dry run: nothing was changed",
    ):
        assert expected in out, expected
    # The torch build is said before any download, and so is the fallback when its index cannot be reached.
    assert out.index("PyTorch build:") < out.index("cannot be reached") < out.index("would: create the virtual")
    # The uninstall dry run changes nothing either.
    assert run_install(system)[0] == 0
    installed = snapshot(tmp_path)
    capsys.readouterr()
    assert install.main(["--uninstall", "--dry-run"], system=system) == 0
    assert "would: remove" in capsys.readouterr().out and snapshot(tmp_path) == installed


# --- PyTorch build per hardware ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "platform, programs, outputs, machine, build, index",
    [
        (
            "linux",
            {"nvidia-smi": "/usr/bin/nvidia-smi"},
            {"nvidia-smi": "NVIDIA GeForce RTX 4090\n"},
            "x86_64",
            "cuda",
            None,
        ),
        (
            "win32",
            {"nvidia-smi": "C:/nvidia-smi.exe"},
            {"nvidia-smi": "NVIDIA GeForce RTX 3060\n"},
            "AMD64",
            "cuda",
            torchbuild.INDEXES["cuda"],
        ),
        (
            "linux",
            {"rocminfo": "/opt/rocm/bin/rocminfo"},
            {"rocminfo": "  Name:                    gfx1100\n"},
            "x86_64",
            "rocm",
            torchbuild.INDEXES["rocm"],
        ),
        (
            "linux",
            {},
            {"lspci": "03:00.0 VGA compatible controller: Advanced Micro Devices, Inc. [AMD/ATI] Navi 31\n"},
            "x86_64",
            "rocm",
            torchbuild.INDEXES["rocm"],
        ),
        (
            "linux",
            {},
            {"lspci": "03:00.0 VGA compatible controller: Intel Corporation DG2 [Arc A770]\n"},
            "x86_64",
            "xpu",
            torchbuild.INDEXES["xpu"],
        ),
        ("win32", {}, {"powershell": "Intel(R) Arc(TM) A750 Graphics\n"}, "AMD64", "xpu", torchbuild.INDEXES["xpu"]),
        ("win32", {}, {"powershell": "AMD Radeon RX 7900 XTX\n"}, "AMD64", "cpu", None),
        ("darwin", {}, {}, "arm64", "mps", None),
        ("darwin", {}, {"sysctl": "1\n"}, "x86_64", "mps", None),  # an arm64 Mac under Rosetta
        ("darwin", {}, {}, "x86_64", "cpu", None),
        (
            "linux",
            {},
            {"lspci": "00:02.0 VGA compatible controller: Intel Corporation UHD Graphics 620\n"},
            "x86_64",
            "cpu",
            torchbuild.INDEXES["cpu"],
        ),
        ("win32", {}, {}, "AMD64", "cpu", None),
    ],
)
def test_torch_build_per_hardware(tmp_path, platform, programs, outputs, machine, build, index):
    system = fake_system(tmp_path, platform=platform, programs=programs, outputs=outputs, machine=machine)
    choice = torchbuild.choose_torch(system, torchbuild.detect_hardware(system))
    assert (choice.build, choice.index_url) == (build, index), choice


def test_torch_override_and_fallback(tmp_path):
    linux = fake_system(tmp_path, reachable=False)
    hardware = torchbuild.detect_hardware(linux)
    assert torchbuild.choose_torch(linux, hardware, "default") == torchbuild.TorchChoice(
        "default", None, "chosen with --torch"
    )
    assert torchbuild.choose_torch(linux, hardware, "rocm").index_url == torchbuild.INDEXES["rocm"]
    with pytest.raises(ValueError, match="Linux only"):
        torchbuild.choose_torch(fake_system(tmp_path, platform="win32"), hardware, "rocm")
    with pytest.raises(ValueError, match="mps"):
        torchbuild.choose_torch(linux, hardware, "mps")
    cpu = torchbuild.choose_torch(linux, hardware)
    fallback, note = torchbuild.reachable_choice(linux, cpu)
    assert fallback.build == "default" and fallback.index_url is None
    assert torchbuild.INDEXES["cpu"] in note and "--torch cpu" in note
    online = fake_system(tmp_path, reachable=True)
    assert torchbuild.reachable_choice(online, cpu) == (cpu, "")


def test_torch_index_is_used_when_reachable(tmp_path, capsys):
    system = fake_system(tmp_path, reachable=True)
    assert install.main(["--dry-run", "--no-plugins", "--venv", str(tmp_path / "v")], system=system) == 0
    out = capsys.readouterr().out
    assert f"would: install PyTorch (cpu build) from {torchbuild.INDEXES['cpu']}" in out
    assert "cannot be reached" not in out


# --- messages for what stops an install -------------------------------------------------------------------------------


def test_no_suitable_python(tmp_path):
    system = fake_system(
        tmp_path, programs={"python3.11": "/usr/bin/python3.11"}, outputs={"python3.11": "3.10\n"}
    )  # a name that lies about its version
    with pytest.raises(InstallError, match="no suitable Python: .* needs Python 3.11 or newer, and this is 3.10"):
        checks.find_server_python(system, current=(3, 10), executable="/usr/bin/python3.10")
    good = fake_system(tmp_path, programs={"python3.12": "/usr/bin/python3.12"}, outputs={"python3.12": "3.12\n"})
    assert checks.find_server_python(good, current=(3, 10), executable="x") == ["/usr/bin/python3.12"]
    assert checks.find_server_python(good, current=(3, 11), executable="/me") == ["/me"]
    with pytest.raises(InstallError, match="no suitable Python: --python /usr/bin/python3.11 .*it is Python 3.10"):
        checks.given_python(system, Path("/usr/bin/python3.11"))
    assert checks.given_python(good, Path("/usr/bin/python3.12")) == ["/usr/bin/python3.12"]


def test_install_py_parses_on_old_pythons_and_uses_only_the_stdlib():
    stdlib = set(sys.stdlib_module_names) | {"pbsetup"}
    for path in [REPO / "install.py", *sorted((REPO / "pbsetup").glob("*.py"))]:
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 8) if path.name == "install.py" else (3, 10))
        names = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        names |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        }
        assert names <= stdlib, f"{path.name} imports {names - stdlib}"


def test_not_enough_disk_space(tmp_path, capsys):
    system = fake_system(tmp_path, free_gb=0.5)
    assert install.main(["--dry-run", "--no-plugins", "--venv", str(tmp_path / "v")], system=system) == 1
    out = capsys.readouterr().out
    assert "error: not enough disk space for the server's packages" in out and "0.5 GB is free" in out
    assert "would:" not in out, "nothing is planned before the check"


def test_no_network(tmp_path):
    offline = fake_system(tmp_path, reachable=False)
    with pytest.raises(InstallError, match="no network: the package index .* cannot be reached"):
        install.run([sys.executable, "-c", "raise SystemExit(3)"], offline)
    with pytest.raises(InstallError, match=r"failed \(exit status 3\)"):
        install.run([sys.executable, "-c", "raise SystemExit(3)"], fake_system(tmp_path, reachable=True))


def test_host_application_missing(tmp_path, capsys):
    system = fake_system(tmp_path)
    rc, out = run_install(system, capsys=capsys)
    assert rc == 0, out
    assert "Krita was not found" in out and "--krita-dir" in out
    assert "GIMP 3 was not found" in out and "--gimp-dir" in out
    assert (tmp_path / ".local/share/paintbridge/models/checkpoints").is_dir(), "the rest is installed"
    # A folder given on the command line is used whether or not the application is found.
    rc, out = run_install(system, "--krita-dir", str(tmp_path / "k"), capsys=capsys)
    assert rc == 0 and (tmp_path / "k/paintbridge/server.json").is_file() and "GIMP 3 was not found" in out


def test_a_folder_it_cannot_write_to(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    system = fake_system(tmp_path)
    rc, out = run_install(system, "--krita-dir", str(blocker / "pykrita"), capsys=capsys)
    assert rc == 1
    assert f"error: cannot write the Krita plugin to {blocker / 'pykrita'}: {blocker} is a file" in out
    assert "--krita-dir" in out
    rc, out = run_install(system, "--venv", str(tmp_path / "none"), capsys=capsys)
    assert rc == 1 and "there is no virtual environment at" in out


# --- uv (opt-in) -----------------------------------------------------------------------------------------------------


def test_uv_gets_pips_settings():
    from pbsetup.uvpip import uv_options

    config = (
        "global.constraint='/etc/xdg/pip/constraints.txt'\n"
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'\n"
        "global.find-links='/opt/wheels'\n:env:.find-links='/opt/wheels'\n:env:.default-timeout='180'\n"
        "global.index-url='https://mirror.example/simple'\n"
    )
    assert uv_options(config) == [
        "--constraint",
        "/etc/xdg/pip/constraints.txt",
        "--extra-index-url",
        "file:///opt/pypi/simple",
        "--extra-index-url",
        "file:///opt/pypi-more/simple",
        "--find-links",
        "/opt/wheels",
        "--index-url",
        "https://mirror.example/simple",
    ]
    assert "--index-url" not in uv_options(config, with_index_url=False)
    assert uv_options("") == []


def test_uv_chooses_across_indexes_as_pip_does():
    """A local mirror holding only an older release (as this machine's /opt/pypi holds an old ruff) must not hide the
    newer one on another index: uv's default looks only at the first index with the package, pip at all of them."""
    python = Path(sys.executable)
    command = install.installer(python, use_uv=True)
    at = command.index("--index-strategy")
    assert command[at + 1] == "unsafe-best-match"
    assert "--index-strategy" not in install.installer(python, use_uv=False)


def test_uv_steps_in_the_plan(tmp_path, capsys):
    system = fake_system(tmp_path, reachable=True)
    assert install.main(["--dry-run", "--no-plugins", "--uv", "--venv", str(tmp_path / "v")], system=system) == 0
    out = capsys.readouterr().out
    assert (
        out.index("would: install uv into")
        < out.index("would: install PyTorch (cpu build)")
        < out.index("would: install Paintbridge into")
    )
    assert "with uv" in out


def test_the_record_remembers_the_folders_made_for_it(tmp_path):
    from pbsetup.record import Record

    record = Record(tmp_path / "a/b/install-record.json")
    record.save()
    record.save()
    assert Record.load(record.path).created_dirs == [str(tmp_path / "a/b"), str(tmp_path / "a")]


def test_install_py_as_a_script_into_a_temporary_home(tmp_path):
    """The command a painter runs (``python install.py``), with the folders given, then ``--uninstall``."""
    import os
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "PAINTBRIDGE_MODELS"}
    env["HOME"] = str(home)
    args = [
        sys.executable,
        str(REPO / "install.py"),
        "--plugins-only",
        "--venv",
        str(VENV),
        "--krita-dir",
        str(home / "k"),
        "--gimp-dir",
        str(home / "g"),
    ]
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (home / "k/paintbridge/vendor/websockets").is_dir() and (home / "g/paintbridge/vendor/msgpack").is_dir()
    for plugin in ("k/paintbridge", "g/paintbridge"):  # both record the server command in the same file
        assert json.loads((home / plugin / "server.json").read_text())["command"] == install.server_command(VENV)
        assert (home / plugin / "client" / "jobs.py").is_file() and (home / plugin / "protocol").is_dir()
    out = subprocess.run(
        [sys.executable, str(REPO / "install.py"), "--uninstall"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert snapshot(home) == {}
