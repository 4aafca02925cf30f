"""``serve``: the server the plugins connect to, on this machine or (``--cluster``) over a pool of engine replicas on
Ray Serve."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .common import cluster_missing, server_config


def cmd_serve(args: argparse.Namespace) -> int:
    from ..app import PaintbridgeServer
    from .. import tuning

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("paintbridge.tuning").info("process settings applied: %s", tuning.apply())
    if args.cluster:
        return cmd_serve_cluster(args)
    try:
        server = PaintbridgeServer(server_config(args))
    except ValueError as err:
        print(f"paintbridge serve: {err}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"Paintbridge server listening on ws://{args.host}:{port}", flush=True)
        print(f"device: {server.device}; models: {', '.join(m['name'] for m in server.router.models())}", flush=True)

    try:
        asyncio.run(server.run(on_ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        print(f"paintbridge serve: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_serve_cluster(args: argparse.Namespace) -> int:
    """``serve --cluster``: the front end of a studio over a pool of engine replicas on Ray Serve."""
    missing = cluster_missing()
    if missing:
        print(f"paintbridge serve: {missing}", file=sys.stderr)
        return 2
    from ..cluster import rayenv

    rayenv.prepare(args.ray_bind if args.cluster == "start" else args.cluster)
    from ..cluster.launch import serve_cluster

    config = server_config(args)
    try:
        config.validate()
    except ValueError as err:
        print(f"paintbridge serve: {err}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"Paintbridge server listening on ws://{args.host}:{port}", flush=True)
        head = args.cluster if args.cluster != "start" else f"{args.ray_bind}:{args.ray_port}"
        more = (
            "one machine (Ray on loopback; --ray-bind ADDRESS lets other machines join)"
            if rayenv.is_loopback(head)
            else f"add a machine with: paintbridge worker --address {head}"
        )
        print(f"cluster: Ray at {head}; {more}", flush=True)

    try:
        serve_cluster(config, args.cluster, args.ray_bind, args.ray_port, args.replicas, args.replica_cpus, ready)
    except KeyboardInterrupt:
        pass
    return 0
