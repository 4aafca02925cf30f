"""The ``protocol`` package as ``client/`` sees it, and the one place that turns a built job into a message.

``client/`` is vendored next to ``protocol/``: in the repository and in the GIMP plug-in folder both are top-level
packages; in the Krita plugin both sit inside the ``paintbridge`` package. So ``protocol`` is looked up as a sibling
package first (``from .. import protocol``) and as a top-level one otherwise.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Dict, Optional, Sequence

try:  # vendored inside a plugin package: paintbridge/client next to paintbridge/protocol
    from .. import protocol  # type: ignore[attr-defined]
except (ImportError, ValueError):  # top-level: the repository, or the GIMP plug-in folder
    import protocol  # type: ignore[no-redef]

Box = protocol.Box

sampling = import_module(".sampling", protocol.__name__)  # the sampler x schedule table (pure data)

__all__ = ["protocol", "Box", "job_message", "client_module", "sampling"]


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


def job_message(
    *,
    job_id: str,
    mode: str,
    model: str,
    prompt: str,
    negative_prompt: str,
    image: Optional["protocol.ImagePayload"],
    mask: Optional["protocol.ImagePayload"],
    controls: Sequence[Dict[str, Any]],
    params: Dict[str, Any],
    x: int,
    y: int,
    result_format: str,
    previews: bool,
    live: bool,
    references: Sequence[Dict[str, Any]] = (),  # reference images
    regions: Sequence[Dict[str, Any]] = (),  # regions
    style: str = "",  # a server style by name
) -> "protocol.Job":
    """The ``protocol.Job`` for these fields: the only function that knows how a job travels."""
    params = dict(params)
    if "extend" in params:
        params["extend"] = protocol.Extend(**params["extend"])
    if "hires" in params:  # hires fix and detailer
        params["hires"] = protocol.Hires(**params["hires"])
    if "detail" in params:
        params["detail"] = protocol.Detail(**dict(params["detail"], targets=tuple(params["detail"]["targets"])))
    return protocol.Job(
        id=job_id,
        mode=mode,
        model=model,
        prompt=prompt,
        negative_prompt=negative_prompt,
        image=image,
        mask=mask,
        controls=tuple(protocol.Control(**c) for c in controls),
        params=protocol.Params(**params),
        x=int(x),
        y=int(y),
        result_format=result_format,
        previews=bool(previews),
        live=bool(live),
        references=tuple(protocol.Reference(**r) for r in references),
        regions=tuple(protocol.Region(**r) for r in regions),
        style=style,
    )


def message_type(msg: Any) -> str:
    """The ``type`` of a server message, whether it is a wire map or a typed message object."""
    if isinstance(msg, dict):
        return str(msg.get("type", ""))
    return str(getattr(msg, "type", "") or "")


def field_of(msg: Any, name: str, default: Any = None) -> Any:
    """A field of a server message (wire map or typed message)."""
    if isinstance(msg, dict):
        return msg.get(name, default)
    return getattr(msg, name, default)


def result_layers(msg: Any) -> list:
    """The typed result layers of a ``result`` message (wire maps are validated here)."""
    layers = field_of(msg, "layers", ()) or ()
    return [
        layer if isinstance(layer, protocol.ResultLayer) else protocol.ResultLayer.from_wire(layer) for layer in layers
    ]


def result_text(msg: Any) -> str:
    """The words of a ``result`` (mode ``caption``: the picture described), stripped; "" when it has none."""
    text = field_of(msg, "text", "") or ""
    return " ".join(str(text).split())
