"""How a procedure ends when its work fails: the painter gets a message and the PDB a status (a bug also leaves its
traceback on stderr)."""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, Optional, Tuple

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from client.errors import Cancelled, JobInputError, PaintbridgeError  # noqa: E402


def guarded(what: str, work: Callable[[], Any]) -> Tuple[Optional[Any], str, Any]:
    """(None, "", what ``work`` returned), or after a failure (status, message, None), the message shown; ``what``
    names the work in the message of an unexpected error ("the download")."""
    try:
        return None, "", work()
    except Cancelled as err:
        status, message = Gimp.PDBStatusType.CANCEL, str(err)
    except JobInputError as err:
        status, message = Gimp.PDBStatusType.CALLING_ERROR, str(err)
    except PaintbridgeError as err:
        status, message = Gimp.PDBStatusType.EXECUTION_ERROR, str(err)
    except Exception as err:  # noqa: BLE001 - a bug must end with a message, not a traceback
        traceback.print_exc(file=sys.stderr)
        message = f"Paintbridge: {what} failed unexpectedly ({type(err).__name__}: {err}). Please report this."
        Gimp.message(message)
        return Gimp.PDBStatusType.EXECUTION_ERROR, message, None
    Gimp.message(f"Paintbridge: {message}")
    return status, message, None
