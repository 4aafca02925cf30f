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
    probe = (
        "import sys; import plugin.client.jobs as jobs, plugin.client.wire as wire; "
        "assert wire.protocol.__name__ == 'plugin.protocol', wire.protocol.__name__; "
        "assert 'protocol' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-E", "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


@pytest.mark.parametrize("path", sources("krita_plugin") + sources("gimp_plugin"), ids=lambda p: p.name)
def test_plugins_use_only_what_the_host_python_has(path):
    own = (
        {"protocol", "client", "paintbridge", "krita_plugin", "gimp_plugin"}
        | {p.stem for p in path.parent.glob("*.py")}
        | {p.name for p in path.parent.iterdir() if p.is_dir()}
    )
    extra = imported_top_modules(path, feature_version=(3, 10)) - STDLIB - VENDORED - HOST_BINDINGS - own
    assert not extra, f"{path.relative_to(REPO)} imports {extra}"
    assert "server" not in imported_top_modules(path), f"{path.relative_to(REPO)} imports the server"


@pytest.mark.parametrize("path", sources("server"), ids=lambda p: str(p.relative_to(REPO)))
def test_server_never_imports_a_plugin(path):
    assert not imported_top_modules(path) & {"krita_plugin", "gimp_plugin", "krita", "gi", "PyQt5", "PyQt6"}


def runtime_sibling_imports(path: Path) -> set:
    """The sibling modules ``path`` imports at run time (``from .x import``, ``from . import x``, at module level or in a
    function; an ``if TYPE_CHECKING:`` block is no arrow)."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and id(node) not in typing_only:
            names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    siblings = {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
    return (names & siblings) - {path.stem}


PACKAGES = sorted(
    {
        p.parent
        for folder in ("protocol", "client", "server", "krita_plugin", "gimp_plugin")
        for p in (REPO / folder).rglob("*.py")
        if "vendor" not in p.parts
    }
)


def import_cycle(folder: Path) -> list:
    """One cycle of runtime sibling imports among ``folder``'s modules (``[a, b, a]``), or [] when there is none."""
    graph = {p.stem: runtime_sibling_imports(p) for p in folder.glob("*.py")}
    state: dict = {}

    def visit(name: str, path: list) -> list:
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                return path[path.index(other) :] + [other]
            if other not in state:
                found = visit(other, path + [other])
                if found:
                    return found
        state[name] = "done"
        return []

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return []


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_arrows_inside_a_package_go_one_way(folder):
    """Inside each package the modules import each other without a cycle: a module below never reaches back up, not
    even lazily from a function (that would hide a cycle, not remove it)."""
    cycle = import_cycle(folder)
    assert not cycle, f"{folder.relative_to(REPO)}: import cycle {' -> '.join(cycle)}"


def test_the_cycle_check_sees_lazy_imports_and_skips_type_checking_blocks(tmp_path):
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n")
    assert runtime_sibling_imports(tmp_path / "a.py") == set() and import_cycle(tmp_path) == []
    (tmp_path / "a.py").write_text("from .b import f\n")
    assert import_cycle(tmp_path) == ["a", "b", "a"]


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


def _sibling_closure(start: str, folder: Path) -> set:
    """``start`` and every module of ``folder`` it reaches through runtime sibling imports."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen and (folder / f"{name}.py").is_file():
            seen.add(name)
            todo.extend(runtime_sibling_imports(folder / f"{name}.py"))
    return seen


def test_krita_state_side_needs_neither_qt_nor_krita():
    """The panel's state (the session and every module it reaches) runs without Qt and without Krita
    (tests/test_krita_logic.py runs it so); found by following its imports, not from a list."""
    reached = _sibling_closure("session", KRITA)
    assert {"session", "live", "model", "wire"} <= reached
    for name in sorted(reached):
        path = KRITA / f"{name}.py"
        assert not imported_top_modules(path) & HOST_BINDINGS, f"{name}.py (reached from session.py) imports Qt/Krita"
        assert "qt_compat" not in runtime_sibling_imports(path) and "document" not in runtime_sibling_imports(path), (
            name
        )


def test_krita_plugin_uses_client_and_protocol_never_server():
    used = set().union(*(_relative_imports(p) for p in KRITA.glob("*.py")))
    assert "wire" in used  # client/ and protocol/ come in through wire.py, vendored or from the repository
    wire = imported_top_modules(KRITA / "wire.py") | _relative_imports(KRITA / "wire.py")
    assert {"client", "protocol"} <= wire
    for path in KRITA.glob("*.py"):
        assert "server" not in imported_top_modules(path), path.name


# --- inside the server: layers, arrows only downwards ----------------------------------------------------------------

from server.layers import ENGINE_USES, LAYERS as SERVER_LAYERS  # noqa: E402 (the table lives in the code)

ENGINES = {name for name, layer in SERVER_LAYERS.items() if layer == 2}


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
                base = package[: len(package) - (node.level - 1)]
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
            f"(layer {SERVER_LAYERS[part]})"
        )
        if own in ENGINES and part in ENGINES:
            assert (own, part) in ENGINE_USES, f"engine {own} imports engine {part}: engines are peers"


def test_the_layer_check_sees_relative_and_lazy_imports():
    assert server_imports(REPO / "server" / "router.py") >= {"core", "classical", "diffusion", "upscale", "preprocess"}
    assert server_imports(REPO / "server" / "diffusion" / "engine.py") >= {"core", "checkpoint", "imageops", "models"}


# GIMP's document API: only gimp_plugin/host.py reads or writes images, layers, selections and buffers.
GIMP_DOCUMENT_API = {
    "Image",
    "Layer",
    "LayerMask",
    "GroupLayer",
    "Selection",
    "Item",
    "Drawable",
    "Channel",
    "Display",
    "displays_flush",
    "edit_copy",
    "edit_paste",
    "directory",
}


def gimp_attributes(path: Path) -> set:
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Gimp"
    }


@pytest.mark.parametrize("path", [p for p in sources("gimp_plugin") if p.name != "host.py"], ids=lambda p: p.name)
def test_only_host_py_touches_gimps_document_api(path):
    assert "Gegl" not in path.read_text(), f"{path.name} uses GEGL buffers; pixel access belongs in host.py"
    used = gimp_attributes(path) & GIMP_DOCUMENT_API
    assert not used, f"{path.name} uses Gimp.{', Gimp.'.join(sorted(used))}; document access belongs in host.py"


def test_one_installer_for_both_plugins():
    """pbsetup/plugins.py installs both editors' plugins (stage, swap, roll back); the plugin folders hold only what
    runs inside the editor, and install.py loads nothing of them by file."""
    assert (
        not (REPO / "krita_plugin" / "installer.py").exists() and not (REPO / "gimp_plugin" / "installer.py").exists()
    )
    assert "spec_from_file_location" not in (REPO / "install.py").read_text()
    assert {"install_krita", "install_gimp", "swap_in"} <= {
        node.name
        for node in ast.parse((REPO / "pbsetup" / "plugins.py").read_text()).body
        if isinstance(node, ast.FunctionDef)
    }


def scratch_leaks(path: Path) -> list:
    """Where ``path`` makes a temporary file or folder that nothing removes: ``mkdtemp``/``mkstemp``, a
    ``TemporaryDirectory``/``NamedTemporaryFile`` outside a ``with`` (or with ``delete=False``), a folder of its own
    under ``$TMPDIR``/``gettempdir()``."""
    tree = ast.parse(path.read_text(), str(path))
    managed = {id(item.context_expr) for node in ast.walk(tree) if isinstance(node, ast.With) for item in node.items}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("mkdtemp", "mkstemp", "gettempdir"):
                out.append(f"line {node.lineno}: {name}()")
            elif name in ("TemporaryDirectory", "NamedTemporaryFile") and (
                id(node) not in managed or any(k.arg == "delete" for k in node.keywords)
            ):
                out.append(f"line {node.lineno}: {name}() outside a with")
        elif isinstance(node, ast.Constant) and node.value == "TMPDIR":
            out.append(f"line {node.lineno}: a folder of its own under $TMPDIR")
    return out


@pytest.mark.parametrize("path", sources("benchmarks"), ids=lambda p: p.name)
def test_benchmarks_remove_their_scratch_folders_also_when_they_fail(path):
    """A benchmark's models and work folders are ``with tempfile.TemporaryDirectory()`` blocks: gone after the run,
    whether it ends or fails."""
    assert not scratch_leaks(path), f"{path.relative_to(REPO)}: {scratch_leaks(path)}"


def test_the_scratch_check_sees_each_kind_of_leak(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        "import os, tempfile\n"
        "a = tempfile.mkdtemp()\n"
        "b = tempfile.TemporaryDirectory()\n"
        "with tempfile.NamedTemporaryFile(delete=False) as f:\n    pass\n"
        "c = os.environ.get('TMPDIR', '/tmp')\n"
        "with tempfile.TemporaryDirectory() as fine:\n    pass\n"
    )
    assert [leak.split(":")[0] for leak in scratch_leaks(leaky)] == ["line 2", "line 3", "line 4", "line 6"]
