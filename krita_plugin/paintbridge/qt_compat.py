"""One import point for Qt: PyQt5 in Krita 5, PyQt6 in Krita 6, whichever the host already loaded.

Code elsewhere uses scoped enum names (``Qt.AlignmentFlag.AlignLeft``), which both bindings accept.
"""

from __future__ import annotations

import sys
from typing import Any

if "PyQt6" in sys.modules and "PyQt5" not in sys.modules:
    from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore

    QT_MAJOR = 6
    QAction = QtGui.QAction
else:
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore

        QT_MAJOR = 5
        QAction = QtWidgets.QAction
    except ImportError:  # a host that only has PyQt6
        from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore

        QT_MAJOR = 6
        QAction = QtGui.QAction

Qt = QtCore.Qt
Signal = QtCore.pyqtSignal
Slot = QtCore.pyqtSlot


def to_bytes(value) -> bytes:
    """A QByteArray (or bytes) as Python bytes."""
    return value if isinstance(value, bytes) else bytes(value)


def byte_view(value) -> Any:
    """A QByteArray's bytes without a copy: a flat memoryview of it (which keeps it alive), or ``bytes`` from a binding
    without the buffer protocol there."""
    try:
        return memoryview(value).cast("B")
    except TypeError:
        return to_bytes(value)


def byte_array(data: bytes) -> "QtCore.QByteArray":
    return QtCore.QByteArray(bytes(data))


def set_pixel_data(node, data, x: int, y: int, width: int, height: int) -> None:
    """``node.setPixelData`` from any bytes-like ``data`` (a result's view of a shared file included) without a copy in
    Python: Krita copies the pixels into the layer during the call, from a QByteArray over ``data``'s own memory (which
    this frame keeps alive until then)."""
    try:
        pixels = QtCore.QByteArray.fromRawData(data)
    except (AttributeError, TypeError):  # a binding that takes only bytes there: one copy
        pixels = QtCore.QByteArray(bytes(data))
    node.setPixelData(pixels, x, y, width, height)


def qimage_from_bgra8(data: bytes, width: int, height: int) -> "QtGui.QImage":
    """A QImage (owning its pixels) from ``bgra8`` bytes; on little-endian machines this is Qt's ARGB32 layout."""
    image = QtGui.QImage(bytes(data), width, height, width * 4, QtGui.QImage.Format.Format_ARGB32)
    return image.copy()


def qimage_from_rgba8(data: bytes, width: int, height: int) -> "QtGui.QImage":
    """A QImage (owning its pixels) from ``rgba8`` bytes (R, G, B, A in memory: Qt's RGBA8888), without conversion."""
    image = QtGui.QImage(bytes(data), width, height, width * 4, QtGui.QImage.Format.Format_RGBA8888)
    return image.copy()
