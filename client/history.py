"""Results history for both editors: every result stays reachable after the panel or the document was closed.

A document's ``History`` is a list of ``Entry`` (oldest first): when, which mode, model and prompt, the client
``Settings`` of the job, the parameters the server reports having used, and each result layer (name, place, size,
seed, pixels, a small thumbnail). The adapters keep it inside the document under ``KEY`` (``client.docdata``:
Krita annotation ``paintbridge/history`` in the ``.kra``, GIMP parasite ``paintbridge-history`` in the ``.xcf``).

Pixels are stored losslessly as zlib-compressed raw rows (``rgba8``/``bgra8`` as they arrived) after PNG's "Up"
filter (each byte minus the one above it, computed bytewise on one big integer, so at C speed): a photo compresses
within about 6 % of a PNG file, without writing or parsing PNG in pure Python. Standard library only, so both editors
read and write it. The history is
bounded by the bytes it stores (``limit_bytes``, from ``Settings.history_limit_mb``): the oldest entries go first.

Apply again: ``Entry.layers`` are result layers as ``client.results`` places them (``box_of``, ``pixels_in``, names);
``Entry.applied`` says which of them applying again inserts: a layer of a group (a decomposition into layers) brings
its whole group, which each editor recreates from ``client.results.groups`` as it did the first time.
Reuse settings: ``Entry.reuse_settings`` gives the job's ``Settings`` with the result's seed.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import docdata
from .settings import Settings
from .wire import protocol

KEY = "history"
FORMAT = 1
DEFAULT_LIMIT_MB = 64
MAX_ENTRIES = 100
THUMBNAIL_SIZE = 96  # the longest side of a thumbnail, in pixels
LEVEL = 6  # zlib level: about as small as 9, several times faster
MAX_RAW_BYTES = 64 << 20  # a job whose pixels are larger (e.g. beyond 4096 x 4096 RGBA) is not kept


def _byte_masks(size: int) -> Tuple[int, int, int]:
    """(0x80.., 0x7f.., 0xff..) as integers of ``size`` bytes: the masks of bytewise arithmetic on big integers."""
    return (int.from_bytes(b"\x80" * size, "big"), int.from_bytes(b"\x7f" * size, "big"), (1 << (8 * size)) - 1)


def encode_pixels(data: bytes, width: int, bytes_per_pixel: int) -> bytes:
    """``data`` (rows of ``width`` pixels) with each byte minus the byte above it (mod 256: PNG's "Up" filter),
    zlib-compressed. The subtraction runs bytewise on one big integer (no carry between bytes), at C speed."""
    size, stride = len(data), width * bytes_per_pixel
    if not size or not stride:
        return zlib.compress(bytes(data), LEVEL)
    high, low, ones = _byte_masks(size)
    a = int.from_bytes(data, "big")
    b = a >> (8 * stride)  # the row above, aligned under each row (zeros above the first)
    filtered = ((a | high) - (b & low)) ^ ((a ^ b ^ ones) & high)
    return zlib.compress(filtered.to_bytes(size, "big"), LEVEL)


def decode_pixels(
    packed: bytes, width: int, bytes_per_pixel: int, size: int, what: str = "a stored history image"
) -> bytes:
    """The exact bytes ``encode_pixels`` was given; ``DocumentDataError`` naming ``what`` when they cannot be (never
    decompressing more than ``size`` bytes)."""
    filtered = docdata.inflate(packed, size, what)
    stride = width * bytes_per_pixel
    if not size or not stride:
        return filtered
    high, low, _ones = _byte_masks(size)
    value, shift = int.from_bytes(filtered, "big"), 8 * stride
    while shift < 8 * size:  # undo the filter: a running sum down the rows, bytewise, by doubling
        other = value >> shift
        value = ((value & low) + (other & low)) ^ ((value ^ other) & high)
        shift *= 2
    return value.to_bytes(size, "big")


def thumbnail(data: bytes, width: int, height: int, fmt: str, size: int = THUMBNAIL_SIZE) -> Tuple[int, int, bytes]:
    """(w, h, ``rgba8`` pixels) of a nearest-neighbour thumbnail of an image, its longest side ``size`` at most."""
    scale = min(1.0, size / max(1, width, height))
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    xs = [min(width - 1, int((x + 0.5) * width / tw)) for x in range(tw)]
    rows = []
    for y in range(th):
        sy = min(height - 1, int((y + 0.5) * height / th))
        row = data[sy * width * 4 : (sy + 1) * width * 4]
        rows.append(b"".join(row[x * 4 : x * 4 + 4] for x in xs))
    small = b"".join(rows)
    return tw, th, small if fmt == protocol.RGBA8 else protocol.convert_pixels(small, fmt, protocol.RGBA8)


@dataclass
class StoredLayer:
    """One result layer as history keeps it; it reads like a result layer (``client.results`` places it)."""

    name: str
    x: int
    y: int
    width: int
    height: int
    seed: int
    format: str
    packed: bytes  # ``encode_pixels`` of the layer's pixels
    info: Dict[str, Any] = field(default_factory=dict)
    thumb: Tuple[int, int, bytes] = (0, 0, b"")  # (w, h, zlib-compressed rgba8)
    part: str = field(default="a stored history layer", compare=False, repr=False)  # how errors name it
    group: str = ""  # the layer group it arrived in (a decomposition's layers), "" for none

    @property
    def data(self) -> bytes:
        """The layer's pixels, exactly as they arrived (``DocumentDataError`` when they are damaged)."""
        return decode_pixels(self.packed, self.width, 4, self.width * self.height * 4, f"the pixels of {self.part}")

    def thumbnail_rgba(self) -> Tuple[int, int, bytes]:
        """(w, h, ``rgba8`` pixels) of the thumbnail ((0, 0, b"") when there is none); ``DocumentDataError`` when it
        is damaged (never decompressing more than its declared w x h)."""
        w, h, packed = self.thumb
        if not packed:
            return 0, 0, b""
        return w, h, docdata.inflate(packed, w * h * 4, f"the thumbnail of {self.part}")

    def check(self) -> None:
        """``DocumentDataError`` naming this layer and the fault unless its declared sizes are possible and both its
        pixels and its thumbnail decompress to exactly those sizes (checked as a stream: nothing is kept)."""
        if not (0 <= self.width and 0 <= self.height and self.width * self.height * 4 <= MAX_RAW_BYTES):
            raise docdata.DocumentDataError(
                f"{self.part} declares an impossible size {self.width}x{self.height} "
                f"(a history keeps at most {MAX_RAW_BYTES} bytes of pixels per layer)"
            )
        w, h, packed = self.thumb
        if not (0 <= w <= THUMBNAIL_SIZE and 0 <= h <= THUMBNAIL_SIZE):
            raise docdata.DocumentDataError(
                f"the thumbnail of {self.part} declares an impossible size {w}x{h} "
                f"(at most {THUMBNAIL_SIZE}x{THUMBNAIL_SIZE})"
            )
        if self.format not in (protocol.RGBA8, protocol.BGRA8):
            raise docdata.DocumentDataError(f"{self.part} has pixel format {self.format!r}, not rgba8 or bgra8")
        if packed:
            docdata.inflate(packed, w * h * 4, f"the thumbnail of {self.part}", keep=False)
        docdata.inflate(self.packed, self.width * self.height * 4, f"the pixels of {self.part}", keep=False)

    def meta(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "format": self.format,
            "info": self.info,
            "thumb": list(self.thumb[:2]),
            **({"group": self.group} if self.group else {}),
        }


@dataclass
class Entry:
    """One job's results."""

    id: str
    time: float  # seconds since the epoch
    mode: str
    model: str
    prompt: str
    settings: Dict[str, Any]  # ``Settings.to_dict()`` of the job
    params: Dict[str, Any]  # what the server reports having used
    layers: List[StoredLayer]

    @property
    def seeds(self) -> List[int]:
        return [layer.seed for layer in self.layers]

    @property
    def stored_bytes(self) -> int:
        """What this entry adds to the document (pixels, thumbnail, text)."""
        return sum(len(l.packed) + len(l.thumb[2]) for l in self.layers) + len(self._meta_json())

    def thumbnail_rgba(self, layer: int = 0) -> Tuple[int, int, bytes]:
        """(w, h, ``rgba8`` pixels) of layer ``layer``'s thumbnail ((0, 0, b"") when there is none)."""
        if not 0 <= layer < len(self.layers):
            return 0, 0, b""
        return self.layers[layer].thumbnail_rgba()

    def applied(self, layer: int = -1) -> List[StoredLayer]:
        """The layers applying layer ``layer`` again inserts (-1: every layer), in the entry's order: a layer of a group
        brings its whole group (``client.results.groups`` of them is what the editor recreates); ``IndexError``
        when there is no such layer."""
        if layer < 0:
            return list(self.layers)
        chosen = self.layers[layer]
        return [l for l in self.layers if l is chosen or (chosen.group and l.group == chosen.group)]

    def title(self) -> str:
        """A short line for a list: time, mode, prompt."""
        when = time.strftime("%H:%M", time.localtime(self.time))
        text = " ".join(self.prompt.split()) or self.mode
        return f"{when} {self.mode}: {text[:40] + '…' if len(text) > 40 else text}"

    def describe(self) -> str:
        """Every parameter of the job, one per line (a tooltip)."""
        lines = [f"{self.mode}, model {self.model or 'default'}", f"prompt: {self.prompt or '(none)'}"]
        negative = self.settings.get("negative_prompt")
        if negative:
            lines.append(f"negative: {negative}")
        lines.append("seed" + ("s" if len(self.layers) > 1 else "") + ": " + ", ".join(map(str, self.seeds)))
        lines += [
            f"{k}: {v}"
            for k, v in sorted(self.params.items())
            if k not in ("prompt", "negative_prompt", "seed") and _worth_showing(v)
        ]
        size = ", ".join(f"{l.width}x{l.height} at ({l.x}, {l.y})" for l in self.layers)
        lines.append(f"{len(self.layers)} layer{'s' if len(self.layers) > 1 else ''}: {size}")
        lines.append(f"stored: {self.stored_bytes / 1e6:.2f} MB")
        return "\n".join(lines)

    def reuse_settings(self, layer: int = 0, current: Optional[Settings] = None) -> Settings:
        """The job's settings with layer ``layer``'s seed (kept random for the built-in engine, which has none).
        Settings that are not the job's (the history limit) come from ``current``."""
        out = Settings.from_dict(self.settings)
        chosen = self.layers[layer] if 0 <= layer < len(self.layers) else None
        seed = chosen.seed if chosen is not None and chosen.info.get("engine") != "classical" else -1
        if seed is not None and seed >= 0:
            out.seed = int(seed)
        if current is not None:
            out.history_limit_mb = current.history_limit_mb
        return out

    def _meta_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "time": self.time,
                "mode": self.mode,
                "model": self.model,
                "prompt": self.prompt,
                "settings": self.settings,
                "params": self.params,
                "layers": [layer.meta() for layer in self.layers],
            },
            default=str,
        ).encode()

    def to_bytes(self) -> bytes:
        parts = {"meta": self._meta_json()}
        for i, layer in enumerate(self.layers):
            parts.update({f"layer/{i}": layer.packed, f"thumb/{i}": layer.thumb[2]})
        return docdata.pack_map(parts)

    @classmethod
    def from_bytes(cls, blob: bytes, name: str = "") -> "Entry":
        """The entry stored in ``blob`` (kept under ``entry/<name>``), every layer checked (``StoredLayer.check``):
        ``DocumentDataError`` naming the entry, the part and the fault when any part is damaged."""
        where = f"history entry {name!r}" if name else "a history entry"
        parts = docdata.unpack_map(blob)
        try:
            meta = json.loads(parts["meta"])
            label = f"{where} ({str(meta['mode'])}, {time.strftime('%Y-%m-%d %H:%M', time.localtime(meta['time']))})"
            layers = []
            for i, m in enumerate(meta["layers"]):
                w, h = m.get("thumb") or (0, 0)
                layers.append(
                    StoredLayer(
                        str(m["name"]),
                        int(m["x"]),
                        int(m["y"]),
                        int(m["width"]),
                        int(m["height"]),
                        int(m["seed"]),
                        str(m["format"]),
                        parts[f"layer/{i}"],
                        dict(m.get("info") or {}),
                        (int(w), int(h), parts.get(f"thumb/{i}", b"")),
                        f"result {i + 1} of {label}",
                        str(m.get("group") or ""),
                    )
                )
            entry = cls(
                str(meta["id"]),
                float(meta["time"]),
                str(meta["mode"]),
                str(meta["model"]),
                str(meta["prompt"]),
                dict(meta["settings"]),
                dict(meta["params"]),
                layers,
            )
        except (KeyError, TypeError, ValueError, OverflowError, OSError, RecursionError) as err:
            raise docdata.DocumentDataError(f"{where} is damaged ({type(err).__name__}: {err})") from None
        for layer in layers:
            layer.check()
        return entry


def _worth_showing(value: Any) -> bool:
    """Whether a parameter says something (not None, not empty, not a map of zeros)."""
    if isinstance(value, dict):
        return any(_worth_showing(v) and v != 0 for v in value.values())
    return value is not None and value != ""


def entry_from_result(
    settings: Settings, layers: Sequence[Any], names: Sequence[str], params: Dict[str, Any], now: Optional[float] = None
) -> Entry:
    """A history entry for a job's result layers (``protocol`` result layers, or anything with ``x, y, width,
    height, seed, format, data, info`` and optionally ``group``) named ``names``."""
    stored = []
    for layer, name in zip(layers, names):
        fmt = str(layer.format)
        if fmt not in (protocol.RGBA8, protocol.BGRA8):
            raise ValueError(f"history keeps rgba8 or bgra8 layers, not {fmt}")
        seed = layer.seed if isinstance(layer.seed, int) else -1
        data = bytes(layer.data)
        tw, th, small = thumbnail(data, int(layer.width), int(layer.height), fmt)
        stored.append(
            StoredLayer(
                name,
                int(layer.x),
                int(layer.y),
                int(layer.width),
                int(layer.height),
                seed,
                fmt,
                encode_pixels(data, int(layer.width), 4),
                dict(getattr(layer, "info", None) or {}),
                (tw, th, zlib.compress(small, LEVEL)),
                group=str(getattr(layer, "group", None) or ""),
            )
        )
    s = settings.to_dict()
    s.pop("history_limit_mb", None)
    return Entry(
        uuid.uuid4().hex[:12],
        time.time() if now is None else now,
        settings.mode,
        settings.model,
        settings.prompt,
        s,
        dict(params or {}),
        stored,
    )


class History:
    """A document's entries, oldest first, within ``limit_bytes`` and ``max_entries``."""

    def __init__(self, limit_bytes: int = DEFAULT_LIMIT_MB * 1_000_000, max_entries: int = MAX_ENTRIES) -> None:
        self.limit_bytes, self.max_entries = int(limit_bytes), int(max_entries)
        self.entries: List[Entry] = []
        self.damaged: List[str] = []  # why each entry that could not be read was left out (``from_bytes``)

    @property
    def stored_bytes(self) -> int:
        return sum(e.stored_bytes for e in self.entries)

    def get(self, entry_id: str) -> Entry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(f"no history entry {entry_id!r}")

    def add(self, entry: Entry) -> List[Entry]:
        """Keep ``entry`` (newest); returns the entries dropped to stay within the bounds (possibly ``entry`` itself
        when it alone is larger than the limit)."""
        self.entries.append(entry)
        return self.trim()

    def trim(self) -> List[Entry]:
        """Drop the oldest entries beyond the bounds; returns them."""
        dropped = []
        sizes = [e.stored_bytes for e in self.entries]
        while self.entries and (sum(sizes) > self.limit_bytes or len(self.entries) > self.max_entries):
            dropped.append(self.entries.pop(0))
            sizes.pop(0)
        return dropped

    def delete(self, entry_id: str) -> Entry:
        entry = self.get(entry_id)
        self.entries.remove(entry)
        return entry

    def set_limit(self, limit_bytes: int) -> List[Entry]:
        self.limit_bytes = int(limit_bytes)
        return self.trim()

    def to_bytes(self) -> bytes:
        """The stored form (``docdata`` map: format, then one item per entry, oldest first)."""
        items = {"format": str(FORMAT).encode()}
        items.update({f"entry/{e.id}": e.to_bytes() for e in self.entries})
        return docdata.pack_map(items)

    @classmethod
    def from_bytes(
        cls, blob: bytes, limit_bytes: int = DEFAULT_LIMIT_MB * 1_000_000, max_entries: int = MAX_ENTRIES
    ) -> "History":
        """The history stored in ``blob``; ``DocumentDataError`` when the container is damaged or newer than this
        plugin. A damaged entry is left out (``damaged`` says which and why); the others are read."""
        items = docdata.unpack_map(blob)
        version = items.pop("format", b"")
        if not version.isdigit():
            raise docdata.DocumentDataError("the stored history has no format number")
        if int(version) > FORMAT:
            raise docdata.DocumentDataError(
                f"the stored history has format {int(version)}, newer than this plugin "
                f"reads ({FORMAT}): update Paintbridge to use it"
            )
        out = cls(limit_bytes, max_entries)
        for key, value in items.items():
            try:
                if not key.startswith("entry/"):
                    raise docdata.DocumentDataError(f"the stored history holds an unknown item {key[:40]!r}")
                out.entries.append(Entry.from_bytes(value, key[len("entry/") :]))
            except docdata.DocumentDataError as err:
                out.damaged.append(str(err))
        return out


def limit_bytes(settings: Optional[Settings]) -> int:
    """The byte bound ``settings.history_limit_mb`` asks for (0 keeps no history)."""
    mb = DEFAULT_LIMIT_MB if settings is None else settings.history_limit_mb
    return max(0, int(mb)) * 1_000_000


Loader = Callable[[], Optional[bytes]]
Saver = Callable[[Optional[bytes]], None]


class DocumentHistory:
    """One document's history, read through the adapter's ``load()`` (``load_document_data(doc, KEY)``) and written
    back with ``save(bytes)`` after every change. Damaged or foreign data is never fatal: the history starts empty (or
    without its damaged entries), ``problem`` says why, and the old data is replaced only when something is saved."""

    def __init__(self, load: Loader, save: Saver, limit: int = DEFAULT_LIMIT_MB * 1_000_000) -> None:
        self._save = save
        self.problem = ""
        try:
            blob = load()
            self.history = History(limit) if blob is None else History.from_bytes(blob, limit)
        except docdata.DocumentDataError as err:
            self.history = History(limit)
            self.problem = f"The results history stored in this image cannot be read ({err}); it starts empty."
        if self.history.damaged:
            count = len(self.history.damaged)
            self.problem = (
                f"{count} result{'s' if count > 1 else ''} of the history stored in this image "
                f"{'are' if count > 1 else 'is'} damaged and left out (the others are read; the damaged "
                f"data is dropped when the history is next saved): " + "; ".join(self.history.damaged)
            )
        if self.history.trim():
            self.save()

    @property
    def entries(self) -> List[Entry]:
        return self.history.entries

    def save(self) -> None:
        self._save(self.history.to_bytes() if self.history.entries else None)

    def record(
        self, settings: Settings, layers: Sequence[Any], names: Sequence[str], params: Dict[str, Any]
    ) -> Optional[Entry]:
        """Keep a job's results; returns the entry (None when it alone exceeds the limit or its pixels are larger
        than ``MAX_RAW_BYTES``: then nothing is kept)."""
        if not self.history.limit_bytes or sum(len(layer.data) for layer in layers) > MAX_RAW_BYTES:
            return None
        entry = entry_from_result(settings, layers, names, params)
        dropped = self.history.add(entry)
        self.save()
        return None if entry in dropped else entry

    def delete(self, entry_id: str) -> None:
        self.history.delete(entry_id)
        self.save()

    def set_limit(self, limit: int) -> None:
        if self.history.set_limit(limit):
            self.save()

    def get(self, entry_id: str) -> Entry:
        return self.history.get(entry_id)
