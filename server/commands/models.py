"""``models``: the installed models and what each starter set lacks; ``models pull``: catalogue downloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..config import default_models_dir
from .common import server_config


def cmd_models(args: argparse.Namespace) -> int:
    """List installed models (kind, family, size) and what each starter set still lacks."""
    if getattr(args, "models_command", None) == "pull":
        return cmd_models_pull(args)
    from ..downloads import Catalogue, preset_status
    from ..downloads.status import catalogue_entry_for, disk_size, human_size
    from ..defaults import with_family
    from ..router import Router

    router = Router(server_config(args, port=0))
    roots = list(router.config.model_dirs)
    catalogue = Catalogue.load()
    print(f"models in: {', '.join(str(d) for d in roots)}")
    for m in with_family(router.models()):
        family = m.get("family") or m.get("arch") or "-"
        variant = m.get("variant") or ("inpaint" if m.get("inpaint") and m["kind"] == "checkpoint" else "")
        path = Path(m["path"]) if m.get("path") else None
        size = human_size(disk_size(path)) if path is not None and path.exists() else "-"
        known = catalogue_entry_for(path, catalogue, roots) if path is not None else None
        what = f"  ({known.what})" if known else ""
        print(f"  {m['kind']:<11} {family:<9} {variant:<8} {size:>9}  {m['name']}{what}")
    print("starter sets (paintbridge models pull NAME):")
    for status in preset_status(catalogue, roots):
        if status.complete:
            print(f"  {status.preset.name:<11} complete")
            continue
        print(
            f"  {status.preset.name:<11} lacks {len(status.missing)} of {len(status.preset.files)} files "
            f"(about {human_size(status.missing_bytes)}):"
        )
        for item in status.missing:
            print(f"      {item.target}  ({item.family} {item.kind}, about {human_size(item.expected_bytes)})")
    return 0


class _PullProgress:
    """One line per file on stderr, redrawn at each whole percent."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # the stream at the time of the run
        self.last: tuple = ("", -1)

    def __call__(self, item, done: int, total: Optional[int]) -> None:
        from ..downloads.status import human_size

        percent = int(100 * done / total) if total else -1
        if (item.id, percent) == self.last:
            return
        self.last = (item.id, percent)
        bar = f"[{'#' * (percent // 4)}{'.' * (25 - percent // 4)}] {percent:3d}%" if total else ""
        of = f" of {human_size(total)}" if total else ""
        self.stream.write(f"\r  {item.target}  {bar} {human_size(done)}{of}   ")
        self.stream.flush()

    def end(self) -> None:
        if self.last[0]:
            self.stream.write("\n")
            self.last = ("", -1)


def cmd_models_pull(args: argparse.Namespace) -> int:
    """Download catalogue presets or files into the (first) models folder."""
    from ..downloads import Catalogue, CatalogueError, ChecksumError, OfflineError, PullError, pull
    from ..downloads.status import human_size

    root = Path(args.models[0]).expanduser() if args.models else default_models_dir()
    catalogue = Catalogue.load()
    try:
        items = [f for name in args.names for f in catalogue.resolve(name)]
    except CatalogueError as err:
        print(f"paintbridge models pull: {err}", file=sys.stderr)
        return 2
    items = list({f.id: f for f in items}.values())
    todo = [f for f in items if args.force or not f.path_in(root).exists()]
    print(
        f"{len(items)} file(s) for {', '.join(args.names)} into {root}: {len(items) - len(todo)} already there, "
        f"{len(todo)} to download (about {human_size(sum(f.expected_bytes for f in todo))})"
    )
    progress = _PullProgress()

    def report(result) -> None:
        progress.end()
        state = f"downloaded, checked with {result.checked_with}" if result.downloaded else "already there"
        print(f"  {result.file.target}: {state}")
        if result.downloaded and result.note:
            print(f"    note: {result.note}")

    try:
        pull(items, root, progress=progress, force=args.force, report=report)
    except OfflineError as err:
        progress.end()
        print(f"paintbridge models pull: {err}", file=sys.stderr)
        return 3
    except (ChecksumError, PullError) as err:
        progress.end()
        print(f"paintbridge models pull: {err}", file=sys.stderr)
        return 1
    print("done: restart the server (or press Refresh in the plugin) to use them")
    return 0
