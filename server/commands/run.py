"""``run``: one job on image files, through a running server or one started for it, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from PIL import Image

from protocol import Message, Progress, Queued
from protocol.client import Client, ConnectionFailed, JobCancelled, JobFailed
from protocol.errors import ProtocolError

from .. import __version__
from ..runjob import build_job, flatten_result
from .common import server_config


class _ProgressBar:
    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # the stream at the time of the run
        self.shown = False

    def __call__(self, msg: Message) -> None:
        if isinstance(msg, Queued) and msg.position:
            print(f"queued, {msg.position} job(s) ahead", file=self.stream)
        elif isinstance(msg, Progress) and msg.total > 0:
            done = int(30 * msg.step / msg.total)
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {msg.step}/{msg.total}")
            self.stream.flush()
            self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")


def _out_paths(out: str, count: int) -> List[Path]:
    path = Path(out)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(count)]


def cmd_run(args: argparse.Namespace) -> int:
    try:
        job, image = build_job(args)
    except ProtocolError as err:  # a job the protocol refuses before anything starts: one line naming the field
        print(f"paintbridge run: {err}" + (f" ({err.field})" if err.field else ""), file=sys.stderr)
        return 2
    own_server = None
    url = args.server
    if not url:
        from ..app import ServerThread

        own_server = ServerThread(server_config(args, port=0)).start()
        url = own_server.url
    bar = _ProgressBar()
    try:
        with Client(url, "paintbridge-cli", __version__, token=args.token) as client:
            result = client.run(job, on_event=bar)
    except (ConnectionFailed, JobFailed, JobCancelled) as err:
        bar.end()
        detail = f" ({err.field})" if isinstance(err, JobFailed) and err.field else ""
        print(f"paintbridge run: {err}{detail}", file=sys.stderr)
        return 1
    finally:
        if own_server is not None:
            own_server.stop()
    bar.end()
    if args.mode == "caption":
        print(result.text)
        return 0
    layers = result.layers
    for layer, path in zip(layers, _out_paths(args.out, len(layers))):
        Image.fromarray(flatten_result(layer, image), "RGBA").save(path)
        print(f"{path}: {layer.width}x{layer.height} at ({layer.x}, {layer.y}), seed {layer.seed}")
    print(f"done in {result.elapsed:.2f} s")
    return 0
