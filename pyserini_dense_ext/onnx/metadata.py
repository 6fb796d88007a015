"""Read an ONNX file's ``metadata_props`` without loading its graph, to tell our exports from other files.

An ONNX file is one protobuf ``ModelProto``. Its top-level fields are walked by their wire
format (the graph, field 7, is skipped with one seek), and the ``metadata_props`` entries (field
14, ``StringStringEntryProto``: key = 1, value = 2) are decoded. A file that is not such a
message (a model dir, random bytes, a truncated file) gives None. So whether a path is one of our
exports is decided by what the file says about itself, in microseconds, without onnx or
onnxruntime.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

MODEL_METADATA_FIELD = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _NotProtobuf(Exception):
    pass


def _varint(read: BinaryIO) -> int | None:
    """A base-128 varint, or None at a clean end of input."""
    value = shift = 0
    while True:
        byte = read.read(1)
        if not byte:
            if shift:
                raise _NotProtobuf("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _NotProtobuf("varint longer than 10 bytes")


def _fields(stream: BinaryIO, size: int, wanted: int):
    """Yield the bytes of every length-delimited field ``wanted`` of a message of ``size`` bytes; skip the rest."""
    while stream.tell() < size:
        tag = _varint(stream)
        if tag is None:
            return
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _NotProtobuf("field number 0")
        if wire == _VARINT:
            if _varint(stream) is None:
                raise _NotProtobuf("truncated varint")
            continue
        width = {_FIXED64: 8, _FIXED32: 4}.get(wire)
        if width is None:
            if wire != _LENGTH:
                raise _NotProtobuf(f"wire type {wire}")
            width = _varint(stream)
            if width is None:
                raise _NotProtobuf("truncated length")
        if stream.tell() + width > size:
            raise _NotProtobuf("field runs past the end")
        if number == wanted and wire == _LENGTH:
            yield stream.read(width)
        else:
            stream.seek(width, 1)


def read_metadata_props(path: str | Path) -> dict[str, str] | None:
    """``{key: value}`` of the model's ``metadata_props``, or None when ``path`` is no ONNX model file."""
    import io

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            size = f.seek(0, io.SEEK_END)
            f.seek(0)
            props: dict[str, str] = {}
            for entry in list(_fields(f, size, MODEL_METADATA_FIELD)):
                buffer = io.BytesIO(entry)
                key = b"".join(_fields(buffer, len(entry), 1)).decode("utf-8")
                buffer.seek(0)
                props[key] = b"".join(_fields(buffer, len(entry), 2)).decode("utf-8")
            return props
    except (_NotProtobuf, UnicodeDecodeError, OSError):
        return None
