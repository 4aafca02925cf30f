"""``worker``: this machine's GPUs (or CPU workers) added to a studio's pool."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config import default_models_dir
from .common import cluster_missing


def cmd_worker(args: argparse.Namespace) -> int:
    """``worker``: add this machine's GPUs (or CPU workers) to a studio's pool."""
    missing = cluster_missing()
    if missing:
        print(f"paintbridge worker: {missing}", file=sys.stderr)
        return 2
    from ..cluster import rayenv

    if rayenv.is_loopback(args.address):
        print(f"paintbridge worker: {rayenv.LOOPBACK_HEAD}", file=sys.stderr)
        return 2
    rayenv.prepare(args.address)
    from ..cluster.launch import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    dirs = [Path(d).expanduser() for d in (args.models or [])] or [default_models_dir()]
    run_worker(
        args.address,
        args.ray_bind,
        dirs,
        args.replicas,
        args.device,
        args.dtype,
        args.replica_cpus,
        args.allow_pickle,
        machine=args.name or "",
    )
    return 0
