"""Training: one loop (``loop``) shared by every recipe (``recipes/``, one module each), arguments as
dataclasses (``args``), validated data with a dev split and hard negatives (``data``).

Writing a recipe: subclass :class:`Recipe` (or :class:`BiEncoderRecipe` for a family model trained
on a corpus) in a new module of ``recipes/`` that sets ``RECIPE``; see :mod:`.recipe` for the contract.
"""
from .args import TrainArgs
from .data import Corpus, TrainData, judged_queries, load_training_data
from .evaluation import rank_by_encoding, rank_rows, rank_with_index, score_candidates
from .loop import TrainResult, train
from .recipe import BiEncoderRecipe, Recipe, epoch_rng
from .recipes import RECIPES

__all__ = ["RECIPES", "BiEncoderRecipe", "Corpus", "Recipe", "TrainArgs", "TrainData", "TrainResult", "epoch_rng",
           "judged_queries", "load_training_data", "rank_by_encoding", "rank_rows", "rank_with_index", "score_candidates", "train"]
