"""Krita host scenarios one per Krita start beside all of them in one start (``_run_group_once`` of
tests/test_krita_host.py), in the real Krita 5.1.5 under Xvfb against the server the plugin starts itself, alternately
in the same process.

    .venv/bin/python benchmarks/krita_grouped_checks.py [ROUNDS]

Each round runs the scenarios of the host tests' plain group both ways; prints each way's wall time, the fixed cost of
each start (a fresh HOME with the plugin installed, then Krita's start and quit around the scenarios) and each
scenario's own time, and the ratio separate / grouped (larger = grouping saves more). Times are noisy on a shared
machine; the ratio measured side by side is what to compare.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


class _Folders:
    """What ``_run_group_once`` asks of pytest's ``tmp_path_factory``: fresh numbered folders."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        folder = self.base / f"{name}{self.count}"
        folder.mkdir()
        return folder


def _parts():
    import docbombs
    from test_krita_host import H, W, Part

    return [
        Part("history_bomb", W, H, files={"bomb-history.bin": docbombs.packed_bomb_history()}),
        Part("classical", W, H),
        Part("history", W, H),
    ]


def _costs(runs: dict) -> tuple:
    """(fixed cost of the start, {scenario: own seconds}) from one start's results; fails on a scenario's error."""
    own = {}
    krita = None
    for tag, run in runs.items():
        if isinstance(run, Exception):
            raise run
        assert not run["errors"], (tag, run["errors"])
        own[tag] = run["scenario_s"]
        krita = run["_krita"]
    return krita["setup_s"] + krita["elapsed"] - sum(own.values()), own


def main() -> None:
    from test_krita_host import _run_group_once

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with tempfile.TemporaryDirectory(prefix="pb-krita-grouped-") as scratch:
        folders = _Folders(Path(scratch))
        for i in range(rounds):
            t = time.perf_counter()
            separate = [_costs(_run_group_once(folders, [part])) for part in _parts()]
            sw = time.perf_counter() - t
            t = time.perf_counter()
            grouped = _costs(_run_group_once(folders, _parts()))
            gw = time.perf_counter() - t
            fixed = ", ".join(f"{f:.1f}" for f, _ in separate)
            own = ", ".join(f"{tag} {s:.1f}" for _, o in separate for tag, s in o.items())
            print(f"round {i + 1}: {len(separate)} scenarios, one start each: {sw:.1f} s wall")
            print(f"  fixed cost per start: {fixed} s; scenarios' own time: {own} s")
            print(f"round {i + 1}: {len(separate)} scenarios, one start:      {gw:.1f} s wall")
            own = ", ".join(f"{tag} {s:.1f}" for tag, s in grouped[1].items())
            print(
                f"  fixed cost of the start: {grouped[0]:.1f} s; scenarios' own time (with the steps between): {own} s"
            )
            print(f"separate / grouped ratio: wall {sw / gw:.2f}")


if __name__ == "__main__":
    main()
