"""CODER's losses against torch's own implementations and a hand-worked case."""
from __future__ import annotations

import math

import torch

from pyserini_dense_ext.train.listwise import listnet_loss, max_margin_loss


def random_batch(seed=0, b=3, c=9):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, c, generator=g, requires_grad=True)
    grades = torch.zeros(b, c)
    grades[0, 1], grades[1, 0], grades[1, 4], grades[2, 8] = 1, 2, 1, 1
    return scores, grades


def test_listnet_equals_kl_div_of_softmaxes():
    scores, grades = random_batch()
    valid = torch.ones_like(grades, dtype=torch.bool)
    got = listnet_loss(scores, grades, valid, tau_y=0.5, tau_s=0.2)
    ref = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(scores / 0.2, 1), torch.softmax(grades / 0.5, 1))
    assert torch.allclose(got, ref, atol=1e-6)


def test_listnet_ignores_padding_and_has_finite_gradients():
    scores, grades = random_batch()
    valid = torch.ones_like(grades, dtype=torch.bool)
    valid[:, 6:] = False
    grades[2, 8] = 0
    grades[2, 2] = 1
    got = listnet_loss(scores, grades, valid, tau_y=0.3)
    ref = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(scores[:, :6], 1),
                                                    torch.softmax(grades[:, :6] / 0.3, 1))
    assert torch.allclose(got, ref, atol=1e-6)
    got.backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad[:, 6:] == 0).all()


def test_listnet_graded_targets_by_hand():
    """One query, grades (2, 1, 0), tau_y = 1: target e^2, e^1, e^0 normalised; scores all equal -> uniform."""
    scores = torch.zeros(1, 3)
    grades = torch.tensor([[2.0, 1.0, 0.0]])
    target = torch.tensor([math.e ** 2, math.e, 1.0])
    target = target / target.sum()
    expected = float((target * (target.log() - math.log(1 / 3))).sum())
    got = listnet_loss(scores, grades, torch.ones(1, 3, dtype=torch.bool), tau_y=1.0)
    assert abs(float(got) - expected) < 1e-6


def test_max_margin_equals_multilabel_margin_loss_on_binary_labels():
    scores, grades = random_batch(1)
    grades[1, 0] = 1  # binary
    valid = torch.ones_like(grades, dtype=torch.bool)
    target = torch.full(grades.shape, -1, dtype=torch.long)  # torch's format: positive indices, then -1
    for i, row in enumerate(grades):
        pos = row.nonzero().flatten()
        target[i, :len(pos)] = pos
    ref = torch.nn.MultiLabelMarginLoss()(scores, target)
    assert torch.allclose(max_margin_loss(scores, grades, valid), ref, atol=1e-6)


def test_max_margin_graded_pairs_and_padding_by_hand():
    """Grades (2, 1, 0, pad): pairs (a>b), (a>c), (b>c) with margin 1, divided by 3 valid candidates."""
    scores = torch.tensor([[0.5, 0.2, 0.4, 9.0]])
    grades = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True, False]])
    pairs = [1 - (0.5 - 0.2), 1 - (0.5 - 0.4), 1 - (0.2 - 0.4)]
    assert abs(float(max_margin_loss(scores, grades, valid)) - sum(pairs) / 3) < 1e-6


def test_both_losses_stay_finite_with_minus_inf_padding_and_queries_of_unequal_positives():
    """Scores as candidate_scores gives them (-inf at padding), a query with 2 positives beside ones with 1:
    the max-margin loss once computed inf * 0 there and trained into NaN."""
    inf = float("-inf")
    scores = torch.tensor([[0.3, 0.1, inf, inf], [0.3, inf, inf, inf], [0.2, 0.4, 0.1, 0.0]], requires_grad=True)
    grades = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    valid = torch.isfinite(scores.detach())
    for loss in (max_margin_loss(scores, grades, valid, tau_s=0.05), listnet_loss(scores, grades, valid, 0.1, 0.05)):
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
        scores.grad = None
    finite = scores.detach().masked_fill(~valid, 123.0)  # whatever the padding holds, the value is the same
    assert torch.allclose(max_margin_loss(finite, grades, valid, tau_s=0.05),
                          max_margin_loss(scores.detach(), grades, valid, tau_s=0.05))
