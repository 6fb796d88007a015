"""Running matrix rows: shared steps once, each row's commands, evaluation, the checks.

Commands run in this process (one JVM, one torch import for the whole matrix) through the
``main`` of the module behind each console script, their output going to a log per command
under the scratch dir. A step's output is reused while the command that built it is unchanged
(a stamp beside it records the command); a changed command rebuilds it.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..io.errors import InputError
from .matrix import EMBEDDED, ROOT, Matrix, Row, Step

SCRIPT_PREFIX = "dense-ext-"
UNMEASURED_METRICS = ("ndcg@10", "recall@100")  # printed for a row with no expected values yet


def command_modules() -> dict[str, str]:
    """Command name (console script minus ``dense-ext-``) -> module whose ``main`` it runs (from setup.cfg)."""
    from importlib.metadata import entry_points

    from .. import cli

    out = {}
    for ep in entry_points(group="console_scripts"):
        if ep.name.startswith(SCRIPT_PREFIX) and ep.value.startswith("pyserini_dense_ext.cli:"):
            entry = getattr(cli, ep.value.split(":")[1], None)
            if entry is not None and hasattr(entry, "module"):
                out[ep.name[len(SCRIPT_PREFIX):]] = entry.module
    return out


def collection_dir(collection: str) -> Path:
    """The embedded Cranfield, or a BEIR-layout dir (relative paths from the repo root)."""
    if collection in EMBEDDED:
        return EMBEDDED[collection]
    path = Path(collection)
    return path if path.is_absolute() else ROOT / path


@dataclass
class Result:
    """What one row measured."""

    row: Row
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    same: str | None = None  # the same_as check: None (none asked), "identical" or what differs

    def drift(self) -> dict[str, float]:
        """Metrics beyond tolerance: {metric: measured - expected}."""
        return {m: self.scores[m] - v for m, v in self.row.expected.items()
                if m in self.scores and abs(self.scores[m] - v) > self.row.tolerance + 1e-12}

    @property
    def ok(self) -> bool:
        return self.error is None and not self.drift() and self.same in (None, "identical")

    @property
    def mark(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.drift():
            return "DRIFT"
        if self.same not in (None, "identical"):
            return "DIFFERS"
        return "ok" if self.row.expected else "new (no expected values yet)"


def same_ranking(a: Path, b: Path) -> str:
    """"identical" when both run files rank every query's documents in one order (by score as written, ties
    by docid: ``read_run``'s order, stricter than trec_eval's float32 one), else what differs."""
    from ..io.runs import read_run

    run_a, run_b = read_run(a), read_run(b)
    if set(run_a) != set(run_b):
        return f"queries differ ({len(set(run_a) ^ set(run_b))} in one run only)"
    differ = [q for q in run_a if [d for d, _ in run_a[q]] != [d for d, _ in run_b[q]]]
    return "identical" if not differ else f"{len(differ)}/{len(run_a)} queries ranked differently, e.g. {differ[0]}"


class Runner:
    """Runs rows of ``matrix`` in ``scratch``; ``log`` gets one line per step and row."""

    def __init__(self, matrix: Matrix, scratch: Path, rebuild: bool = False, log=print,
                 reuse: dict[str, Path] | None = None):
        self.matrix, self.scratch, self.rebuild, self.log = matrix, Path(scratch).resolve(), rebuild, log
        self.reuse = {name: Path(path).resolve() for name, path in (reuse or {}).items()}
        unknown = sorted(set(self.reuse) - set(matrix.steps))
        if unknown:
            raise ValueError(f"--reuse names no step {unknown}; steps: {sorted(matrix.steps)}")
        self.modules = command_modules()
        self.done: set[str] = set()
        self.runs: dict[str, Path] = {}

    def values(self, collection: str, split: str, **extra: str) -> dict[str, str]:
        from ..encoders.presets import minilm_dir

        data = collection_dir(collection)
        minilm = minilm_dir()
        return {"data": str(data), "corpus": str(data / "corpus.jsonl"), "topics": str(data / "queries.jsonl"),
                "qrels": str(data / "qrels" / f"{split}.tsv"), "scratch": str(self.scratch),
                "minilm": str(minilm) if minilm else "{minilm: install the demo extra}",
                **{s: str(self.step_dir(s)) for s in self.matrix.steps}, **extra}

    def step_dir(self, name: str) -> Path:
        return self.reuse.get(name, self.scratch / "steps" / name)

    def run_command(self, command: str, values: dict[str, str], log_name: str) -> None:
        """One command, placeholders filled, run in-process; a failure raises with the log's tail."""
        argv = shlex.split(command.format_map(values))
        name, args = argv[0], argv[1:]
        if name not in self.modules:
            raise ValueError(f"unknown command {name!r} in {command!r}; commands: {sorted(self.modules)}")
        main = importlib.import_module(self.modules[name]).main
        log_path = self.scratch / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ {name} {shlex.join(args)}\n")
            log.flush()
            try:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    code = main(args)
            except SystemExit as e:  # argparse errors
                code = e.code if isinstance(e.code, int) else 2
            except (InputError, ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
                log.write(f"error: {e}\n")
                code = 2
        if code not in (0, None):
            tail = log_path.read_text(encoding="utf-8").strip().splitlines()[-3:]
            raise RuntimeError(f"`{name}` exited {code} (log {log_path}): " + " | ".join(tail))

    def ensure_step(self, step: Step) -> None:
        """Build ``step`` unless its output exists from the same commands (its stamp)."""
        if step.name in self.done:
            return
        if step.name in self.reuse:  # built elsewhere (e.g. the test fixtures' cache): the user vouches for it
            self.log(f"  step {step.name}: using {self.reuse[step.name]} (--reuse)")
            self.done.add(step.name)
            return
        out = self.step_dir(step.name)
        stamp = out.parent / f".{step.name}.stamp"
        values = self.values(step.collection, "test", out=str(out))
        commands = [c.format_map(values) for c in step.commands]
        if out.exists() and not self.rebuild and stamp.is_file() and json.loads(stamp.read_text()) == commands:
            self.log(f"  step {step.name}: reusing {out}")
        else:
            if out.exists():
                shutil.rmtree(out)
            stamp.unlink(missing_ok=True)
            self.log(f"  step {step.name}: building {out}")
            started = time.perf_counter()
            out.parent.mkdir(parents=True, exist_ok=True)
            for command in step.commands:
                self.run_command(command, values, f"step-{step.name}")
            stamp.write_text(json.dumps(commands))
            self.log(f"  step {step.name}: built in {time.perf_counter() - started:.0f} s")
        self.done.add(step.name)

    def run_row(self, row: Row) -> Result:
        """The row's steps, commands and evaluation; errors are the result's, not raised."""
        from ..eval.metrics import evaluate
        from ..io.qrels import read_qrels
        from ..io.runs import read_run

        result = Result(row)
        started = time.perf_counter()
        run_path = self.scratch / "runs" / f"{row.name}.trec"
        values = self.values(row.collection, row.split, run=str(run_path))
        try:
            for step in row.needs(self.matrix.steps):
                self.ensure_step(self.matrix.steps[step])
            run_path.parent.mkdir(parents=True, exist_ok=True)
            run_path.unlink(missing_ok=True)  # a row never scores a stale run
            for command in row.commands:
                self.run_command(command, values, row.name)
            path = Path(row.run_file.format_map(values))
            self.runs[row.name] = path
            qrels = read_qrels(Path(values["qrels"]))
            result.scores = evaluate(read_run(path), qrels, list(row.expected) or UNMEASURED_METRICS)
        except Exception as e:  # noqa: BLE001  (a row's failure is reported in the table, the others still run)
            result.error = f"{type(e).__name__}: {e}"
        result.seconds = time.perf_counter() - started
        return result

    def run(self, rows: list[Row]) -> list[Result]:
        results = {}
        for row in rows:
            self.log(f"row {row.name} ...")
            results[row.name] = self.run_row(row)
            self.log(f"row {row.name}: {results[row.name].mark} ({results[row.name].seconds:.0f} s)")
        for result in results.values():
            other = result.row.same_as
            if other and result.error is None:
                if results.get(other) is None or results[other].error is not None:
                    result.error = f"same_as: row {other!r} did not run"
                else:
                    result.same = same_ranking(self.runs[result.row.name], self.runs[other])
        return [results[r.name] for r in rows]
