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


def lookup(result: Any, keys: tuple[str, ...], path: Path) -> float:
    """The number at ``keys`` in a script's JSON result. A key ``k=v,k2=v2`` picks, from a list of objects,
    the one whose fields have those values (``batch_size=32,path=onnx fp32``), as the scripts write rows."""
    value = result
    for key in keys:
        if isinstance(value, list) and "=" in key:
            want = dict(part.split("=", 1) for part in key.split(","))
            found = [v for v in value if isinstance(v, dict) and all(str(v.get(k)) == w for k, w in want.items())]
            if len(found) != 1:
                raise ValueError(f"{path}: {len(found)} entries match {key!r} in {'.'.join(keys)!r}; "
                                 "was the script changed?")
            value = found[0]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise ValueError(f"{path}: no {'.'.join(keys)!r} (missing {key!r}); was the script changed?")
    return float(value)


def ratio(bench: Bench, root: Path = ROOT) -> float | None:
    """The figure in ``bench``'s JSON result (``value`` keys, divided by the ``over`` keys' number when given),
    or None when there is no result yet."""
    path = root / bench.json
    if not path.is_file():
        return None
    result: Any = json.loads(path.read_text(encoding="utf-8"))
    value = lookup(result, bench.value, path)
    return value / lookup(result, bench.over, path) if bench.over else value


def run_bench(bench: Bench, root: Path = ROOT) -> None:
    """Run the script; its output passes through, its JSON result is left for :func:`ratio`."""
    command = [sys.executable, str(root / bench.script), *shlex.split(bench.args)]
    print(f"$ {shlex.join(command)}", flush=True)
    done = subprocess.run(command, cwd=root)
    if done.returncode != 0:
        raise RuntimeError(f"{bench.script} exited {done.returncode}")
