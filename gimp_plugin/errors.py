"""Errors that end a procedure with a message for the user (never a traceback)."""

from __future__ import annotations


class PaintbridgeError(Exception):
    """A failure the user can act on; ``str(err)`` is the whole message."""


class InputError(PaintbridgeError):
    """Something about the image or the arguments stops the job before it is sent."""


class ServerUnavailable(PaintbridgeError):
    """The server cannot be reached (or the connection dropped)."""


class JobError(PaintbridgeError):
    """The server refused or failed the job; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(PaintbridgeError):
    """The job was cancelled."""
