"""Errors that end an editor action with a message for the painter (never a traceback); ``str(err)`` is the message."""

from __future__ import annotations


class PaintbridgeError(Exception):
    """A failure the painter can act on."""


class JobInputError(PaintbridgeError, ValueError):
    """Something about the document or the settings stops a job before it is sent; the message says what to change."""


class AddressError(JobInputError):
    """A server address that is not a usable ``ws://host:port``."""


class ServerUnavailable(PaintbridgeError):
    """The server cannot be reached, or the connection dropped."""


class ServerStartError(ServerUnavailable):
    """The local server could not be started; the message says why."""


class JobError(PaintbridgeError):
    """The server refused or failed a job (or the connection); ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(PaintbridgeError):
    """The job was cancelled."""
