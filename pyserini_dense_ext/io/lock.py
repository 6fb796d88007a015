"""One writer per output: a lock file beside each index or model dir a command writes.

Two runs into the same output would share its partial dir and temporary names (one died with a
``FileNotFoundError`` on the other's temporary file). :func:`output_lock` takes an exclusive
``flock`` on ``.<name>.lock`` beside the output for the whole run and writes the holder's pid,
host and start time into it; a second run fails at once with :class:`OutputLockedError` naming
the holder. The kernel drops a ``flock`` when its process dies, however it dies (SIGKILL
included), so a lock file left by a killed run is stale by construction: the next run takes it
and overwrites the record. The lock is re-entrant within a process (a command and the library
function it calls may both take it) and released, and its file removed, when the outermost
holder is done.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_HELD: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth), this process's locks
_GUARD = threading.Lock()


class OutputLockedError(FileExistsError):
    """Another live run is writing the same output."""


def lock_path(output: str | Path) -> Path:
    """``.<name>.lock`` beside ``output`` (beside it, not in it: the output dir appears only by rename)."""
    output = Path(output).absolute()
    return output.with_name(f".{output.name}.lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on host {info['host']} (started {info['started']}: "
                f"{info.get('command', '?')})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its lock record is unreadable)"


def _acquire(path: Path, output: Path) -> int:
    """An fd holding ``flock(LOCK_EX)`` on the file now at ``path``, or :class:`OutputLockedError`."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(f"{output} is being written by {_holder(path)}; wait for it to finish, or stop "
                                    f"it (a killed run's lock is released by the system; lock file {path})") from None
        # The previous holder unlinks the file when done: if we locked a file no longer at ``path``, retry.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def output_lock(output: str | Path) -> Iterator[Path]:
    """Hold the lock on ``output`` for the block; yields the lock file's path.

    Raises :class:`OutputLockedError` (a ``FileExistsError``, so CLIs print one line and exit 2)
    when another live process holds it.
    """
    output = Path(output).absolute()
    path = lock_path(output)
    key = str(path)
    with _GUARD:
        if key in _HELD:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth + 1)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _acquire(path, output)
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:500]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            _HELD[key] = (fd, 1)
    try:
        yield path
    finally:
        with _GUARD:
            fd, depth = _HELD[key]
            if depth > 1:
                _HELD[key] = (fd, depth - 1)
            else:
                del _HELD[key]
                path.unlink(missing_ok=True)  # while still locked: a waiter re-checks the inode and retries
                os.close(fd)
