"""Our groups for ``pytest -n --dist loadgroup``: each worker writes the group of every test it collected (a file the
process that starts the workers named), and ``GroupScheduling`` hands out whole groups, in collection order, by that
file.

pytest-xdist's own ``loadgroup`` reads a group from a suffix it writes into each test's node id; pytest 9.2 no longer
lets a plugin change a node id, so its groups are silently lost (pytest-dev/pytest-xdist#1386) and a module's tests,
host starts included, would run on several workers at once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional

import pytest
from xdist.scheduler import LoadScopeScheduling

FOLDER_KEY = "paintbridge_groups"
"""The ``workerinput`` entry naming the folder the workers write their groups to."""
_FOLDER = pytest.StashKey[Path]()


def folder_for_workers(config: pytest.Config) -> str:
    """The folder the workers write their groups to (made once per run, in the process that starts them)."""
    if _FOLDER not in config.stash:
        config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="paintbridge-test-groups-"))
    return str(config.stash[_FOLDER])


def remove_folder(config: pytest.Config) -> None:
    if _FOLDER in config.stash:
        shutil.rmtree(config.stash[_FOLDER], ignore_errors=True)


def write_groups(config: pytest.Config, groups: Dict[str, str]) -> None:
    """In a worker: ``groups`` (node id -> group) where the scheduler reads them, before the worker reports its
    collection (written whole, then renamed)."""
    folder = Path(config.workerinput[FOLDER_KEY])
    name = config.workerinput["workerid"]
    partial = folder / f"{name}.partial"
    partial.write_text(json.dumps(groups))
    os.replace(partial, folder / f"{name}.json")


class GroupScheduling(LoadScopeScheduling):
    """pytest-xdist's scope scheduling with our groups as scopes, handed out in collection order (the workers order
    the groups, longest first)."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        self.folder = Path(folder_for_workers(config))
        self.groups: Optional[Dict[str, str]] = None

    def schedule(self) -> None:
        self.config.option.loadscopereorder = False  # keep the workers' order
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:  # every worker has written its groups by now: they report their collection after
            written = sorted(self.folder.glob("*.json"))
            if not written:
                raise RuntimeError(f"no worker wrote its test groups to {self.folder}")
            self.groups = json.loads(written[0].read_text())
        return self.groups.get(nodeid) or nodeid.split("::", 1)[0]
