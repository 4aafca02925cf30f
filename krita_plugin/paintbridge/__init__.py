"""Paintbridge for Krita: a docker that sends the selection, layers and masks to a local diffusion server.

Krita imports this package at start-up; it registers the docker through the document door. Outside Krita (unit
tests) importing it does nothing. The modules, one job each:

- ``document.py``  the one door to Krita (the only module that imports ``krita``): reads a job's inputs through
                   ``client.jobs.capture``, writes the preview layer and results, kritarc settings, the docker
                   registration, and ``ChangeWatch`` (live mode's change notifications, without reading pixels)
- ``session.py``   the panel's state and behaviour, without Qt or Krita: settings, connection, job in flight,
                   results, control layers; every rule comes from ``client/``
- ``live.py``      live mode: change notifications in, frames out, scheduled by ``client.live.LiveScheduler``
- ``view.py``      the panel widget: binds widgets to the session both ways; no job state
- ``widgets.py``   builds and lays out the panel's widgets (no behaviour)
- ``docker.py``    the Krita docker: makes session and view, and the Qt glue to the UI thread
- ``model.py``     small value types (ResultImage, ControlSpec, RunningJob, Event)
- ``pixels.py``    Krita's pixel layouts (U8/U16/F16/F32, linear profiles) to and from ``bgra8``
- ``progress_preview.py``, ``settings_store.py``, ``qt_compat.py``, ``wire.py`` (finds ``protocol`` and ``client``)
"""

from importlib.util import find_spec

if find_spec("krita") is not None:
    from . import document
    from .docker import DOCKER_ID, PaintbridgeDocker

    document.register_docker(DOCKER_ID, PaintbridgeDocker)
