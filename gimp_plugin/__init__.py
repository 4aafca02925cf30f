"""Paintbridge for GIMP 3: procedures under Filters > Paintbridge that send the selection's context to a local
Paintbridge server and insert the results as new layers.

Only ``procedures`` and ``host`` import GIMP's bindings (``gi``); the rest is plain Python with fast unit tests.
"""

__version__ = "0.1.0"
