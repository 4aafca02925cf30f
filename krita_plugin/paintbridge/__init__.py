"""Paintbridge for Krita: a docker that sends the selection, layers and masks to a local diffusion server.

Krita imports this package at start-up; it registers the docker. Outside Krita (unit tests) importing it does nothing.
"""

try:
    from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita  # type: ignore
except ImportError:  # not inside Krita
    Krita = None

if Krita is not None:
    from .docker import DOCKER_ID, PaintbridgeDocker

    Krita.instance().addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockPosition.DockRight, PaintbridgeDocker)
    )
