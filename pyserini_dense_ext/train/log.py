"""The training log: one CSV row per optimiser step (loss, learning rate) with the dev metrics on
evaluation steps, and a PNG of loss and dev metrics against the step."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from ..io.atomic import atomic_write

BASE_COLUMNS = ("step", "epoch", "learning_rate", "loss")


def check_plot_available() -> None:
    """Fail before training, not after it, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("train_log.png needs matplotlib: pip install 'pyserini-dense-ext[plot]', or pass "
                         "--no-plot") from None


def write_csv(path: Path, rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> None:
    """Rows of :class:`~.checkpoint.LoopState` ``log``; empty cells where a value was not measured."""
    with atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=[*BASE_COLUMNS, *metrics], extrasaction="ignore", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def plot(path: Path, rows: Sequence[dict[str, Any]], metrics: Sequence[str], best_step: int | None) -> None:
    """Loss per step (left) and dev metrics per evaluation (right), the kept step marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r for r in rows if r.get("loss") is not None]
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1)
    left.set(xlabel="step", ylabel="training loss", title="loss")
    evals = [r for r in rows if metrics[0] in r]
    for name in metrics:
        right.plot([r["step"] for r in evals], [r[name] for r in evals], marker="o", ms=3, label=f"dev {name}")
    if best_step is not None:
        right.axvline(best_step, color="grey", ls="--", lw=1, label=f"kept: step {best_step}")
    right.set(xlabel="step", title="dev split")
    right.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
