"""Resumable training state, written so that a kill at any instant leaves a usable checkpoint.

The work dir (``.<output>.partial`` beside the output) holds ``fingerprint.json`` (the run's
arguments and inputs), ``ckpt-<step>/`` dirs and ``best-<step>/`` model dirs. Each is written into a
temporary dir and renamed into place (:func:`~pyserini_dense_ext.io.atomic.atomic_dir`), so a dir
with a final name is always whole. Older ones are deleted only after a newer checkpoint that no
longer needs them exists; a resume takes the newest checkpoint and drops whatever came after it.

A checkpoint holds the trained module (safetensors), the optimiser, scheduler and loss-scaler
states and the torch RNG states (``torch.save``, read back with ``weights_only=True``), and the loop
state with the Python and numpy RNG states (JSON). The data order needs no state: batches are a
pure function of (seed, epoch), and the checkpoint records the position within the epoch.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from ..io.atomic import atomic_dir, atomic_write

FINGERPRINT = "fingerprint.json"
MODULE_FILE = "module.safetensors"
OPTIM_FILE = "optimizer.pt"
STATE_FILE = "state.json"
_NAME = re.compile(r"^(ckpt|best)-(\d{7})$")


@dataclass
class LoopState:
    """Where the loop is, and what it has seen (all JSON)."""

    step: int = 0  # optimiser steps done
    epoch: int = 0
    step_in_epoch: int = 0  # optimiser steps done within ``epoch``
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    evals_since_best: int = 0
    stopped_early: bool = False
    seconds: float = 0.0  # training wall time, summed over resumes
    resumes: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # one row per step (and per evaluation)


def step_dir(work: Path, kind: str, step: int) -> Path:
    return work / f"{kind}-{step:07d}"


def listed(work: Path, kind: str) -> dict[int, Path]:
    """Complete ``kind`` dirs by step (temporary dirs have other names and are never listed)."""
    out = {}
    for path in work.iterdir() if work.is_dir() else ():
        match = _NAME.match(path.name)
        if match and match.group(1) == kind and path.is_dir():
            out[int(match.group(2))] = path
    return out


def _rng_to_json() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached]}


def _rng_from_json(saved: dict[str, Any]) -> None:
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def write_checkpoint(work: Path, state: LoopState, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, scaler: torch.amp.GradScaler) -> Path:
    """Write ``ckpt-<step>`` whole, then delete what no checkpoint needs any more."""
    with atomic_dir(step_dir(work, "ckpt", state.step)) as tmp:
        save_model(module, str(tmp / MODULE_FILE))
        tensors = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        torch.save(tensors, tmp / OPTIM_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({"loop": asdict(state), "rng": _rng_to_json()}), encoding="utf-8")
    prune(work, keep_ckpt=state.step, keep_best=state.best_step)
    return step_dir(work, "ckpt", state.step)


def prune(work: Path, keep_ckpt: int | None, keep_best: int | None) -> None:
    """Delete every checkpoint and best dir but the named ones, and leftover temporary dirs."""
    for kind, keep in (("ckpt", keep_ckpt), ("best", keep_best)):
        for step, path in listed(work, kind).items():
            if step != keep:
                shutil.rmtree(path, ignore_errors=True)
    for path in work.glob(".*.tmp"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def latest_checkpoint(work: Path) -> Path | None:
    found = listed(work, "ckpt")
    return found[max(found)] if found else None


def read_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    scaler: torch.amp.GradScaler) -> LoopState:
    """Restore everything :func:`write_checkpoint` saved; returns the loop state."""
    load_model(module, str(path / MODULE_FILE), strict=True)
    tensors = torch.load(path / OPTIM_FILE, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(tensors["scheduler"])
    scaler.load_state_dict(tensors["scaler"])
    torch.set_rng_state(tensors["torch_rng"])
    if tensors["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda_rng"])
    saved = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    _rng_from_json(saved["rng"])
    return LoopState(**saved["loop"])


def write_fingerprint(work: Path, fingerprint: dict[str, Any]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    with atomic_write(work / FINGERPRINT) as f:
        json.dump(fingerprint, f, indent=1, sort_keys=True)


def read_fingerprint(work: Path) -> dict[str, Any] | None:
    """The fingerprint of the partial run in ``work``, or None when a kill came before it was written."""
    try:
        return json.loads((work / FINGERPRINT).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
