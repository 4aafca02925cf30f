#!/usr/bin/env python3
"""GIMP 3 entry point of the Paintbridge plug-in (installed as ``plug-ins/paintbridge/paintbridge.py``).

The plug-in folder is self-contained: ``gimp_plugin/`` (this package), ``protocol/`` and ``vendor/`` (pure-Python
msgpack and websockets) sit beside this file and are put first on ``sys.path``.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Installed: the package is a sub-folder. Run from a source checkout: this file is inside the package.
BASE = HERE if os.path.isdir(os.path.join(HERE, "gimp_plugin")) else os.path.dirname(HERE)
for folder in (os.path.join(BASE, "vendor"), BASE):
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.insert(0, folder)

from gimp_plugin.procedures import main  # noqa: E402

if __name__ == "__main__":
    main()
