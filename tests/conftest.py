"""Shared fixtures: real servers on loopback (in a thread or as a separate process), the cache folder, artifacts."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
import xdist_groups

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Tests compare pixels across runs and servers: they run the fp32 recipe whatever this machine measured fastest
# (tests/test_calibration.py unsets this to test the measured default).
os.environ.setdefault("PAINTBRIDGE_DTYPE", "float32")
# torch's OpenMP threads wait without spinning, as ``paintbridge serve`` makes them (server/tuning.py), here before any
# test module imports torch: the tests run servers and tiny models in this process beside other processes on few
# cores, where spinning threads made a tiny Flux job ~10x slower in wall time (and CPU time).
from server import tuning

tuning.passive_threads()
# The run keeps the compiled test modules and helpers it makes (in __pycache__ folders, which git ignores) even where the
# environment asks for none (PYTHONDONTWRITEBYTECODE): without them every pytest process, each worker of ``pytest -n``,
# rewrites the asserts of every test module and compiles it again at collection, ~7 s of CPU per process here.
sys.dont_write_bytecode = False
# Styles the tests' servers save (in a thread, a process, or started by a real Krita) go to a folder of this run, not
# the user's styles folder.
if "PAINTBRIDGE_STYLES" not in os.environ:  # made once: a worker process of this run inherits it
    os.environ["PAINTBRIDGE_STYLES"] = tempfile.mkdtemp(prefix="paintbridge-test-styles-")
TEST_STYLES = os.environ["PAINTBRIDGE_STYLES"]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
READY_LINE = re.compile(r"Paintbridge server listening on (ws://\S+)")


def cache_dir() -> Path:
    """``$PAINTBRIDGE_CACHE`` or ``~/.cache/paintbridge``: tiny models, host root folders (kept between runs)."""
    path = Path(os.environ.get("PAINTBRIDGE_CACHE") or Path.home() / ".cache" / "paintbridge")
    path.mkdir(parents=True, exist_ok=True)
    return path


TIERS = ("unit", "engine", "host", "cluster")
"""Test tiers, cheapest first: unit (no server, no model), engine (a real server over loopback and/or tiny models),
host (a real Krita, a real GIMP 3), cluster (a real Ray). ``pytest --tier unit,engine`` runs the fast two; the
README's test command runs all four."""

ENGINE_FIXTURES = frozenset(
    {"server", "client", "start_server", "start_server_process", "models_dir", "paintbridge_cli", "benchmark_main"}
)


MODEL_MAKERS = ("factory", "mediapipe_weights", "tiny_")
"""Test helpers that build random-weight models (``tiny_*`` modules by name): a test module importing one is engine."""


def _makes_models(module) -> bool:
    for value in vars(module).values():
        name = getattr(value, "__name__", "") if isinstance(value, type(sys)) else getattr(value, "__module__", "")
        if isinstance(name, str) and name.removeprefix("tests.").startswith(MODEL_MAKERS):
            return True
    return getattr(module, "MODELS", None) is not None


def tier_of(item: pytest.Item) -> str:
    """A test's tier, by rule: its module's ``host``/``cluster`` mark (or a ``test_cluster*`` module), else engine if
    it asks for a server or the tiny models (a fixture of ``ENGINE_FIXTURES``, an ``engine`` mark: a model loaded or a
    server process started by the test itself, or a module that imports a model maker of ``MODEL_MAKERS``), else
    unit."""
    if item.get_closest_marker("host"):
        return "host"
    module = getattr(item, "module", None)
    if item.get_closest_marker("cluster") or item.path.name.startswith("test_cluster"):
        return "cluster"
    if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("engine"):
        return "engine"
    if module is not None and _makes_models(module):
        return "engine"
    return "unit"


TORCH_THREADS = 1
"""Torch's intra-op threads in a test process, set once its tests are collected: the tiny models' kernels are too
small to gain from a second thread, and ``pytest -n`` runs a worker per core and one more. Measured side by side (AMD
EPYC, 2 cores, load ~15, ``-n 0``): test_vpred, test_seamless, test_zimage, test_chroma and test_klein took 41.0 CPU-s
with 2 threads, 38.2 with 1, and less wall time too."""


SERVER_THREADS: List[int] = []
"""Torch's threads in this process before ``TORCH_THREADS`` was set: what a ``paintbridge serve`` process runs with."""


@contextlib.contextmanager
def threads_of_a_server_process() -> Iterator[None]:
    """Torch's threads for the block as a server process has them: an in-process server whose pixels are compared bit
    for bit with a server process's must add its numbers in the same order (threads split a kernel's sums)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(SERVER_THREADS[0] if SERVER_THREADS else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Torch's threads (``TORCH_THREADS``) where collecting the test modules imported it; and what collecting made (the
    test modules, their tests, the libraries they import: ~380 k objects in a worker of the unit and engine tiers)
    frozen out of the garbage collector's scans (``gc.freeze``), which it lives through anyway: a full collection (the
    server's ``gc.collect()`` at each model switch, Python's own) then scans only what the tests made since. Side by
    side (AMD EPYC, load ~20, ``-n 0``): test_vpred, test_seamless, test_zimage, test_chroma and test_klein spent 7.6
    CPU-s in collections without, 5.7 with it (40.2 -> 38.8 CPU-s in all)."""
    if "torch" in sys.modules:
        import torch

        SERVER_THREADS.append(torch.get_num_threads())
        torch.set_num_threads(TORCH_THREADS)
    gc.freeze()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        default=",".join(TIERS),
        help=f"comma-separated test tiers to run, of {', '.join(TIERS)} (default: all)",
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run's own styles folder goes (one the caller named in ``$PAINTBRIDGE_STYLES`` stays), once every worker
    process of ``pytest -n`` has finished with it: in the process that started them."""
    is_worker = hasattr(session.config, "workerinput")
    if not is_worker and Path(TEST_STYLES).name.startswith("paintbridge-test-styles-"):
        shutil.rmtree(TEST_STYLES, ignore_errors=True)
    if not is_worker:
        xdist_groups.remove_folder(session.config)


HOST_START_SHARED = "WORKER_FIXTURES"
"""A host module may name, in a tuple of this name, module-scoped fixtures that start no host and are cheap to make
once per worker process (a server with no models, a throw-away profile): they do not tie tests into one group."""


def _host_starts(item: pytest.Item) -> set:
    """The host starts a host test shares with others: the module-scoped fixtures of its own module in its closure
    (a parametrized one once per parameter), except the module's ``WORKER_FIXTURES``."""
    module = item.module
    cheap = set(getattr(module, HOST_START_SHARED, ()))
    indices = getattr(getattr(item, "callspec", None), "indices", {})
    starts = set()
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        fixture = defs[-1]
        if name in cheap or fixture.scope != "module" or getattr(fixture.func, "__module__", "") != module.__name__:
            continue
        starts.add((name, indices.get(name, -1) if fixture.params else -1))
    return starts


def host_groups(items: List[pytest.Item]) -> dict:
    """Host test -> its group: the tests of a module that share a host start (a fixture of ``_host_starts``, also
    through another test) form one group, named after the module and the first of their starts; a test that shares
    none is a group of its own."""
    parent: dict = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    starts = {item: {(item.path.name, *start) for start in _host_starts(item)} for item in items}
    for keys in starts.values():
        for key in keys:
            parent[root(key)] = root(min(keys))
    first: dict = {}
    for key in parent:
        first[root(key)] = min(first.get(root(key), key), key)
    names = {}
    for item, keys in starts.items():
        if not keys:
            names[item] = item.nodeid
            continue
        module, fixture, param = first[root(min(keys))]
        names[item] = f"{module}::{fixture}" + (f"[{param}]" if param >= 0 else "")
    return names


def worker_group(item: pytest.Item, tier: str, hosts: dict) -> str:
    """Which tests one worker runs together under ``pytest -n`` (``--dist loadgroup``): a module's tests (they share
    its module-scoped servers and models), a host module's tests that share one Krita or GIMP start (``host_groups``:
    several host groups run at once), and every cluster test (one real Ray at a time: its clusters take fixed
    ports)."""
    if tier == "cluster":
        return "cluster"
    return hosts.get(item, item.path.name)


GROUP_SECONDS = {
    "test_krita_host.py::krita_diffusion_run": 410,
    "test_krita_host.py::krita_decompose_run": 160,
    "test_gimp_host.py::classical_run": 120,
    "test_krita_host.py::krita_caption_run": 160,
    "test_krita_host.py::krita_large_run": 160,
    "test_krita_host.py::krita_529_group": 110,
    "test_krita_host.py::krita_good_defaults_run[1]": 100,
    "test_krita_host.py::krita_6_run": 85,
    "test_krita_host.py::krita_flux_regions_run": 60,
    "cluster": 270,
    "test_families.py": 840,
    "test_diffusion.py": 780,
    "test_speed.py": 490,
    "test_offers.py": 365,
    "test_regions_dit.py": 270,
    "test_hires_detail.py": 150,
    "test_sampling.py": 140,
    "test_server.py": 100,
    "test_engines.py": 85,
    "test_payloads.py": 85,
}
"""Rough seconds the groups that take longest took (host groups: ``pytest -n 4 --durations`` on a 2-core machine
shared with other work, load 10-15; unit and engine groups: their wall time in ``pytest --tier unit,engine`` with 3
workers at load ~20, scaled by 0.7 to that scale, test_families.py's ratio); other groups count by their tier's
``TIER_SECONDS`` per test."""
TIER_SECONDS = {"unit": 0.05, "engine": 3, "host": 60, "cluster": 10}


def _longest_first(items: List[pytest.Item], groups: dict, tiers: dict) -> None:
    """Under ``pytest -n``: the groups in order of their expected time, longest first (``GroupScheduling`` hands them
    out in this order), so that no worker is left alone on a long group at the end; a group's tests keep their
    order."""
    seconds: dict = {}
    for item in items:
        seconds[groups[item]] = seconds.get(groups[item], 0) + TIER_SECONDS[tiers[item]]
    seconds.update({group: s for group, s in GROUP_SECONDS.items() if group in seconds})
    first = {}
    for index, item in enumerate(items):
        first.setdefault(groups[item], index)
    items.sort(key=lambda item: (-seconds[groups[item]], first[groups[item]]))


def _cheapest_first(items: List[pytest.Item], tiers: dict) -> None:
    """In one process: the modules in order of their costliest tier, unit modules first (the quick failures come
    first); a module's tests stay together (its module-scoped fixtures start once) and in their order."""
    rank: dict = {}
    for item in items:
        rank[item.path] = max(rank.get(item.path, 0), TIERS.index(tiers[item]))
    first = {}
    for index, item in enumerate(items):
        first.setdefault(item.path, index)
    items.sort(key=lambda item: (rank[item.path], first[item.path]))


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> Iterator[None]:
    """Tiers and ``--tier`` before the other plugins' hooks, the order and the groups after them (pytest's own
    reorders the tests of a parametrized module fixture; a worker of ``pytest -n`` then writes each test's group)."""
    wanted = {t.strip() for t in config.getoption("--tier").split(",") if t.strip()}
    unknown = wanted - set(TIERS)
    if unknown:
        raise pytest.UsageError(
            f"--tier: unknown tier(s) {', '.join(sorted(unknown))}; the tiers are {', '.join(TIERS)}"
        )
    tiers = {item: tier_of(item) for item in items}
    hosts = host_groups([item for item in items if tiers[item] == "host"])
    kept, dropped, groups = [], [], {}
    for item in items:
        tier = tiers[item]
        groups[item] = worker_group(item, tier, hosts)
        item.add_marker(getattr(pytest.mark, tier))
        (kept if tier in wanted else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    yield
    if hasattr(config, "workerinput"):
        _longest_first(items, groups, tiers)
        if xdist_groups.FOLDER_KEY in config.workerinput:
            xdist_groups.write_groups(config, {item.nodeid: groups[item] for item in items})
    else:
        _cheapest_first(items, tiers)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist, starting a worker: where it writes its tests' groups (``tests/xdist_groups.py``)."""
    node.workerinput[xdist_groups.FOLDER_KEY] = xdist_groups.folder_for_workers(node.config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` hands out our groups (``worker_group``), whole and in the workers' order."""
    return xdist_groups.GroupScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the machine's cores (at most ``--maxprocesses``): the host tests spend part
    of their time waiting on Krita, GIMP and Xvfb (fixed waits in the drivers), which the extra worker fills."""
    return (os.cpu_count() or 1) + 1


@pytest.fixture(scope="module")
def freed_memory_kept() -> Iterator[None]:
    """For a module whose jobs move images of tens of MB through the classical engine or the payload code: freed
    large buffers stay in this process, as ``paintbridge serve`` keeps them (``server/tuning.py``), instead of each
    new one faulting its pages in afresh; given back after the module (a router gives them back sooner, when it makes
    an engine that runs networks)."""
    kept = tuning.keep_freed_memory()
    yield
    if kept:
        tuning.give_back_freed_memory()


@pytest.fixture(scope="session")
def paintbridge_cache() -> Path:
    return cache_dir()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def models_dir(request, tmp_path_factory) -> Path:
    """The tiny random-weight models the test module names in its ``MODELS`` (tests/factory.py), built per module."""
    import factory

    return factory.make_models_dir(tmp_path_factory.mktemp("models"), request.module.MODELS)


@pytest.fixture(scope="module")
def server(models_dir: Path) -> Iterator:
    """A real server in a thread on loopback over ``models_dir``, shared by the module's tests."""
    from protocol.messages import Limits
    from server.app import ServerThread
    from server.config import ServerConfig

    thread = ServerThread(ServerConfig(host="127.0.0.1", port=0, model_dirs=[models_dir], limits=Limits())).start()
    yield thread
    thread.stop()


@pytest.fixture
def client(server, request) -> Iterator:
    """A protocol client connected to ``server``, named after the test module."""
    from protocol.client import Client

    with Client(server.url, client_name=request.module.__name__.replace("_", "-")) as c:
        yield c


@pytest.fixture
def empty_models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Factory: ``start_server(model_dirs=[...], token=None, **config)`` → a running ServerThread (``.url``)."""
    from protocol import Limits
    from server.app import ServerThread
    from server.config import ServerConfig

    started: List[ServerThread] = []

    def start(model_dirs=None, token: Optional[str] = None, limits: Optional[Limits] = None, **kwargs) -> ServerThread:
        if model_dirs is None:
            empty = tmp_path / f"models-{len(started)}"
            empty.mkdir(exist_ok=True)
            model_dirs = [empty]
        config = ServerConfig(
            host=kwargs.pop("host", "127.0.0.1"),
            port=0,
            token=token,
            model_dirs=[Path(d) for d in model_dirs],
            limits=limits or Limits(),
            **kwargs,
        )
        thread = ServerThread(config).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


LIBRARY_IMPORT_ENV = frozenset({"LD_LIBRARY_PATH", "TORCHINDUCTOR_CACHE_DIR"})
"""Variables that libraries set when first imported in a process (OpenCV's loader, torch's inductor), whichever test
imports them first: not state a command leaves behind."""


@pytest.fixture
def paintbridge_cli(capsys) -> Iterator:
    """``paintbridge_cli(*argv)`` → a CompletedProcess: ``server.cli.main(argv)`` run in this process (no interpreter,
    import or process start to pay), with the exit code and output the interpreter would give (SystemExit's code or
    message; an uncaught exception's traceback and 1). Each run is checked to leave no logging handler, environment
    variable or torch thread count changed behind it."""
    import logging
    import traceback

    import torch

    from server.cli import main

    def state() -> tuple:
        env = {k: v for k, v in os.environ.items() if k not in LIBRARY_IMPORT_ENV}
        return env, list(logging.getLogger().handlers), torch.get_num_threads()

    def run(*argv: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        before, failure = state(), ""
        try:
            code = main(list(argv))
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) or done.code is None else 1
            failure = "" if isinstance(done.code, int) or done.code is None else f"{done.code}\n"
        except Exception:  # noqa: BLE001 - what the interpreter does with it: the traceback, exit status 1
            code, failure = 1, traceback.format_exc()
        said = capsys.readouterr()
        assert state() == before, "paintbridge run left global state changed"
        return subprocess.CompletedProcess(["paintbridge", *argv], code or 0, said.out, said.err + failure)

    yield run


@pytest.fixture
def benchmark_main(capsys) -> Iterator:
    """``benchmark_main("gpu_check.py", *argv)`` → what ``benchmarks/<name>``'s ``main(argv)`` printed, run in this
    process (no interpreter or import to pay again); ``sys.path``, the environment and torch's thread count, which
    benchmarks set for their own process, are put back afterwards."""
    import importlib.util

    import torch

    path, env, threads = list(sys.path), dict(os.environ), torch.get_num_threads()

    def run(name: str, *argv: str) -> str:
        spec = importlib.util.spec_from_file_location(f"benchmarks_{Path(name).stem}", REPO / "benchmarks" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        capsys.readouterr()
        code = module.main(list(argv))
        said = capsys.readouterr()
        assert not code, said.out[-2000:] + said.err[-2000:]
        return said.out

    yield run
    sys.path[:] = path
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(threads)


class ServerProcess:
    """``paintbridge serve`` in its own process group, on a free port; ``restart`` keeps the port."""

    def __init__(self, args: List[str], log_path: Path, env: Optional[dict] = None) -> None:
        self.args = args
        self.log_path = log_path
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.port = 0

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        port = self.port or 0
        cmd = [sys.executable, "-m", "server", "serve", "--port", str(port)] + self.args
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(self.env or {}))
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True
        )
        found: List[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                match = READY_LINE.search(line)
                if match and not found:
                    found.append(match.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.proc.poll() is not None:
                raise RuntimeError(f"paintbridge serve exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"paintbridge serve did not start within {timeout} s; see {self.log_path}")
            time.sleep(0.05)
        self.url = found[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL with ``sig=signal.SIGKILL`` to simulate a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)

    def restart(self) -> "ServerProcess":
        self.stop()
        return self.start()


@pytest.fixture
def start_server_process(tmp_path: Path) -> Iterator:
    """Factory: ``start_server_process(model_dirs=[...], token=None, extra_args=[])`` → a running ServerProcess."""
    started: List[ServerProcess] = []

    def start(
        model_dirs=None, token: Optional[str] = None, extra_args: Optional[List[str]] = None, env: Optional[dict] = None
    ) -> ServerProcess:
        if model_dirs is None:
            empty = tmp_path / f"proc-models-{len(started)}"
            empty.mkdir(exist_ok=True)
            model_dirs = [empty]
        args: List[str] = []
        for d in model_dirs:
            args += ["--models", str(d)]
        if token:
            args += ["--token", token]
        proc = ServerProcess(args + list(extra_args or []), tmp_path / f"server-{len(started)}.log", env)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
