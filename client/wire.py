"""The ``protocol`` package as ``client/`` sees it.

``client/`` is vendored next to ``protocol/``: in the repository and in the GIMP plug-in folder both are top-level
packages; in the Krita plugin both sit inside the ``paintbridge`` package. So ``protocol`` is looked up as a sibling
package first (``from .. import protocol``) and as a top-level one otherwise.
"""

from __future__ import annotations

from importlib import import_module
from typing import Optional

try:  # vendored inside a plugin package: paintbridge/client next to paintbridge/protocol
    from .. import protocol  # type: ignore[attr-defined]
except (ImportError, ValueError):  # top-level: the repository, or the GIMP plug-in folder
    import protocol  # type: ignore[no-redef]

Box = protocol.Box

sampling = import_module(".sampling", protocol.__name__)  # the sampler x schedule table (pure data)

__all__ = ["protocol", "Box", "client_module", "sampling"]


def client_module():
    """``protocol.client`` (imports websockets, so it is loaded only when a connection is made)."""
    return import_module(".client", protocol.__name__)


def make_client(
    url: str,
    token: Optional[str],
    client_name: str,
    client_version: str,
    session_id: Optional[str] = None,
    open_timeout: float = 5.0,
    resume_for: Optional[float] = None,
):
    """A ``protocol.client.Client`` for ``url`` (not connected yet) carrying the plugin's session id (a fresh one
    when None). While a job waits, the transport reconnects with back-off and that id for ``resume_for`` seconds
    (None: the transport's default)."""
    extra = {} if resume_for is None else {"resume_for": resume_for}
    return client_module().Client(
        url,
        client_name=client_name,
        client_version=client_version,
        token=token,
        open_timeout=open_timeout,
        session=session_id,
        **extra,
    )


def result_text(result: "protocol.Result") -> str:
    """The words of a ``result`` (mode ``caption``: the picture described), spaces collapsed; "" when it has none."""
    return " ".join(result.text.split())
