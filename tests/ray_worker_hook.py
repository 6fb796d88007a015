"""Runs in every Ray worker of tests/test_reliability.py (``worker_process_setup_hook``): logs each chunk a
worker encodes, and kills the worker in the middle of a chunk once when the test asks for it.

The test's control dir (``DENSE_EXT_RAY_TEST_DIR``) holds ``encoded.log`` (one line per chunk attempt: pid,
number of texts, first docid-free text prefix) and, while the test wants a death, ``kill-next``: the first
worker to claim it (by rename, so only one does) SIGKILLs itself with the chunk half done.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


def setup() -> None:
    from pyserini_dense_ext.encoders.base import DenseModel

    control = Path(os.environ["DENSE_EXT_RAY_TEST_DIR"])
    real = DenseModel.encode

    def logged(self, texts, side, *args, **kwargs):
        with open(control / "encoded.log", "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\t{len(texts)}\t{texts[0][:30]}\n")
        try:
            os.rename(control / "kill-next", control / "killed")
        except FileNotFoundError:
            return real(self, texts, side, *args, **kwargs)
        real(self, texts[: len(texts) // 2], side, *args, **kwargs)  # half the chunk, then the worker dies
        os.kill(os.getpid(), signal.SIGKILL)

    DenseModel.encode = logged
