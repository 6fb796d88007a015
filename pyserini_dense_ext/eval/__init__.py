"""Evaluation that reproduces ``trec_eval`` (nDCG@k, MRR@k, Recall@k, MAP, P@k) in pure numpy."""
from .metrics import (DEFAULT_METRICS, Metric, evaluate, evaluate_per_query, mean_metrics, parse_metric,
                      parse_metrics, trec_order)

__all__ = ["DEFAULT_METRICS", "Metric", "evaluate", "evaluate_per_query", "mean_metrics", "parse_metric",
           "parse_metrics", "trec_order"]
