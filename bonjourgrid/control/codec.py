"""Message codec: registered frozen dataclasses <-> bytes, strictly validated. Pure.

Wire payload (integers big-endian)::

    u16 kind | u32 json_len | json | blobs

``json`` is a UTF-8 JSON object with exactly one member per dataclass field. A ``bytes`` field
travels raw in the blob section: the JSON carries its length, and the blobs follow the JSON in
field order (a ``None`` ``bytes | None`` field has no blob). Nothing may trail the last blob.

Supported field types: ``str``, ``int`` (not bool), ``float`` (an int is accepted), ``bool``,
``bytes``, ``X | None`` of those, ``tuple[str, ...]``, ``tuple[int, ...]``, ``dict[str, str]``,
and ``dict[str, object]`` / ``list[object]`` as opaque JSON documents (tuples inside them come
back as lists). Floats must be finite. Decoding anything malformed raises :class:`MessageError`
and nothing else; encoding an invalid message raises it too, so a sender's bug shows at the
sender.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

MAX_MESSAGE = 256 * 1024 * 1024 - 64
"""Largest encoded message: a frame (``framing.MAX_FRAME``) minus room for seq and MAC."""

MAX_JSON_DEPTH = 64
"""Nesting limit for opaque JSON fields (deeper documents are refused both ways)."""

_HEADER = struct.Struct(">HI")
_MAX_KIND = 0xFFFF

_C = TypeVar("_C", bound=type)


class MessageError(ValueError):
    """The bytes are not a valid message of the registry, or a message cannot be encoded."""


class _Cursor:
    """Reads the blob section in order."""

    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise MessageError("blob lengths run past the end of the message")
        blob = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return blob


_Encode = Callable[[Any, list[bytes]], object]
_Decode = Callable[[Any, _Cursor], object]


@dataclasses.dataclass(frozen=True)
class _FieldCodec:
    type_name: str
    encode: _Encode
    decode: _Decode


@dataclasses.dataclass(frozen=True)
class _Schema:
    kind: int
    cls: type
    fields: tuple[tuple[str, _FieldCodec], ...]


def _bad(expected: str, value: object) -> MessageError:
    return MessageError(f"expected {expected}, got {type(value).__name__}")


# --- scalar codecs -----------------------------------------------------------------------


def _enc_str(v: Any, _: list[bytes]) -> object:
    if not isinstance(v, str):
        raise _bad("str", v)
    return v


def _dec_str(v: Any, _: _Cursor) -> object:
    if type(v) is not str:
        raise _bad("str", v)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError("string is not valid Unicode (lone surrogate)") from None
    return v


def _enc_int(v: Any, _: list[bytes]) -> object:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad("int", v)
    return int(v)


def _dec_int(v: Any, _: _Cursor) -> object:
    if type(v) is not int:
        raise _bad("int", v)
    return v


def _finite(v: float | int) -> float:
    try:
        f = float(v)
    except OverflowError:
        raise MessageError("number too large for a float") from None
    if not math.isfinite(f):
        raise MessageError("float must be finite")
    return f


def _enc_float(v: Any, _: list[bytes]) -> object:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise _bad("float", v)
    _finite(v)
    return v if type(v) is int else float(v)


def _dec_float(v: Any, _: _Cursor) -> object:
    if type(v) is not int and type(v) is not float:
        raise _bad("float", v)
    return _finite(v)


def _enc_bool(v: Any, _: list[bytes]) -> object:
    if not isinstance(v, bool):
        raise _bad("bool", v)
    return v


def _dec_bool(v: Any, _: _Cursor) -> object:
    if type(v) is not bool:
        raise _bad("bool", v)
    return v


def _enc_bytes(v: Any, blobs: list[bytes]) -> object:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise _bad("bytes", v)
    blob = bytes(v)
    blobs.append(blob)
    return len(blob)


def _dec_bytes(v: Any, cursor: _Cursor) -> object:
    if type(v) is not int or v < 0:
        raise MessageError("expected a blob length (int >= 0)")
    return cursor.take(v)


_SCALARS: dict[object, _FieldCodec] = {
    str: _FieldCodec("str", _enc_str, _dec_str),
    int: _FieldCodec("int", _enc_int, _dec_int),
    float: _FieldCodec("float", _enc_float, _dec_float),
    bool: _FieldCodec("bool", _enc_bool, _dec_bool),
    bytes: _FieldCodec("bytes", _enc_bytes, _dec_bytes),
}


# --- composite codecs ----------------------------------------------------------------------


def _optional(inner: _FieldCodec) -> _FieldCodec:
    def enc(v: Any, blobs: list[bytes]) -> object:
        return None if v is None else inner.encode(v, blobs)

    def dec(v: Any, cursor: _Cursor) -> object:
        return None if v is None else inner.decode(v, cursor)

    return _FieldCodec(f"{inner.type_name} | None", enc, dec)


def _tuple_of(item: _FieldCodec) -> _FieldCodec:
    name = f"tuple[{item.type_name}, ...]"

    def enc(v: Any, blobs: list[bytes]) -> object:
        if not isinstance(v, tuple):
            raise _bad(name, v)
        return [item.encode(x, blobs) for x in v]

    def dec(v: Any, cursor: _Cursor) -> object:
        if type(v) is not list:
            raise _bad(name, v)
        return tuple(item.decode(x, cursor) for x in v)

    return _FieldCodec(name, enc, dec)


def _enc_str_dict(v: Any, _: list[bytes]) -> object:
    if not isinstance(v, dict) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in v.items()
    ):
        raise _bad("dict[str, str]", v)
    return dict(v)


def _dec_str_dict(v: Any, cursor: _Cursor) -> object:
    if type(v) is not dict:
        raise _bad("dict[str, str]", v)
    for x in v.values():
        _dec_str(x, cursor)
    return v


def _check_json(v: object, depth: int = 0) -> None:
    """Raise MessageError unless ``v`` is a plain JSON value (str keys, finite floats)."""
    if depth > MAX_JSON_DEPTH:
        raise MessageError(f"JSON document nested deeper than {MAX_JSON_DEPTH}")
    if v is None or isinstance(v, (str, bool, int)):
        return
    if isinstance(v, float):
        _finite(v)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _check_json(x, depth + 1)
    elif isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise MessageError(f"JSON object key {k!r} is not a str")
            _check_json(x, depth + 1)
    else:
        raise MessageError(f"{type(v).__name__} is not JSON-serialisable")


def _opaque(container: type) -> _FieldCodec:
    name = f"{container.__name__}[...] (JSON)"

    def enc(v: Any, _: list[bytes]) -> object:
        if not isinstance(v, container):
            raise _bad(name, v)
        _check_json(v)
        return v

    def dec(v: Any, _: _Cursor) -> object:
        if type(v) is not container:
            raise _bad(name, v)
        _check_json(v)
        return v

    return _FieldCodec(name, enc, dec)


def _codec_for(tp: object) -> _FieldCodec:
    """Compile a field's type hint into its codec; TypeError if unsupported."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        if inner in _SCALARS:
            return _optional(_SCALARS[inner])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int):
        return _tuple_of(_SCALARS[args[0]])
    if origin is dict and args == (str, str):
        return _FieldCodec("dict[str, str]", _enc_str_dict, _dec_str_dict)
    if origin is dict and args == (str, object):
        return _opaque(dict)
    if origin is list and args == (object,):
        return _opaque(list)
    raise TypeError(f"unsupported message field type: {tp!r}")


# --- JSON section -------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MessageError("duplicate key in JSON object")
    return out


def _no_constants(name: str) -> object:
    raise MessageError(f"{name} is not valid JSON")


class Registry:
    """A set of message classes, each with a wire kind number; encodes and decodes them.

    A class may belong to several registries (the kind is stored here, not on the class).
    """

    def __init__(self, name: str, *, max_size: int = MAX_MESSAGE) -> None:
        self.name = name
        self.max_size = max_size
        self._by_kind: dict[int, _Schema] = {}
        self._by_type: dict[type, _Schema] = {}

    def register(self, kind: int) -> Callable[[_C], _C]:
        """Class decorator: ``@REG.register(Kind.PING)`` on a frozen dataclass."""
        kind = int(kind)
        if not 0 <= kind <= _MAX_KIND:
            raise ValueError(f"{self.name}: kind {kind} out of range 0..{_MAX_KIND}")

        def decorate(cls: _C) -> _C:
            if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
                raise TypeError(f"{cls.__name__} must be a frozen dataclass")
            if kind in self._by_kind:
                other = self._by_kind[kind].cls.__name__
                raise ValueError(f"{self.name}: kind {kind} already taken by {other}")
            if cls in self._by_type:
                raise ValueError(f"{self.name}: {cls.__name__} registered twice")
            hints = typing.get_type_hints(cls)
            fields = []
            for f in dataclasses.fields(cls):
                if not f.init:
                    raise TypeError(f"{cls.__name__}.{f.name}: init=False fields are not allowed")
                fields.append((f.name, _codec_for(hints[f.name])))
            schema = _Schema(kind, cls, tuple(fields))
            self._by_kind[kind] = schema
            self._by_type[cls] = schema
            return cls

        return decorate

    def kind_of(self, message_type: type) -> int:
        """The kind number of a registered class (KeyError if not registered)."""
        return self._by_type[message_type].kind

    def types(self) -> dict[int, type]:
        """kind -> class, for every registered message."""
        return {k: s.cls for k, s in sorted(self._by_kind.items())}

    def __contains__(self, message_type: object) -> bool:
        return message_type in self._by_type

    def encode(self, msg: object) -> bytes:
        """Serialise a registered message; MessageError if it is not valid or too large."""
        schema = self._by_type.get(type(msg))
        if schema is None:
            raise MessageError(f"{type(msg).__name__} is not a {self.name} message")
        doc: dict[str, object] = {}
        blobs: list[bytes] = []
        for name, codec in schema.fields:
            try:
                doc[name] = codec.encode(getattr(msg, name), blobs)
            except MessageError as e:
                raise MessageError(f"{type(msg).__name__}.{name}: {e}") from None
        try:
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            body = text.encode("utf-8")
        except (ValueError, TypeError, RecursionError) as e:
            raise MessageError(f"{type(msg).__name__}: cannot encode: {e}") from None
        size = _HEADER.size + len(body) + sum(len(b) for b in blobs)
        if size > self.max_size:
            raise MessageError(f"{type(msg).__name__}: {size} bytes exceeds {self.max_size}")
        return b"".join([_HEADER.pack(schema.kind, len(body)), body, *blobs])

    def decode(self, data: bytes) -> object:
        """Parse one message; MessageError for anything malformed (and nothing else)."""
        if len(data) > self.max_size:
            raise MessageError(f"message of {len(data)} bytes exceeds {self.max_size}")
        if len(data) < _HEADER.size:
            raise MessageError("message shorter than its header")
        view = memoryview(data)
        kind, json_len = _HEADER.unpack_from(view)
        schema = self._by_kind.get(kind)
        if schema is None:
            raise MessageError(f"unknown {self.name} message kind {kind}")
        end = _HEADER.size + json_len
        if end > len(data):
            raise MessageError("JSON length runs past the end of the message")
        try:
            text = bytes(view[_HEADER.size : end]).decode("utf-8")
            doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        except MessageError:
            raise
        except (ValueError, RecursionError) as e:
            raise MessageError(f"bad JSON in {schema.cls.__name__}: {e}") from None
        if type(doc) is not dict:
            raise MessageError(f"{schema.cls.__name__}: JSON section is not an object")
        names = [name for name, _ in schema.fields]
        if set(doc) != set(names):
            missing = sorted(set(names) - set(doc))
            extra = sorted(set(doc) - set(names))
            raise MessageError(f"{schema.cls.__name__}: missing {missing}, unexpected {extra}")
        cursor = _Cursor(view, end)
        values: dict[str, object] = {}
        for name, codec in schema.fields:
            try:
                values[name] = codec.decode(doc[name], cursor)
            except MessageError as e:
                raise MessageError(f"{schema.cls.__name__}.{name}: {e}") from None
        if cursor.pos != len(data):
            raise MessageError(f"{schema.cls.__name__}: {len(data) - cursor.pos} trailing bytes")
        try:
            return schema.cls(**values)
        except (TypeError, ValueError) as e:
            raise MessageError(f"{schema.cls.__name__}: rejected: {e}") from None
