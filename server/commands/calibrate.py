"""``calibrate``: which dtype runs fastest on this machine, measured and cached."""

from __future__ import annotations

import argparse


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``calibrate``: measure this machine's dtypes now (or show the cached result) and print the table."""
    from .. import calibration, device as devices

    kind, _ = devices.plan(args.device)
    result = calibration.calibrated(kind, again=not args.cached)
    print(calibration.table(result))
    print(f"cached in {calibration.default_path()}")
    return 0
