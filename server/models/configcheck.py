"""Checks on the JSON configs that come with models (diffusers and transformers folders, ``<name>.config/`` folders
beside single files), before any model is built from them.

A config decides how much memory a model takes before a single weight is read: ``hidden_size: 1000000000`` would make
a linear layer of 10^18 values, ``num_hidden_layers: 10**9`` a loop that never ends. So every config file is read with
a size bound, and every size and count in it is bounded: counts (layers, heads, blocks, anything ``num_*``) by
``MAX_COUNT``, other sizes by ``MAX_SIZE``: far above the largest real models', far below what would exhaust memory.
A model built directly from a config (not through a loader that builds it empty first) is also measured on the meta
device, and refused when it would hold far more bytes than its weights file (``check_declared_bytes``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator, Tuple

from .headers import HeaderError, regular_size

MAX_CONFIG_BYTES = 1 << 20  # real configs are a few KB
MAX_COUNT = 4096  # layers, heads, blocks: the largest real models have ~100
MAX_SIZE = 1 << 20  # widths, vocabularies, positions: the largest real ones are ~260,000
MAX_DEPTH = 32
CONFIG_NAMES = ("config.json", "model_index.json")
_COUNT = re.compile(r"(^num_|_num_|layers|heads|blocks|experts|groups)", re.IGNORECASE)
_FREE = re.compile(r"(theta|seed|token_id|timesteps|epsilon|eps$|scale|factor)", re.IGNORECASE)


class ConfigError(ValueError):
    """A model config that is unreadable or declares sizes no real model has."""


def read_config(path: Path) -> dict:
    """A config file's map, read with a size bound and its sizes checked (``ConfigError`` names file and field)."""
    try:
        size = regular_size(path)
    except HeaderError as err:
        raise ConfigError(str(err)) from None
    where = f"{path.parent.name}/{path.name}"
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where} is {size} bytes; a model config is a few KB (at most {MAX_CONFIG_BYTES} are read)")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ConfigError(f"{where} is not a readable JSON config ({type(err).__name__})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{where} is not a JSON map")
    check_sizes(config, where)
    return config


def check_sizes(config: dict, where: str) -> None:
    """Refuse a config with a count above ``MAX_COUNT`` or another size above ``MAX_SIZE`` (or nested too deep)."""
    for key, value in _ints(config, "", 0, where):
        leaf = key.rsplit(".", 1)[-1]
        if _FREE.search(leaf):
            continue
        bound = MAX_COUNT if _COUNT.search(leaf) else MAX_SIZE
        if abs(value) > bound:
            raise ConfigError(
                f"{where} declares {key} = {value}, beyond any real model (at most {bound}): the "
                "config is damaged or hostile; the model is not built"
            )


def _ints(value: object, key: str, depth: int, where: str) -> Iterator[Tuple[str, int]]:
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _ints(v, f"{key}.{k}" if key else str(k), depth + 1, where)
    elif isinstance(value, list):
        for v in value:
            yield from _ints(v, key, depth + 1, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield key, value


def check_folder(folder: Path) -> None:
    """Check every config of a model folder: ``config.json``/``model_index.json`` at its top and one level down."""
    for name in CONFIG_NAMES:
        for path in [folder / name, *sorted(folder.glob(f"*/{name}"))]:
            if path.exists():
                read_config(path)


def check_declared_bytes(model_cls, config: dict, weights_bytes: int, what: str) -> None:
    """Build ``model_cls`` from ``config`` on the meta device (no memory) and refuse it when its parameters would take
    far more bytes than its weights file holds (a file in fp16 or fp8 may grow 2-4x when cast; more is a lie)."""
    import torch

    with torch.device("meta"):
        model = model_cls.from_config(config)
    declared = sum(p.numel() * p.element_size() for p in model.parameters())
    if declared > 4 * weights_bytes + (64 << 20):
        raise ConfigError(
            f"the config of {what} declares a model of {declared / 1e9:.1f} GB, but its weights file has "
            f"{weights_bytes / 1e9:.2f} GB: the config does not belong to these weights"
        )
