"""What a training recipe supplies to the shared loop (:mod:`pyserini_dense_ext.train.loop`).

A recipe is one module in ``train/recipes/`` defining ``RECIPE = SomeRecipe``. The loop owns
everything generic (optimiser, schedule, accumulation, clipping, autocast, checkpoints and resume,
evaluation schedule, best checkpoint, early stopping, logs, the atomic output dir); the recipe
owns what is specific to the method:

* :meth:`Recipe.prepare` reads and validates its inputs and builds its model(s): nothing is written before it returns;
* :attr:`Recipe.module` is the ``torch.nn.Module`` whose parameters are optimised and checkpointed
  (a frozen teacher or fixed document vectors stay outside it);
* :meth:`Recipe.batches` lists one epoch's batches, a pure function of (seed, epoch), so a resumed
  run skips exactly the batches already done (use ``epoch_rng``, never the global RNG);
* :meth:`Recipe.loss` turns one batch into a scalar loss (the loop does autocast and backward);
* :meth:`Recipe.dev_run` ranks the dev queries as the model is now; :attr:`Recipe.dev_qrels` judges them;
* :meth:`Recipe.save` writes the final model dir (``DenseModel.save``), :meth:`Recipe.provenance`
  what it was trained from.

:class:`BiEncoderRecipe` implements all but ``batches`` and ``loss`` for recipes that train one
:class:`~pyserini_dense_ext.encoders.DenseModel` of a family on :class:`~.data.TrainData`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..encoders import load_model
from ..encoders.base import DenseModel
from ..encoders.config import EncoderConfig
from ..io.qrels import Qrels
from ..io.runs import Run
from .args import ENCODER_FIELDS, NoArgs, TrainArgs
from .data import TrainData, load_training_data, sha256_file
from .evaluation import rank_by_encoding


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch's order and sampling: independent of every other RNG, so a resumed
    run rebuilds the same batches without any saved sampler state."""
    return np.random.default_rng([seed, epoch])


class Recipe(ABC):
    """One training method (see the module docstring for the contract with the loop)."""

    name: ClassVar[str]  # sub-command of ``python -m pyserini_dense_ext.train``
    summary: ClassVar[str]  # one line for ``--help``
    example: ClassVar[str]  # a full command line, shown by ``--help``
    Args: ClassVar[type] = NoArgs  # the recipe's own options (a dataclass; field names differ from TrainArgs')
    defaults: ClassVar[dict[str, Any]] = {}  # TrainArgs defaults this recipe changes (the paper's hyperparameters)

    def __init__(self, args: TrainArgs, options: Any, device: torch.device):
        self.args, self.options, self.device = args, options, device

    @abstractmethod
    def prepare(self) -> None:
        """Read and validate inputs (``InputError`` on bad ones), build the model(s) on ``self.device``."""

    @property
    @abstractmethod
    def module(self) -> torch.nn.Module:
        """The parameters the optimiser updates; its ``state_dict`` is what checkpoints hold."""

    @abstractmethod
    def batches(self, epoch: int) -> Sequence[Any]:
        """Every batch of ``epoch`` in order, deterministic in (``args.seed``, ``epoch``)."""

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:
        """A scalar loss of one batch, with gradients (the module is in train mode)."""

    @property
    def dev_qrels(self) -> Qrels:
        """Judgements of the dev queries; empty means no evaluation."""
        return {}

    def dev_run(self) -> Run:
        """Rank the dev queries with the model as it is now (called in eval mode, without gradients)."""
        raise NotImplementedError(f"recipe {self.name!r} has dev queries but no dev_run")

    @abstractmethod
    def save(self, out_dir: Path) -> None:
        """Write the trained model into ``out_dir`` (a fresh dir that becomes ``--output``)."""

    def provenance(self) -> dict[str, Any]:
        """What the model was trained from, recorded in ``training.json``."""
        return {}


class BiEncoderRecipe(Recipe):
    """A recipe that trains one family model (queries and documents) on judged queries of a corpus."""

    family: ClassVar[str]

    model: DenseModel
    data: TrainData

    def model_overrides(self) -> dict[str, Any]:
        """``dense_ext.json`` options set by flags (None: the dir or the family decides)."""
        return {name: getattr(self.args, name) for name in ENCODER_FIELDS}

    def prepare(self) -> None:
        self.data = load_training_data(self.args)
        self.model = load_model(self.args.model, family=self.family, device=str(self.device),
                                strict=self.continues_family_dir(), **self.model_overrides())

    def continues_family_dir(self) -> bool:
        """Whether ``--model`` is already a model of this family with these extra weights (say, an ME-BERT dir
        with its projection): then those weights must be there. A plain checkpoint, or new extra weights
        asked for by flags, starts them fresh."""
        own = EncoderConfig.load(self.args.model)
        return own is not None and own.family == self.family and \
            self.model_overrides().get("projection_dim") in (None, own.projection_dim)

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def dev_qrels(self) -> Qrels:
        return self.data.dev_qrels

    def dev_run(self) -> Run:
        queries = {q: self.data.queries[q] for q in self.data.dev_qrels}
        return rank_by_encoding(self.model, queries, self.data.corpus, self.data.candidates, self.args.eval_batch_size)

    def save(self, out_dir: Path) -> None:
        self.model.save(out_dir)

    def provenance(self) -> dict[str, Any]:
        model_dir = Path(self.args.model)
        weights = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
        return {"base_model": {"path": str(model_dir), "weights": {p.name: sha256_file(p) for p in weights}},
                "encoder": self.model.config.to_dict(), "data": self.data.describe()}
