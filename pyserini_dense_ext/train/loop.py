"""The training loop every recipe shares (see :mod:`.recipe` for what a recipe supplies).

AdamW (no weight decay on biases and norm weights) with linear warm-up and linear decay, gradient
accumulation, gradient clipping, bf16/fp16 autocast on CUDA (fp16 with loss scaling), a seed for
everything, evaluation on the dev split every N steps with our eval module, the best step kept,
early stopping, a CSV + PNG log and checkpoints from which a killed run resumes to the very same
final weights (on CPU, with the same seed). The output dir appears only at the end, by rename.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from ..progress import progress_bar

from ..encoders import resolve_device as checked_device
from ..eval import parse_metrics
from ..io.atomic import atomic_dir
from .args import ARGS_FILE, UNTRACKED, TrainArgs, args_dict, write_args
from .checkpoint import (MODULE_FILE, LoopState, latest_checkpoint, listed, prune, read_checkpoint, read_fingerprint,
                         step_dir, write_checkpoint, write_fingerprint)
from .evaluation import dev_metrics
from .log import check_plot_available, plot, write_csv
from .recipe import Recipe

PROVENANCE_FILE = "training.json"
LOG_CSV = "train_log.csv"
LOG_PNG = "train_log.png"


@dataclass
class TrainResult:
    output: Path
    steps: int
    best_step: int | None
    best_metrics: dict[str, float]
    start_metrics: dict[str, float]
    stopped_early: bool
    seconds: float
    recipe: Recipe  # holds the model as saved (the kept step's weights)


def partial_dir(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return checked_device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None (fp32) on CPU; on CUDA bf16 where supported under ``auto``, else what was asked."""
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise ValueError(f"--precision {precision} autocasts on CUDA only; on {device} training runs in fp32 "
                             "(--precision auto or fp32)")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases and LayerNorm weights (1-D) are not decayed (BERT's recipe)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_epoch(recipe: Recipe, epoch: int, accumulation: int) -> list[list[Any]]:
    """One epoch's batches grouped into optimiser steps (the last group may be shorter)."""
    batches = list(recipe.batches(epoch))
    return [batches[i:i + accumulation] for i in range(0, len(batches), accumulation)]


def total_steps(recipe: Recipe, args: TrainArgs) -> int:
    if args.max_steps:
        return args.max_steps
    total = sum(len(steps_per_epoch(recipe, e, args.gradient_accumulation)) for e in range(args.epochs))
    if total == 0:
        raise ValueError(f"recipe {recipe.name!r} made no training batches from these inputs")
    return total


class Loop:
    """One training run of one recipe; :meth:`run` trains (or resumes) and writes the output dir."""

    def __init__(self, recipe: Recipe, args: TrainArgs, options: Any):
        self.recipe, self.args, self.options = recipe, args, options
        self.output = Path(args.output)
        self.work = partial_dir(self.output)
        self.metrics = [m.name for m in parse_metrics(args.eval_metrics)]  # canonical: the eval module's keys

    # ----- set-up --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that can fail on bad input, before anything is written."""
        if self.output.exists() and not self.args.overwrite:
            raise FileExistsError(f"{self.output} already exists; pass --overwrite to replace it")
        if self.args.plot:
            check_plot_available()
        self.dtype = autocast_dtype(self.args.precision, self.recipe.device)
        seed_everything(self.args.seed)  # before the recipe builds anything new (heads, projections)
        self.recipe.prepare()
        self.module = self.recipe.module.to(self.recipe.device)
        self.total = total_steps(self.recipe, self.args)
        warmup = self.args.warmup_steps if self.args.warmup_steps is not None else \
            math.floor(self.args.warmup_ratio * self.total)
        self.optimizer = torch.optim.AdamW(param_groups(self.module, self.args.weight_decay), lr=self.args.learning_rate,
                                           eps=self.args.adam_epsilon)
        self.scheduler = linear_schedule(self.optimizer, warmup, self.total)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.provenance = self.recipe.provenance()
        tracked = {k: v for k, v in args_dict(self.recipe.name, self.args, self.options).items() if k not in UNTRACKED}
        self.fingerprint = json.loads(json.dumps({"args": tracked, "inputs": self.provenance}))

    def resume_or_start(self) -> LoopState:
        """The newest checkpoint of this same run, or a fresh state (clearing leftovers of a killed start)."""
        found = read_fingerprint(self.work)
        if found is not None and found != self.fingerprint:
            raise ValueError(f"{self.work} holds a partial training run with other arguments or inputs; re-run with "
                             "the same arguments to resume it, or delete it to start over")
        checkpoint = latest_checkpoint(self.work) if found is not None else None
        if checkpoint is None:
            shutil.rmtree(self.work, ignore_errors=True)
            write_fingerprint(self.work, self.fingerprint)
            return LoopState()
        state = read_checkpoint(checkpoint, self.module, self.optimizer, self.scheduler, self.scaler)
        prune(self.work, keep_ckpt=state.step, keep_best=state.best_step)  # drop what the killed run made later
        state.resumes += 1
        print(f"resuming from {checkpoint.name} (step {state.step} of {self.total})", file=sys.stderr)
        return state

    # ----- evaluation -----------------------------------------------------------------------
    def evaluate(self, state: LoopState) -> dict[str, float]:
        """Dev metrics now; keeps the module's weights as ``best-<step>`` when they are the best so far."""
        self.module.eval()
        with torch.no_grad():
            values = dev_metrics(self.recipe.dev_run(), self.recipe.dev_qrels, self.metrics)
        self.module.train()
        key = self.metrics[0]
        if state.best_step is None or values[key] > state.best_metrics[key]:
            with atomic_dir(step_dir(self.work, "best", state.step)) as tmp:
                save_model(self.module, str(tmp / MODULE_FILE))
            state.best_step, state.best_metrics, state.evals_since_best = state.step, values, 0
        else:
            state.evals_since_best += 1
            state.stopped_early = bool(self.args.patience) and state.evals_since_best >= self.args.patience
        return values

    def report(self, state: LoopState, row: dict[str, Any]) -> None:
        """One line per evaluation, printed above a terminal's progress bar."""
        tqdm.write(f"step {row['step']}: " + ", ".join(f"dev {k} {row[k]:.4f}" for k in self.metrics)
                   + f" (best: step {state.best_step})", file=sys.stderr)

    # ----- the loop -------------------------------------------------------------------------
    def train_step(self, group: list[Any]) -> float:
        """Forward and backward over the step's batches, then one optimiser step; returns the mean loss."""
        autocast = (torch.autocast(device_type=self.recipe.device.type, dtype=self.dtype) if self.dtype
                    else contextlib.nullcontext())
        total = 0.0
        for batch in group:
            with autocast:
                loss = self.recipe.loss(batch)
            value = float(loss.detach())
            if not math.isfinite(value) and not self.scaler.is_enabled():
                raise FloatingPointError(f"the training loss became {value}; lower --learning-rate or raise "
                                         "--warmup-ratio")
            self.scaler.scale(loss.float() / len(group)).backward()
            total += value / len(group)
        if self.args.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.args.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def run(self) -> TrainResult:
        self.prepare()
        state = self.resume_or_start()
        has_dev = bool(self.recipe.dev_qrels)
        started, base_seconds = time.perf_counter(), state.seconds
        self.module.train()
        bar = progress_bar(self.total, f"training {self.recipe.name}", "step", enabled=not self.args.quiet,
                           initial=state.step)
        if has_dev and state.step == 0 and self.args.eval_at_start:
            state.log.append({"step": 0, **self.evaluate(state)})
            self.report(state, state.log[-1])
        groups: list[list[Any]] = steps_per_epoch(self.recipe, state.epoch, self.args.gradient_accumulation)
        while state.step < self.total and not state.stopped_early:
            if state.step_in_epoch >= len(groups):
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
                groups = steps_per_epoch(self.recipe, state.epoch, self.args.gradient_accumulation)
                continue
            learning_rate = self.scheduler.get_last_lr()[0]
            loss = self.train_step(groups[state.step_in_epoch])
            state.step, state.step_in_epoch = state.step + 1, state.step_in_epoch + 1
            row: dict[str, Any] = {"step": state.step, "epoch": state.epoch, "learning_rate": learning_rate,
                                   "loss": loss}
            last = state.step == self.total
            if has_dev and ((self.args.eval_steps and state.step % self.args.eval_steps == 0) or last):
                row.update(self.evaluate(state))
                self.report(state, row)
            state.log.append(row)
            bar.update(1)
            if hasattr(bar, "set_postfix"):  # a terminal's tqdm bar; a log gets the loss from train_log.csv
                bar.set_postfix(loss=f"{loss:.4f}")
            if state.step % self.args.save_steps == 0 and not (last or state.stopped_early):
                state.seconds = base_seconds + time.perf_counter() - started
                write_checkpoint(self.work, state, self.module, self.optimizer, self.scheduler, self.scaler)
                write_csv(self.work / LOG_CSV, state.log, self.metrics)
        bar.close()
        state.seconds = base_seconds + time.perf_counter() - started
        return self.finish(state)

    # ----- output ---------------------------------------------------------------------------
    def finish(self, state: LoopState) -> TrainResult:
        """Put the kept weights back in the module and write the output dir in one rename."""
        if state.best_step is not None and state.best_step != state.step:
            load_model(self.module, str(listed(self.work, "best")[state.best_step] / MODULE_FILE), strict=True)
        self.module.eval()
        start = next((r for r in state.log if r["step"] == 0), {})
        record = {"recipe": self.recipe.name, **self.provenance, "seed": self.args.seed,
                  "steps": state.step, "planned_steps": self.total, "epochs_started": state.epoch + 1,
                  "kept_step": state.step if state.best_step is None else state.best_step,
                  "dev_at_kept_step": state.best_metrics, "dev_at_start": {k: start[k] for k in self.metrics if k in start},
                  "stopped_early": state.stopped_early, "train_seconds": round(state.seconds, 1),
                  "resumes": state.resumes, "device": str(self.recipe.device),
                  "precision": "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch."),
                  "versions": versions()}
        with atomic_dir(self.output, overwrite=self.args.overwrite) as tmp:
            self.recipe.save(tmp)
            write_args(tmp / ARGS_FILE, self.recipe.name, self.args, self.options)
            (tmp / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            write_csv(tmp / LOG_CSV, state.log, self.metrics)
            if self.args.plot:
                plot(tmp / LOG_PNG, state.log, self.metrics, state.best_step)
        shutil.rmtree(self.work, ignore_errors=True)
        return TrainResult(self.output, state.step, state.best_step, state.best_metrics,
                           record["dev_at_start"], state.stopped_early, state.seconds, self.recipe)


def versions() -> dict[str, str]:
    import transformers

    from .. import __version__

    return {"pyserini_dense_ext": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def train(recipe_cls: type[Recipe], args: TrainArgs, options: Any | None = None) -> TrainResult:
    """Train ``recipe_cls`` with ``args`` (and its options dataclass) into ``args.output``; resumes a killed run."""
    options = recipe_cls.Args() if options is None else options
    recipe = recipe_cls(args, options, resolve_device(args.device))
    return Loop(recipe, args, options).run()

