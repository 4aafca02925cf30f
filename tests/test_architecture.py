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


def _relative_imports(path: Path) -> set:
    """The sibling modules a file imports with ``from .x import ...`` / ``from . import x``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return names


KRITA = REPO / "krita_plugin" / "paintbridge"


def test_only_the_document_door_imports_krita():
    importers = sorted(p.name for p in sources("krita_plugin") if "krita" in imported_top_modules(p))
    assert importers == ["document.py"], importers


@pytest.mark.parametrize("name", ["session.py", "live.py", "model.py", "settings_store.py", "progress_preview.py",
                                  "pixels.py", "wire.py"])
def test_krita_session_side_needs_neither_qt_nor_krita(name):
    """The session and what it uses run without Qt and without Krita (tests/test_krita_logic.py runs them so)."""
    path = KRITA / name
    assert not imported_top_modules(path) & HOST_BINDINGS, name
    assert not _relative_imports(path) & {"document", "qt_compat", "view", "widgets", "docker"}, name


def test_krita_plugin_uses_client_and_protocol_never_server():
    used = set().union(*(_relative_imports(p) for p in KRITA.glob("*.py")))
    assert "wire" in used  # client/ and protocol/ come in through wire.py, vendored or from the repository
    wire = imported_top_modules(KRITA / "wire.py") | _relative_imports(KRITA / "wire.py")
    assert {"client", "protocol"} <= wire
    for path in KRITA.glob("*.py"):
        assert "server" not in imported_top_modules(path), path.name


def test_no_krita_plugin_file_is_over_500_lines():
    for path in KRITA.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name


# --- inside the server: layers, arrows only downwards ----------------------------------------------------------------

# Each top-level module or package of server/ and its layer; a module may import only from its own layer or below.
SERVER_LAYERS = {
    "__init__": 0, "core": 0, "device": 0, "config": 0, "defaults": 0, "tuning": 0,  # core types, device, configuration,
    # defaults, process settings for speed
    "imageops": 1, "models": 1, "downloads": 1,  # what engines share: image operations, the model registry and
    # loaders; the model downloader beside them
    "payloads": 1,  # wire pixels to numpy and back (used by the app)
    "batches": 1,  # batch count: a job's pipeline calls one after another (issue 13)
    "detect": 1,  # face detection for the detailer (OpenCV's YuNet)
    "patchfill": 1, "lama": 1,  # the fills engines share: exemplar-based (numpy) and the LaMa network (spandrel)
    "classical": 2, "diffusion": 2, "families": 2, "upscale": 2, "preprocess": 2,  # the engines, peers
    "caption": 2,  # the captioning engine (mode caption), a peer of the others
    "router": 3,  # picks the engine for a job
    "jobs": 4, "sessions": 4, "pulls": 4,  # the job queue, client sessions, model downloads asked for by clients
    "access": 4, "netlog": 4, "outbox": 4,  # who may connect, the network log, a connection's bounded outbox
    "app": 5,  # the websocket application
    "cluster": 5,  # cluster mode: the same application over a pool of engine replicas on Ray Serve (issue 16)
    "cli": 6, "runjob": 6, "__main__": 7,  # the command line, its job read from files
}
ENGINES = {name for name, layer in SERVER_LAYERS.items() if layer == 2}
# Engines are peers and do not import each other, except: the diffusion engine runs a control layer through the
# preprocessors when the job asks for it; the Flux/SD3 engine shares the diffusion engine's job geometry (working
# canvas, result layers) and prompt syntax.
ENGINE_USES = {("diffusion", "preprocess"), ("families", "diffusion")}


def server_part(path: Path) -> str:
    """The top-level module or package of server/ that ``path`` belongs to."""
    rel = path.relative_to(REPO / "server")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def server_imports(path: Path) -> set:
    """The top-level parts of server/ that ``path`` imports (relative or absolute, at module level or in functions)."""
    package = list(path.relative_to(REPO).with_suffix("").parts[:-1])
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = base + (node.module.split(".") if node.module else [])
            else:
                module = (node.module or "").split(".")
            if module[:1] != ["server"]:
                continue
            if len(module) > 1:
                parts.add(module[1])
            else:  # from server import x / from . import x (x: a module of server/ or a name of its __init__)
                parts.update(a.name if a.name in SERVER_LAYERS else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = alias.name.split(".")
                if module[0] == "server":
                    parts.add(module[1] if len(module) > 1 else "__init__")
    return parts


@pytest.mark.parametrize("path", sources("server"), ids=lambda p: str(p.relative_to(REPO)))
def test_server_imports_only_downwards(path):
    own = server_part(path)
    assert own in SERVER_LAYERS, f"{path.relative_to(REPO)}: place '{own}' in a layer of SERVER_LAYERS"
    for part in server_imports(path) - {own}:
        assert part in SERVER_LAYERS, f"{path.relative_to(REPO)} imports server.{part}, which has no layer"
        assert SERVER_LAYERS[part] <= SERVER_LAYERS[own], (
            f"{path.relative_to(REPO)} ({own}, layer {SERVER_LAYERS[own]}) imports upwards: server.{part} "
            f"(layer {SERVER_LAYERS[part]})")
        if own in ENGINES and part in ENGINES:
            assert (own, part) in ENGINE_USES, f"engine {own} imports engine {part}: engines are peers"


def test_the_layer_check_sees_relative_and_lazy_imports():
    assert server_imports(REPO / "server" / "router.py") >= {"core", "classical", "diffusion", "upscale", "preprocess"}
    assert server_imports(REPO / "server" / "diffusion" / "engine.py") >= {"core", "device", "imageops", "models"}


# GIMP's document API: only gimp_plugin/host.py reads or writes images, layers, selections and buffers.
GIMP_DOCUMENT_API = {"Image", "Layer", "LayerMask", "GroupLayer", "Selection", "Item", "Drawable", "Channel",
                     "Display", "displays_flush", "edit_copy", "edit_paste", "directory"}


def gimp_attributes(path: Path) -> set:
    tree = ast.parse(path.read_text(), str(path))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Gimp"}


@pytest.mark.parametrize("path", [p for p in sources("gimp_plugin") if p.name != "host.py"], ids=lambda p: p.name)
def test_only_host_py_touches_gimps_document_api(path):
    assert "Gegl" not in path.read_text(), f"{path.name} uses GEGL buffers; pixel access belongs in host.py"
    used = gimp_attributes(path) & GIMP_DOCUMENT_API
    assert not used, f"{path.name} uses Gimp.{', Gimp.'.join(sorted(used))}; document access belongs in host.py"


@pytest.mark.parametrize("path", sources("gimp_plugin") + sources("client"), ids=lambda p: str(p.relative_to(REPO)))
def test_plugin_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 500, f"{path.relative_to(REPO)} has {lines} lines; split it by job (500 at most)"
