"""The one progress display for every long step: a tqdm bar on a terminal, a plain line now and then in a log.

Redirected to a file (a CI log, ``nohup``, the quickstart piped to ``tee``), a tqdm bar writes a
line per refresh, and nested bars (corpus chunks, each with its batches) multiply that into
hundreds of lines. Here a bar whose stream is not a terminal (nor a notebook) prints at most one
line every :data:`LOG_INTERVAL` seconds while it runs, plus one when it finishes (bars that
vanish when done, ``leave=False``, print no final line).
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator, TypeVar

LOG_INTERVAL = 10.0  # seconds between two lines of one bar in a log
T = TypeVar("T")


def _interactive(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


class LogProgress:
    """tqdm's ``update``/``close``/context-manager surface, writing plain, rate-limited lines."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, leave: bool, stream: IO[str]):
        self.total, self.desc, self.unit, self.leave, self.stream = total, desc, unit, leave, stream
        self.n = self.shown = initial
        self.start = self.last = time.monotonic()

    def _print(self, now: float) -> None:
        self.last, self.shown = now, self.n
        print(self._line(now), file=self.stream, flush=True)

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        return f"{self.desc}: {done} {self.unit}{percent}, {elapsed:.0f} s{rate}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LOG_INTERVAL:
            self._print(now)

    def close(self) -> None:
        """The final line, unless the last line already said it (or the bar vanishes when done)."""
        if self.leave and self.n != self.shown:
            self._print(time.monotonic())
        self.leave = False  # close() twice prints once

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Off:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Off":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True, initial: int = 0,
                 leave: bool = True, stream: IO[str] | None = None) -> Any:
    """A context manager with ``update(n)``: a tqdm bar on a terminal, :class:`LogProgress` elsewhere."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return _Off()
    if _interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream)
    return LogProgress(total, desc, unit, initial, leave, stream)


def progress_iter(items: Iterable[T], desc: str = "", unit: str = "it", enabled: bool = True,
                  total: int | None = None, stream: IO[str] | None = None) -> Iterator[T]:
    """``items``, advancing a :func:`progress_bar` by one per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit, enabled, stream=stream) as bar:
        for item in items:
            yield item
            bar.update(1)
