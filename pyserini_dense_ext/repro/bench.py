"""The speed matrix (``repro/bench.yaml``): run each ``bench/`` script, read the ratio from its JSON result.

The scripts time ours and Pyserini's own path in one run (ratios only mean something within a run
on these shared machines), so the matrix compares ratios, never absolute times. A script runs as
its own process (``python bench/NAME.py``) because each sets its own thread counts.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from .matrix import ROOT, Bench


def ratio(bench: Bench, root: Path = ROOT) -> float | None:
    """The ratio in ``bench``'s JSON result (``value`` keys, in order), or None when there is no result yet."""
    path = root / bench.json
    if not path.is_file():
        return None
    value: Any = json.loads(path.read_text(encoding="utf-8"))
    for key in bench.value:
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{path}: no {'.'.join(bench.value)!r} (missing {key!r}); was the script changed?")
        value = value[key]
    return float(value)


def run_bench(bench: Bench, root: Path = ROOT) -> None:
    """Run the script; its output passes through, its JSON result is left for :func:`ratio`."""
    command = [sys.executable, str(root / bench.script), *shlex.split(bench.args)]
    print(f"$ {shlex.join(command)}", flush=True)
    done = subprocess.run(command, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(f"{bench.script} exited {done.returncode}")
