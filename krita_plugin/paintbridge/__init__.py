"""Paintbridge for Krita: a docker that sends the selection, layers and masks to a local diffusion server.

Krita imports this package at start-up; it registers the docker through the document door (the only module that
imports ``krita``). Outside Krita (unit tests) importing it does nothing.
"""

from importlib.util import find_spec

if find_spec("krita") is not None:
    from . import document
    from .docker import DOCKER_ID, PaintbridgeDocker

    document.register_docker(DOCKER_ID, PaintbridgeDocker)
