"""Paintbridge for GIMP 3: procedures under Filters > Paintbridge that send the selection's context to a local
Paintbridge server and insert the results as new layers.

An adapter on the shared client core (``client/``): ``host`` is the only module that touches GIMP's document API;
``procedures``, ``dialog`` and ``live`` hold GIMP's registration and widgets; the rest is plain Python with fast unit
tests.
"""

__version__ = "0.1.0"
