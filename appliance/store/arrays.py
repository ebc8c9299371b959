"""One-dimensional PostgreSQL arrays, encoded in one pass.

psycopg adapts a Python list element by element, looking up a dumper for each
(about 2 µs an element): a checkpoint's columns of text, bytea and int, sent as
arrays to ``unnest``, cost a statement more to encode than to run. A list
wrapped in one of these types is sent in PostgreSQL's binary array format,
built at once.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEADER = struct.Struct("!iiIii")  # dimensions, has NULLs, element type; the one dimension's size and lower bound
_LENGTH = struct.Struct("!i")
_INT4 = struct.Struct("!ii")  # an int4 element: its length (4) and value
_NULL = _LENGTH.pack(-1)
_EMPTY = struct.Struct("!iiI")  # no dimensions: an empty array of its element type


class TextArray(list):
    """A ``text[]`` parameter (None for NULL)."""


class ByteaArray(list):
    """A ``bytea[]`` parameter (None for NULL)."""


class Int4Array(list):
    """An ``int4[]`` parameter."""


class UuidArray(list):
    """A ``uuid[]`` parameter of ``uuid.UUID`` values (None for NULL)."""


def as_columns(rows: Sequence[Sequence[Any]], **at: tuple[int, type[list]]) -> dict[str, list[Any]]:
    """Rows as the arrays ``unnest`` takes: each name, the column at its index, as an array of its type."""
    return {name: array(row[i] for row in rows) for name, (i, array) in at.items()}


def _binary_array(element_oid: int, items: list[bytes | None]) -> bytes:
    if not items:
        return _EMPTY.pack(0, 0, element_oid)
    parts = [_HEADER.pack(1, None in items, element_oid, len(items), 1)]
    for item in items:
        parts.append(_NULL if item is None else _LENGTH.pack(len(item)) + item)
    return b"".join(parts)


class _TextArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1009  # text[]

    def dump(self, obj: Any) -> bytes:
        return _binary_array(25, [None if item is None else item.encode() for item in obj])


class _ByteaArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1001  # bytea[]

    def dump(self, obj: Any) -> bytes:
        return _binary_array(17, [None if item is None else bytes(item) for item in obj])


class _Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1007  # int4[]

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return _EMPTY.pack(0, 0, 23)
        return _HEADER.pack(1, 0, 23, len(obj), 1) + b"".join(_INT4.pack(4, item) for item in obj)


class _UuidArrayDumper(Dumper):
    format = Format.BINARY
    oid = 2951  # uuid[]

    def dump(self, obj: Any) -> bytes:
        return _binary_array(2950, [None if item is None else item.bytes for item in obj])


# Registered for every connection made from now on (the pool's are made after this module is imported).
psycopg.adapters.register_dumper(TextArray, _TextArrayDumper)
psycopg.adapters.register_dumper(ByteaArray, _ByteaArrayDumper)
psycopg.adapters.register_dumper(Int4Array, _Int4ArrayDumper)
psycopg.adapters.register_dumper(UuidArray, _UuidArrayDumper)
