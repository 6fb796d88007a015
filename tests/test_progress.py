"""Progress output: tqdm bars on a terminal, a few plain lines in a log."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_dense_ext import progress
from pyserini_dense_ext.progress import progress_bar, progress_iter

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def clock(monkeypatch):
    """A fake monotonic clock the test advances by hand."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_a_terminal_gets_a_tqdm_bar():
    stream = Terminal()
    with progress_bar(50, "encoding", "doc", stream=stream) as bar:
        for _ in range(50):
            bar.update(1)
    out = stream.getvalue()
    from tqdm import tqdm

    assert isinstance(bar, tqdm) and "\r" in out and "encoding" in out and "50/50" in out


def test_a_log_gets_one_line_per_interval_and_a_final_one(clock):
    stream = io.StringIO()
    with progress_bar(1000, "encoding corpus", "doc", stream=stream) as bar:
        for _ in range(1000):
            clock[0] += 0.0625  # 62.5 s in all (a step exact in binary)
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == int(62.5 // progress.LOG_INTERVAL) + 1  # one per interval, plus the final line
    assert lines[-1] == "encoding corpus: 1000/1000 doc (100%), 62 s, 16.0 doc/s"
    assert lines[0] == "encoding corpus: 160/1000 doc (16%), 10 s, 16.0 doc/s"


def test_a_log_hears_nothing_from_short_transient_or_disabled_bars(clock):
    stream = io.StringIO()
    with progress_bar(10, "batches", "text", leave=False, stream=stream) as bar:
        bar.update(10)
    with progress_bar(10, "off", enabled=False, stream=stream) as bar:
        bar.update(10)
    assert list(progress_iter(range(4), "items", enabled=False, stream=stream)) == [0, 1, 2, 3]
    assert stream.getvalue() == ""
    assert list(progress_iter(range(4), "items", stream=stream)) == [0, 1, 2, 3]
    assert stream.getvalue() == "items: 4/4 it (100%), 0 s\n"


def test_the_last_line_is_not_repeated(clock):
    stream = io.StringIO()
    with progress_bar(3, "chunks", "chunk", stream=stream) as bar:
        bar.update(2)
        clock[0] += progress.LOG_INTERVAL
        bar.update(1)  # the interval's line already says 3/3
    assert stream.getvalue().splitlines() == [f"chunks: 3/3 chunk (100%), {progress.LOG_INTERVAL:.0f} s, 0.3 chunk/s"]


def test_encoding_into_a_log_writes_a_few_lines_not_one_per_refresh(tiny_family_dirs, tmp_path):
    """A corpus in 24 chunks, each encoded in batches: a tqdm bar per chunk would fill the log."""
    from conftest import WORDS, write_jsonl

    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + i % 40)) for i in range(240)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "pyserini_dense_ext.encode", "input", "--corpus", str(corpus),
                             "encoder", "--encoder", str(tiny_family_dirs["repbert"]), "--batch-size", "4",
                             "output", "--index", str(tmp_path / "idx"), "--chunk-size", "10"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    progress_lines = [line for line in result.stderr.splitlines() if "encoding" in line]
    assert progress_lines[-1].startswith("encoding corpus: 240/240 doc (100%)")
    assert len(progress_lines) <= 3 and "\r" not in result.stderr
