"""Training data: corpus, queries and judgements read by the project's validated readers, a dev split,
hard negatives from any run file, and dev candidates.

Everything is checked before a single output file exists: a judgement naming a document the
corpus lacks or a query without text, a run naming an unknown document, or dev judgements that
share queries with the training ones are each an :class:`InputError` naming the file, line and field.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Container

import numpy as np

from ..io import InputError, read_corpus, read_qrels, read_run, read_topics
from ..io.qrels import Qrels, iter_qrels
from .args import TrainArgs

RELEVANT = 1  # trec_eval's threshold: a grade >= 1 is relevant


def sha256_file(path: str | Path) -> str:
    """Hex digest of a file's bytes (provenance and resume fingerprints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def positives(judged: dict[str, int]) -> set[str]:
    return {d for d, grade in judged.items() if grade >= RELEVANT}


@dataclass
class Corpus:
    """Documents as parallel lists; a document is referred to by its row."""

    docids: list[str]
    texts: list[str]
    row: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.row = {d: i for i, d in enumerate(self.docids)}

    def __len__(self) -> int:
        return len(self.docids)


@dataclass
class TrainData:
    """What a bi-encoder recipe trains and evaluates on (documents by corpus row)."""

    corpus: Corpus
    queries: dict[str, str]
    train_qrels: Qrels
    dev_qrels: Qrels
    negatives: dict[str, list[int]]  # training qid -> ranked rows of its run hits, judged positives removed
    candidates: dict[str, list[int]] | None  # dev qid -> ranked rows to re-score; None: the whole corpus
    files: dict[str, str]  # role -> path, for provenance

    def positive_rows(self, qid: str) -> set[int]:
        return {self.corpus.row[d] for d in positives(self.train_qrels.get(qid, {}))}

    def pairs(self) -> list[tuple[str, int]]:
        """Every (training query, judged-relevant document row), in qrels order: one training example each."""
        return [(q, self.corpus.row[d]) for q, judged in self.train_qrels.items() for d in judged
                if judged[d] >= RELEVANT]

    def describe(self) -> dict[str, Any]:
        """Counts and file digests for ``training.json``."""
        return {"files": {role: {"path": path, "sha256": sha256_file(path)} for role, path in self.files.items()},
                "documents": len(self.corpus), "train_queries": len(self.train_qrels), "train_pairs": len(self.pairs()),
                "dev_queries": len(self.dev_qrels),
                "queries_with_hard_negatives": sum(1 for q in self.train_qrels if self.negatives.get(q)),
                "dev_candidates": "corpus" if self.candidates is None else
                sum(len(c) for c in self.candidates.values())}


def resolve_files(args: TrainArgs) -> dict[str, Path]:
    """Corpus, queries and qrels paths: explicit flags over the BEIR layout of ``--data``."""
    data = Path(args.data) if args.data else None
    files = {"corpus": args.corpus or (data / "corpus.jsonl" if data else None),
             "queries": args.queries or (data / "queries.jsonl" if data else None),
             "qrels": args.qrels or (data / "qrels" / f"{args.split}.tsv" if data else None)}
    return {role: Path(p) for role, p in files.items() if p is not None}


def split_dev(qrels: Qrels, fraction: float, seed: int) -> tuple[Qrels, Qrels]:
    """Hold out ``fraction`` of the queries that have a relevant document, chosen by ``seed``."""
    if fraction == 0:
        return qrels, {}
    usable = sorted(q for q, judged in qrels.items() if positives(judged))
    n_dev = max(1, round(fraction * len(usable)))
    if n_dev >= len(usable):
        raise ValueError(f"--dev-fraction {fraction} leaves no training query out of {len(usable)}")
    dev = set(np.random.default_rng(seed).permutation(len(usable))[:n_dev].tolist())
    dev_qids = {usable[i] for i in dev}
    return ({q: j for q, j in qrels.items() if q not in dev_qids}, {q: j for q, j in qrels.items() if q in dev_qids})


def check_disjoint(dev_path: Path, train: Qrels) -> None:
    """Dev judgements on training queries would make the dev score a training score."""
    for lineno, qid, _, _ in iter_qrels(dev_path):
        if qid in train:
            raise InputError(dev_path, f"query {qid!r} is also a training query (in --qrels); dev queries must be "
                                       "held out", lineno, "qid")


def ranked_rows(run: dict[str, list[tuple[str, float]]], qid: str, corpus: Corpus, depth: int,
                exclude: set[str] = frozenset()) -> list[int]:
    """The top ``depth`` hits of one query as corpus rows, minus ``exclude`` (its judged positives)."""
    return [corpus.row[d] for d, _ in run.get(qid, [])[:depth] if d not in exclude]


def judged_queries(args: TrainArgs, docids: Container[str], docid_source: str
                   ) -> tuple[dict[str, str], Qrels, Qrels, dict[str, str]]:
    """Queries, training and dev judgements (``--dev-qrels``, or a seeded split), every judged document
    checked against ``docids`` (a corpus's, or an index's for a recipe that reads no corpus).

    Returns ``(queries, train_qrels, dev_qrels, files)``.
    """
    paths = resolve_files(args)
    for role in ("queries", "qrels"):
        if role not in paths:
            raise ValueError(f"--{role}: give it, or a BEIR dir with --data")
    queries = read_topics(paths["queries"])
    qrels = read_qrels(paths["qrels"], docids=docids, qids=queries, docid_source=docid_source,
                       qid_source=str(paths["queries"]))
    files = {role: str(paths[role]) for role in ("queries", "qrels")}
    if args.dev_qrels:
        dev_path = Path(args.dev_qrels)
        dev = read_qrels(dev_path, docids=docids, qids=queries, docid_source=docid_source,
                         qid_source=str(paths["queries"]))
        check_disjoint(dev_path, qrels)
        train = qrels
        files["dev_qrels"] = str(dev_path)
    else:
        train, dev = split_dev(qrels, args.dev_fraction, args.split_seed)
    if not any(positives(j) for j in train.values()):
        raise InputError(paths["qrels"], f"holds no judgement with grade >= {RELEVANT} for the training queries, so "
                                         "there is nothing to train on", field="score")
    return queries, train, dev, files


def load_training_data(args: TrainArgs, corpus_empty: str = "error") -> TrainData:
    """Read and cross-check every input named in ``args`` (see the module docstring)."""
    paths = resolve_files(args)
    if "corpus" not in paths:
        raise ValueError("--corpus: give it, or a BEIR dir with --data")
    docs = read_corpus(paths["corpus"], empty=corpus_empty)
    corpus = Corpus([d.docid for d in docs], [d.contents for d in docs])
    in_corpus = f"the corpus {paths['corpus']}"
    queries, train, dev, files = judged_queries(args, corpus.row, in_corpus)
    files = {"corpus": str(paths["corpus"]), **files}
    runs: dict[str, dict[str, list[tuple[str, float]]]] = {}

    def run(path: str) -> dict[str, list[tuple[str, float]]]:
        if path not in runs:
            runs[path] = read_run(path, docids=corpus.row, docid_source=in_corpus)
        return runs[path]

    negatives: dict[str, list[int]] = {}
    if args.negatives:
        files["negatives"] = args.negatives
        hits = run(args.negatives)
        negatives = {q: ranked_rows(hits, q, corpus, args.negative_depth, positives(train[q])) for q in train}
    candidates = None
    source = args.eval_candidates or args.negatives
    if dev and source:
        files["eval_candidates"] = source
        hits = run(source)
        for qid in dev:
            if not hits.get(qid):
                raise InputError(source, f"has no hits for dev query {qid!r}, so it cannot rank the dev split; give "
                                         "--eval-candidates a run over the dev queries", field="qid")
        candidates = {q: ranked_rows(hits, q, corpus, args.eval_depth) for q in dev}
    return TrainData(corpus, queries, train, dev, negatives, candidates, files)
