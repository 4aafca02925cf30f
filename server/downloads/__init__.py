"""Model downloads: the curated catalogue of starter sets, verified downloads through huggingface_hub, and what is
still missing (``paintbridge models`` and ``paintbridge models pull NAME``).

- ``catalogue``: ``server/catalogue.json`` read into files and presets.
- ``pull``: one file or a set into a models folder: progress, resume of a cut connection, checksum, offline message.
- ``status``: each preset's missing files; what an installed catalogue file is.
"""

from .catalogue import Catalogue, CatalogueError, CatalogueFile, Preset
from .pull import ChecksumError, OfflineError, PullCancelled, PullError, PullResult, pull, pull_file
from .status import PresetStatus, preset_status

__all__ = [
    "Catalogue",
    "CatalogueError",
    "CatalogueFile",
    "Preset",
    "ChecksumError",
    "OfflineError",
    "PullCancelled",
    "PullError",
    "PullResult",
    "pull",
    "pull_file",
    "PresetStatus",
    "preset_status",
]
