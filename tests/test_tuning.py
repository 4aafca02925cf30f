"""``paintbridge serve`` keeps freed large buffers for the next job (glibc), and one variable turns that off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from server import tuning

REPO = Path(__file__).resolve().parent.parent

# In a fresh process: how many new memory mappings a freed-then-reallocated 64 MB buffer needs (glibc's default maps
# every block over 32 MiB anew and unmaps it on free; with the setting the second buffer reuses the first's memory).
PROBE = textwrap.dedent("""
    import sys
    from server import tuning
    applied = tuning.keep_freed_memory()
    def maps():
        with open("/proc/self/maps") as f:
            return set(line.split()[0] for line in f)
    a = bytearray(64_000_000); del a
    before = maps()
    b = bytearray(64_000_000)
    print(applied, len(maps() - before))
""")


# The same after a network engine is made: the router gives the kept memory back and malloc maps large blocks again.
PROBE_ENGINE = PROBE.replace(
    "applied = tuning.keep_freed_memory()",
    textwrap.dedent("""\
    applied = tuning.keep_freed_memory()
    from server.config import ServerConfig
    from server.router import Router
    Router(ServerConfig(model_dirs=[])).engine("preprocess")
    applied = applied and not tuning._kept"""),
)


def probe(value: str, script: str = PROBE) -> tuple:
    env = dict(os.environ, PYTHONPATH=str(REPO), **{tuning.ENV: value})
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    applied, new_maps = out.split()
    return applied == "True", int(new_maps)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc only"
)
def test_a_freed_large_buffer_is_reused_unless_turned_off():
    assert probe("1") == (True, 0)
    applied, new_maps = probe("0")
    assert not applied and new_maps == 1


@pytest.mark.engine  # loads a model or starts a server process
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc only"
)
def test_making_an_engine_that_runs_networks_gives_the_kept_memory_back():
    assert probe("1", PROBE_ENGINE) == (True, 1)  # applied, then undone: the second buffer is mapped anew
    tuning.give_back_freed_memory()  # whatever an earlier test of this process kept is given back once...
    assert not tuning.give_back_freed_memory()  # ...and a second call has nothing left to undo


@pytest.mark.parametrize("value,on", [("", True), ("1", True), ("0", False), ("off", False), ("No", False)])
def test_the_variable_turns_it_off(monkeypatch, value, on):
    monkeypatch.setenv(tuning.ENV, value)
    assert tuning.enabled() is on


def test_threads_wait_passively_unless_the_user_chose_or_torch_is_loaded(monkeypatch):
    monkeypatch.delenv(tuning.OMP_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert tuning.passive_threads() and os.environ[tuning.OMP_ENV] == "PASSIVE"
    monkeypatch.setenv(tuning.OMP_ENV, "ACTIVE")
    assert not tuning.passive_threads() and os.environ[tuning.OMP_ENV] == "ACTIVE"
    monkeypatch.delenv(tuning.OMP_ENV)
    monkeypatch.setitem(sys.modules, "torch", sys)  # already imported: OpenMP has read its settings
    assert not tuning.passive_threads() and tuning.OMP_ENV not in os.environ


@pytest.mark.engine  # loads a model or starts a server process
def test_serve_applies_the_settings_before_anything_imports_torch(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop(tuning.OMP_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", "0", "--models", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                break
    finally:
        proc.terminate()
        proc.wait(30)
    applied = [line for line in lines if "process settings applied" in line]
    assert applied and "'passive_threads': True" in applied[0], "".join(lines)
