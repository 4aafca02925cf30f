"""DESIGN.md's arrows, checked on the source: protocol depends on nothing of ours, plugins never import the server,
plugin code uses only what a host's Python has, and it parses as Python 3.10 (Krita 5.2 on Windows)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)
VENDORED = {"msgpack", "websockets"}
HOST_BINDINGS = {"krita", "PyQt5", "PyQt6", "gi"}


def imported_top_modules(path: Path, feature_version=None) -> set:
    tree = ast.parse(path.read_text(), str(path), feature_version=feature_version)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources(folder: str) -> list:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "vendor" not in p.parts)


@pytest.mark.parametrize("path", sources("protocol"), ids=lambda p: p.name)
def test_protocol_needs_only_stdlib_msgpack_websockets(path):
    extra = imported_top_modules(path, feature_version=(3, 10)) - STDLIB - VENDORED
    assert not extra, f"{path.relative_to(REPO)} imports {extra}"


@pytest.mark.parametrize("path", sources("client"), ids=lambda p: p.name)
def test_client_core_needs_only_stdlib_and_protocol(path):
    """client/ is vendored into both plugins: no host bindings, no server, no third-party package of its own."""
    extra = imported_top_modules(path, feature_version=(3, 10)) - STDLIB - {"protocol"}
    assert not extra, f"{path.relative_to(REPO)} imports {extra}"


def test_client_core_finds_protocol_as_a_sibling_when_vendored(tmp_path):
    """Vendored inside a plugin package (Krita: paintbridge/client next to paintbridge/protocol) client/ uses that
    protocol copy, not a top-level one."""
    import shutil
    import subprocess

    pkg = tmp_path / "plugin"
    shutil.copytree(REPO / "client", pkg / "client")
    shutil.copytree(REPO / "protocol", pkg / "protocol")
    (pkg / "__init__.py").write_text("")
    probe = ("import sys; import plugin.client.jobs as jobs, plugin.client.wire as wire; "
             "assert wire.protocol.__name__ == 'plugin.protocol', wire.protocol.__name__; "
             "assert 'protocol' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-E", "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


@pytest.mark.parametrize("path", sources("krita_plugin") + sources("gimp_plugin"), ids=lambda p: p.name)
def test_plugins_use_only_what_the_host_python_has(path):
    own = {"protocol", "client", "paintbridge", "krita_plugin", "gimp_plugin"} | ({"install"} if path.name == "installer.py"
                                                                         else set()) | {
        p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
    extra = imported_top_modules(path, feature_version=(3, 10)) - STDLIB - VENDORED - HOST_BINDINGS - own
    assert not extra, f"{path.relative_to(REPO)} imports {extra}"
    assert "server" not in imported_top_modules(path), f"{path.relative_to(REPO)} imports the server"


@pytest.mark.parametrize("path", sources("server"), ids=lambda p: str(p.relative_to(REPO)))
def test_server_never_imports_a_plugin(path):
    assert not imported_top_modules(path) & {"krita_plugin", "gimp_plugin", "krita", "gi", "PyQt5", "PyQt6"}
