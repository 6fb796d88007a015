"""One error type for bad input, so every CLI can report file, line and field the same way."""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input, located by file, 1-based line and field where known."""

    def __init__(self, path: object, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.reason = str(path), line, field, message
        where = self.path + (f", line {line}" if line is not None else "")
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}")
