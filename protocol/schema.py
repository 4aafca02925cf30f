"""The machinery behind the typed messages: one declaration per field drives parsing, ``to_wire`` and the doc tables.

A message class is a frozen dataclass whose fields are declared with ``wire(...)``: the annotation gives the wire type,
``wire`` the default and the rules (range, choices, length, pattern). The same rules hold whichever way a model comes
to be: ``WireModel.from_wire`` checks a decoded map against them and raises a ``bad_request`` ProtocolError naming the
field by its dotted path (``params.steps``, ``controls[1].image.data``); building one in code (``Control(type=...,
...)``) checks the values given the same way and raises the same error naming the field (limits that only a server
announces, such as ``max_batch``, are checked when parsed). ``to_wire`` gives the msgpack-ready map back.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import re
import typing
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple

from .errors import BAD_REQUEST, ProtocolError, bad_field
from .images import PIXEL_FORMATS, ImagePayload, parse_payload

REQUIRED: Any = dataclasses.MISSING

# Set while ``parse_map`` builds a model from values it has already converted and checked, so building checks once.
_PARSED: contextvars.ContextVar[bool] = contextvars.ContextVar("paintbridge_parsed", default=False)


@dataclasses.dataclass(frozen=True)
class Rules:
    """What a field's wire value must satisfy besides its type."""

    choices: Optional[tuple] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    max_length: Optional[int] = None  # strings
    max_items: Optional[int] = None  # lists
    pattern: Optional[str] = None  # strings: a regular expression the whole value must match
    formats: tuple = PIXEL_FORMATS  # image payloads
    limit: Optional[str] = None  # an attribute of Limits that is the maximum (e.g. "max_batch")
    doc: str = ""


def sub_path(path: str, name: str) -> str:
    """The dotted path of field ``name`` inside the model at ``path`` (``""``: a model built on its own)."""
    return f"{path}.{name}" if path else name


def wire(default: Any = REQUIRED, *, factory: Optional[Callable[[], Any]] = None, **rules: Any) -> Any:
    """Declare a message field: its default (none = required, ``factory`` for a fresh value) and its ``Rules``."""
    meta = {"wire": Rules(**rules)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field of a model with its type resolved."""

    name: str
    tp: Any
    rules: Rules
    required: bool
    default: Any
    factory: Any

    def default_value(self) -> Any:
        return self.factory() if self.factory is not dataclasses.MISSING else self.default


class WireModel:
    """Base of every typed message and nested map. Subclasses are frozen dataclasses declared with ``wire``."""

    _specs: ClassVar[Optional[Tuple[FieldSpec, ...]]] = None

    @classmethod
    def specs(cls) -> Tuple[FieldSpec, ...]:
        """The fields of this model with their types and rules (computed once)."""
        if cls.__dict__.get("_specs") is None:
            hints = typing.get_type_hints(cls)
            out = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                rules = f.metadata.get("wire", Rules())
                required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                out.append(FieldSpec(f.name, hints[f.name], rules, required, f.default, f.default_factory))
            cls._specs = tuple(out)
        return cls.__dict__["_specs"]

    @classmethod
    def parse_map(cls, value: Any, path: str, limits: Any) -> Any:
        """Check a wire map and build the model; unknown keys are ignored, missing optional ones get defaults."""
        if not isinstance(value, Mapping):
            raise bad_field(path or "message", f"must be a map, got {type(value).__name__}")
        kwargs: Dict[str, Any] = {}
        for spec in cls.specs():
            sub = sub_path(path, spec.name)
            raw = value.get(spec.name)
            if raw is None:
                if spec.required:
                    raise bad_field(sub, "is missing")
                kwargs[spec.name] = spec.default_value()
            else:
                kwargs[spec.name] = convert(spec.tp, raw, sub, spec.rules, limits)
        token = _PARSED.set(True)
        try:
            obj = cls(**kwargs)
        finally:
            _PARSED.reset(token)
        obj.check(path, limits)
        return obj

    def __post_init__(self) -> None:
        """A model built in code is checked as a parsed one is: each value against its type and rules (ints taken
        as floats, lists as tuples, maps as the nested model), then the rules across fields."""
        if _PARSED.get():
            return
        limits = UNANNOUNCED
        for spec in self.specs():
            value = getattr(self, spec.name)
            if value is None:
                if _optional_inner(spec.tp) is spec.tp and spec.tp is not Any:
                    raise bad_field(spec.name, "is missing" if spec.required else "must not be none")
                continue
            typed = convert(spec.tp, value, spec.name, spec.rules, limits)
            if typed is not value:
                object.__setattr__(self, spec.name, typed)
        self.check("", limits)

    def check(self, path: str, limits: Any) -> None:
        """Rules across fields (a subclass overrides it); raises ProtocolError naming the field."""

    def to_wire(self) -> dict:
        """The msgpack-ready map (fields that are None are left out)."""
        out: dict = {}
        kind = getattr(self, "type", None)
        if isinstance(kind, str):
            out["type"] = kind
        for spec in self.specs():
            value = getattr(self, spec.name)
            if value is not None:
                out[spec.name] = to_wire_value(value)
        return out


class _Unannounced:
    """The limits a model built in code is checked against: none beyond the protocol's own bounds (a payload's
    ``MAX_SIDE``); the limits a server announces apply when it parses."""

    def __getattr__(self, name: str) -> int:
        return 2**62


UNANNOUNCED: Any = _Unannounced()


def to_wire_value(value: Any) -> Any:
    if isinstance(value, (WireModel, ImagePayload)):
        return value.to_wire()
    if isinstance(value, (tuple, list)):
        return [to_wire_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_wire_value(v) for k, v in value.items()}
    return value


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "a map", bytes: "binary"}


def _optional_inner(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def convert(tp: Any, value: Any, path: str, rules: Rules, limits: Any) -> Any:
    """Check one wire value against its declared type and rules; returns the typed value."""
    tp = _optional_inner(tp)
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise bad_field(path, f"must be a list, got {type(value).__name__}")
        if rules.max_items is not None and len(value) > rules.max_items:
            raise bad_field(path, f"has {len(value)} entries, over the limit of {rules.max_items}")
        item_tp = typing.get_args(tp)[0]
        return tuple(
            convert(item_tp, v, f"{path}[{i}]", Rules(formats=rules.formats), limits) for i, v in enumerate(value)
        )
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise bad_field(path, f"must be a map, got {type(value).__name__}")
        return value if type(value) is dict else dict(value)
    if tp is ImagePayload:
        if isinstance(value, ImagePayload):  # built in code: the same checks, on the payload's own fields
            checked = parse_payload(value.to_wire(), path, limits.max_pixels, rules.formats)
            return value if checked.data is value.data else checked
        return parse_payload(value, path, limits.max_pixels, rules.formats)
    if isinstance(tp, type) and issubclass(tp, WireModel):
        return value if isinstance(value, tp) else tp.parse_map(value, path, limits)
    return _scalar(tp, value, path, rules, limits)


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _scalar(tp: Any, value: Any, path: str, rules: Rules, limits: Any) -> Any:
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_field(path, f"must be a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise bad_field(path, f"must be a finite number, got {value}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_field(path, f"must be an integer, got {type(value).__name__}")
    elif tp is bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):  # any bytes-like: payload bytes are not copied
            raise bad_field(path, f"must be binary, got {type(value).__name__}")
    elif not isinstance(value, tp):
        raise bad_field(path, f"must be {_NAMES.get(tp, tp.__name__)}, got {type(value).__name__}")
    if rules.choices is not None and value not in rules.choices:
        raise bad_field(path, f"must be one of {', '.join(map(str, rules.choices))}, got {value!r}")
    maximum = getattr(limits, rules.limit) if rules.limit else rules.maximum
    if rules.minimum is not None and value < rules.minimum:
        raise bad_field(path, f"must be at least {_num(rules.minimum)}, got {value!r}")
    if maximum is not None and value > maximum:
        raise bad_field(path, f"must be at most {_num(maximum)}, got {value!r}")
    if rules.max_length is not None and len(value) > rules.max_length:
        raise bad_field(path, f"is {len(value)} long, over the limit of {rules.max_length}")
    if rules.pattern is not None and not re.fullmatch(rules.pattern, value):
        raise bad_field(path, f"must match {rules.pattern}, got {value!r}")
    return value


# --- documentation -----------------------------------------------------------------------------------------------


def _type_doc(tp: Any) -> str:
    tp = _optional_inner(tp)
    origin = typing.get_origin(tp)
    if origin in (tuple, Tuple):
        return f"list of {_type_doc(typing.get_args(tp)[0])}"
    if tp is dict or origin is dict:
        return "map"
    if tp is Any:
        return "any"
    if tp is ImagePayload:
        return "payload"
    if isinstance(tp, type) and issubclass(tp, WireModel):
        return f"*{tp.__name__.lower()}*"
    return tp.__name__


def _default_doc(spec: FieldSpec) -> str:
    if spec.required:
        return "required"
    value = spec.default_value()
    if value is None:
        return "none"
    if isinstance(value, WireModel):
        return "defaults"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "`[]`"
    if isinstance(value, dict):
        return "`{}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def _rules_doc(spec: FieldSpec) -> str:
    r = spec.rules
    parts = []
    if r.minimum is not None or r.maximum is not None or r.limit:
        hi = f"`limits.{r.limit}`" if r.limit else (_num(r.maximum) if r.maximum is not None else "")
        lo = _num(r.minimum) if r.minimum is not None else ""
        parts.append(f"{lo}–{hi}" if lo and hi else (f"≥ {lo}" if lo else f"≤ {hi}"))
    if r.max_length is not None:
        parts.append(f"≤ {r.max_length} chars")
    if r.max_items is not None:
        parts.append(f"≤ {r.max_items} entries")
    if r.pattern is not None:
        parts.append(f"`{r.pattern}`")
    if _optional_inner(spec.tp) is ImagePayload and r.formats != PIXEL_FORMATS:
        parts.append("/".join(r.formats))
    if r.choices is not None and len(r.choices) <= 12:
        parts.append(", ".join(f"`{c}`" if c != "" else '`""`' for c in r.choices))
    if r.doc:
        parts.append(r.doc)
    return "; ".join(parts)


def markdown_table(model: type) -> str:
    """The doc table of a model's fields (``protocol/README.md`` carries these verbatim; a test checks)."""
    rows = ["| field | type | default | rules / meaning |", "|---|---|---|---|"]
    for spec in model.specs():
        rows.append(f"| {spec.name} | {_type_doc(spec.tp)} | {_default_doc(spec)} | {_rules_doc(spec)} |")
    return "\n".join(rows)


def type_error(allowed: tuple, value: Any) -> ProtocolError:
    """The error for a message whose ``type`` is missing or not one of ``allowed``."""
    if not isinstance(value, Mapping):
        return ProtocolError(BAD_REQUEST, f"a message must be a map with a 'type', got {type(value).__name__}")
    if "type" not in value:
        return bad_field("type", "is missing")
    if not isinstance(value["type"], str):
        return bad_field("type", "must be a string")
    return ProtocolError(
        BAD_REQUEST, f"unknown message type {value['type']!r}; expected one of {', '.join(allowed)}", field="type"
    )
