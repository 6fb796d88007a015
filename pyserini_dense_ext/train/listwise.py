"""CODER's losses over each query's whole candidate list (Zerveas et al., EMNLP 2022).

Scores ``(B, C)`` are a query's inner products with its C candidates' fixed vectors
(:func:`~pyserini_dense_ext.rerank.candidate_scores`), grades ``(B, C)`` its qrels (0 unjudged),
``valid`` marks real candidates (False for padding). Both losses divide the scores by a
temperature ``tau_s`` first (the paper code's ``--temperature``): unit-length vectors give
cosines in [-1, 1], whose softmax over 1000 candidates is nearly flat without it.
"""
from __future__ import annotations

import torch

LOSSES = ("listnet", "max-margin")


def listnet_loss(scores: torch.Tensor, grades: torch.Tensor, valid: torch.Tensor, tau_y: float = 0.1,
                 tau_s: float = 1.0) -> torch.Tensor:
    """KL(softmax(y / tau_y) || softmax(s / tau_s)) over each query's valid candidates, averaged over queries.

    ListNet's top-one distributions (Cao et al., 2007) as CODER uses them: the target puts
    e^{y/tau_y} weight on each candidate, so graded qrels give graded targets and a small tau_y
    concentrates the mass on the judged positives (tau_y -> 0: uniform over the highest grade).
    """
    if tau_y <= 0 or tau_s <= 0:
        raise ValueError(f"temperatures must be positive, got tau_y={tau_y}, tau_s={tau_s}")
    target = torch.softmax((grades / tau_y).masked_fill(~valid, float("-inf")), dim=1)
    log_p = torch.log_softmax((scores / tau_s).masked_fill(~valid, float("-inf")), dim=1)
    terms = torch.where(target > 0, target * (torch.log(target.clamp_min(1e-30)) - log_p), torch.zeros_like(target))
    return terms.sum(1).mean()


def max_margin_loss(scores: torch.Tensor, grades: torch.Tensor, valid: torch.Tensor, margin: float = 1.0,
                    tau_s: float = 1.0) -> torch.Tensor:
    """Pair-wise hinge: the sum over pairs with grade_i > grade_j of max(0, margin - (s_i - s_j) / tau_s),
    divided by the query's number of candidates, averaged over queries.

    With binary labels this is ``torch.nn.MultiLabelMarginLoss`` (the paper's max-margin ablation);
    only candidates with a positive grade can be the better side, so pairs cost (B, P, C), P the
    most positives of any query, not (B, C, C).
    """
    scaled = (scores / tau_s).masked_fill(~valid, 0.0)  # padding scores -inf: kept out of the arithmetic
    positive = (grades > 0) & valid
    p = max(int(positive.sum(1).max()), 1)
    pos_grades, pos_at = torch.where(positive, grades, torch.full_like(grades, float("-inf"))).topk(p, dim=1)
    pos_ok = torch.isfinite(pos_grades)
    pos_scores = scaled.gather(1, pos_at)
    worse = valid[:, None, :] & pos_ok[:, :, None] & (grades[:, None, :] < pos_grades[:, :, None])
    hinge = torch.relu(margin - (pos_scores[:, :, None] - scaled[:, None, :]))
    per_query = (hinge * worse).sum((1, 2)) / valid.sum(1).clamp_min(1)
    return per_query.mean()
