"""Protocol error type and the stable error codes carried by ``error`` messages."""

from __future__ import annotations

from typing import Optional

BAD_REQUEST = "bad_request"
UNSUPPORTED = "unsupported"
MODEL_NOT_FOUND = "model_not_found"
OUT_OF_MEMORY = "out_of_memory"
CANCELLED = "cancelled"
INTERNAL = "internal"
UNAUTHORIZED = "unauthorized"
VERSION_MISMATCH = "version_mismatch"
TOO_LARGE = "too_large"
BUSY = "busy"
OFFLINE = "offline"
DOWNLOAD_FAILED = "download_failed"

ERROR_CODES = (
    BAD_REQUEST,
    UNSUPPORTED,
    MODEL_NOT_FOUND,
    OUT_OF_MEMORY,
    CANCELLED,
    INTERNAL,
    UNAUTHORIZED,
    VERSION_MISMATCH,
    TOO_LARGE,
    BUSY,
    OFFLINE,
    DOWNLOAD_FAILED,
)


class ProtocolError(Exception):
    """An error that travels to the peer as an ``error`` message.

    ``field`` names the offending field (dotted path, e.g. ``params.steps``) when there is one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        field: Optional[str] = None,
        job_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.job_id = job_id

    def to_message(self) -> dict:
        """The ``error`` message for this error."""
        msg: dict = {"type": "error", "code": self.code, "message": self.message}
        if self.job_id is not None:
            msg["id"] = self.job_id
        if self.field is not None:
            msg["field"] = self.field
        return msg

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r}, field={self.field!r})"


class LocalProtocolError(Exception):
    """This side tried to break the protocol's order rules (a bug in the caller, never the peer's fault)."""


def bad_field(field: str, problem: str) -> ProtocolError:
    """A ``bad_request`` error whose message starts with the field's name."""
    return ProtocolError(BAD_REQUEST, f"field '{field}' {problem}", field=field)
