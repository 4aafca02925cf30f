"""``python -m server`` is ``paintbridge``."""

import sys

from .cli import main

sys.exit(main())
