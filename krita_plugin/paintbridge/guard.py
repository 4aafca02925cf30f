"""The panel's actions never let an exception reach Krita (which would open a modal dialog): they say it instead."""

from __future__ import annotations

import functools
import sys
import traceback
from typing import Callable

from .model import DocumentError
from .wire import client


def guarded(method: Callable) -> Callable:
    """Run a painter's action so that a failure becomes a message through the object's ``show_message(text, error)``
    (the method returns None then), never an exception inside Krita."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (DocumentError, client.errors.PaintbridgeError) as err:
            self.show_message(str(err), error=True)
        except Exception as err:  # noqa: BLE001 - a bug: keep Krita usable and say what happened
            traceback.print_exc(file=sys.stderr)
            self.show_message(
                f"Internal error ({type(err).__name__}: {err}). Details are on Krita's console.", error=True
            )
        return None

    return wrapper
