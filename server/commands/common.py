"""What the subcommands share: the server configuration from the command line, and whether Ray Serve is there."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..config import DEFAULT_HOST, ServerConfig, default_models_dir, default_styles_dir


def server_config(args: argparse.Namespace, port: Optional[int] = None) -> ServerConfig:
    """The server's configuration from ``serve``/``run``/``models`` arguments (``port`` instead of ``--port``)."""
    dirs = [Path(d).expanduser() for d in (args.models or [])] or [default_models_dir()]
    return ServerConfig(
        host=getattr(args, "host", DEFAULT_HOST),
        port=port if port is not None else args.port,
        token=getattr(args, "token", None),
        model_dirs=dirs,
        styles_dir=Path(args.styles).expanduser() if getattr(args, "styles", None) else default_styles_dir(),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", None),
        recalibrate=getattr(args, "recalibrate", False),
        allow_pickle=getattr(args, "allow_pickle", False),
        preload=not getattr(args, "no_preload", True),
        grace=getattr(args, "grace", 300.0),
        allow_origins=list(getattr(args, "allow_origin", None) or []),
        allow_hosts=list(getattr(args, "allow_host", None) or []),
        shared_memory=not getattr(args, "no_shared_memory", False),
    )


def cluster_missing() -> Optional[str]:
    """None when Ray Serve is installed, else what to install."""
    import importlib.util

    try:  # looked up, not imported: Ray reads its settings when imported (server/cluster/rayenv.py sets them)
        ray = importlib.util.find_spec("ray")
    except (ImportError, ValueError):
        ray = None
    if ray is None or not any((Path(p) / "serve").is_dir() for p in ray.submodule_search_locations or ()):
        return "cluster mode needs Ray Serve: pip install 'paintbridge[cluster]' (or python3 install.py --cluster)"
    return None
