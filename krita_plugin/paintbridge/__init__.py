"""Paintbridge for Krita: a docker that sends the selection, layers and masks to a local diffusion server.

Krita imports this package at start-up; it registers the docker through the document door. Outside Krita (unit
tests) importing it does nothing. The modules, one job each:

- ``document.py``  the one door to Krita (the only module that imports ``krita``): reads a job's inputs through
                   ``client.jobs.capture``, writes the preview layer and results, kritarc settings, the docker
                   registration, and ``ChangeWatch`` (live mode's change notifications, without reading pixels)
- ``session.py``   the panel's state, without Qt or Krita: a small facade over its parts (the one object the
                   widgets talk to); it holds the connection and the message line and wires the parts together
- ``settings_binding.py``  the job settings bound to ``client.settings``, checked against the server's listing, kept
                   in the host's configuration
- ``jobs.py``      submitting jobs, progress, the results strip (apply, discard), the hand-off to the history
- ``live.py``      live mode: change notifications in, frames out, scheduled by ``client.live.LiveScheduler``
- ``controls.py``, ``loras.py``, ``styles.py``, ``regions.py``, ``references.py``, ``downloads.py``,
  ``results_history.py``  the panel's other parts, each given narrow callables or parts, never the session
- ``guard.py``     the painter's actions say a failure in the panel instead of raising into Krita
- ``view.py``      the panel widget: binds widgets to the session both ways; no job state
- ``widgets.py``   builds and lays out the panel's widgets (no behaviour); sections with behaviour of their own
                   are built and bound in ``*_view.py`` / ``*_widgets.py`` (history, models, regions, LoRAs, styles…)
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
