"""Line-by-line reading shared by every reader: existence, UTF-8 and line numbers checked in one place."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .errors import InputError


def iter_lines(path: str | Path, what: str = "file") -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without its newline); bad bytes name the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} does not exist")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                # utf-8-sig on line 1: a byte-order mark (Windows editors) is dropped, not glued to the first id
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise InputError(path, f"is not valid UTF-8 (byte offset {e.start} in the line)", lineno) from None
