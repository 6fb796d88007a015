"""The ``coder`` recipe: CODER (Zerveas et al., EMNLP 2022) fine-tunes only the query encoder of a trained
dual encoder, list-wise, against the fixed document vectors already in its index.

Each training query brings its top N candidates from a first-stage run M_C (BM25, the base dense
model, a hybrid) plus every judged positive M_C missed (appended, as in the paper); all of them are
scored at once by inner product with their stored vectors (ME-BERT: max over a document's m rows)
and the loss compares that score list with the qrels (:mod:`.listwise`: ListNet KL, or pair-wise
max-margin for the paper's ablation). The corpus is never re-encoded, so the trained model searches
the same index (single-stage) or reranks any run (:class:`~pyserini_dense_ext.rerank.Reranker`).

The recipe supplies what a training loop needs (the model to train, batches, the loss, a dev
evaluation and the save); the loop itself (optimiser, schedule, accumulation, checkpoints, early
stopping) is the shared one of :mod:`pyserini_dense_ext.train`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..encoders import DenseModel, load_model
from ..encoders.base import Features, collate
from ..eval.metrics import evaluate
from ..index import DOCID_FILE, INDEX_FILE
from ..index.vectors import DocVectors, open_doc_vectors
from ..io.errors import InputError
from ..io.lines import iter_lines
from ..io.qrels import Qrels, read_qrels
from ..io.runs import Run, read_run
from ..io.topics import read_topics
from ..rerank import Reranker, candidate_scores, candidates_from_run
from .listwise import LOSSES, listnet_loss, max_margin_loss

DEV_METRICS = ("ndcg@10", "recall@100")


@dataclass
class CoderArgs:
    """What CODER trains from; the loop's own settings (learning rate, steps, ...) live in the loop's args."""

    model: str = field(metadata={"help": "base model dir: the query encoder to start from (any family, not ONNX)"})
    index: str = field(metadata={"help": "dense FAISS index dir built from the base model's document side"})
    candidates: str = field(metadata={"help": "first-stage run M_C over the training queries (TREC or MS MARCO)"})
    topics: str = field(metadata={"help": "query texts: BEIR queries.jsonl or Pyserini TSV"})
    qrels: str = field(metadata={"help": "training qrels (BEIR TSV or TREC)"})
    dev_qrels: str | None = field(default=None, metadata={
        "help": "dev qrels; default: hold out --dev-fraction of the training queries"})
    dev_fraction: float = field(default=0.2, metadata={"help": "share of training queries held out for dev"})
    depth: int = field(default=1000, metadata={"help": "N: candidates per query taken from M_C (paper: 1000)"})
    loss: str = field(default="listnet", metadata={"help": f"one of {LOSSES}"})
    tau_y: float = field(default=0.1, metadata={"help": "target temperature: softmax(grade / tau_y)"})
    tau_s: float = field(default=0.05, metadata={
        "help": "score temperature: softmax(score / tau_s); ~0.05 for unit-length (cosine) vectors"})
    margin: float = field(default=1.0, metadata={"help": "max-margin loss: the margin (on score / tau_s)"})
    vectors: str | None = field(default=None, metadata={"help": "document vectors .npy (for PQ/HNSW indexes)"})
    vectors_cache: str | None = field(default=None, metadata={"help": "where flat vectors are read back to"})
    family: str | None = field(default=None, metadata={"help": "encoder family (plain HF dirs need it)"})
    encoder_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "EncoderConfig overrides, e.g. {\"pooling\": \"mean\", \"l2_norm\": true}"})
    eval_batch_size: int = field(default=64, metadata={"help": "dev queries encoded at once"})

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if self.depth < 1:
            raise ValueError(f"--depth must be positive, got {self.depth}")
        if min(self.tau_y, self.tau_s) <= 0:
            raise ValueError("--tau-y and --tau-s must be positive")
        if self.dev_qrels is None and not 0 < self.dev_fraction < 1:
            raise ValueError(f"--dev-fraction must be in (0, 1), got {self.dev_fraction}")


@dataclass
class Lists:
    """Training lists: ``ids`` int32 ``(q, W)`` = the top N of M_C then the positives it missed, -1 padded;
    ``grades`` float32 ``(q, W)`` the qrels grade of each (0 unjudged or padding)."""

    qids: list[str]
    features: Features
    ids: np.ndarray
    grades: np.ndarray
    missed: int  # judged positives M_C's top N lacked, appended


def qrels_line(path: str | Path, qid: str, docid: str | None = None) -> int | None:
    """The first line of ``path`` judging ``qid`` (and ``docid``), for error messages."""
    for lineno, line in iter_lines(path, "qrels file"):
        parts = line.split()
        if parts and parts[0] == qid and (docid is None or parts[-2] == docid):
            return lineno
    return None


def build_lists(run: Run, qrels: Qrels, doc_index: dict[str, int], depth: int, features: Features,
                qids: list[str], run_path: str | Path, qrels_path: str | Path) -> Lists:
    """CODER's candidate lists: top ``depth`` of the run, plus missed positives (grade > 0) at the end."""
    missing = [q for q in qids if not run.get(q)]
    if missing:
        raise InputError(run_path, f"has no candidates for {len(missing)} training queries, e.g. {missing[:3]}",
                         field="qid")
    top = candidates_from_run(run, doc_index, depth, qids, run_path).ids
    extra: list[list[int]] = []
    for qid, row in zip(qids, top):
        present = set(row[row >= 0].tolist())
        added = []
        for docid, grade in qrels[qid].items():
            if grade <= 0:
                continue
            if docid not in doc_index:
                raise InputError(qrels_path, f"judges docid {docid!r} (query {qid!r}), which is not in the dense "
                                             "index", qrels_line(qrels_path, qid, docid), "corpus-id")
            if doc_index[docid] not in present:
                added.append(doc_index[docid])
        extra.append(added)
    width = top.shape[1] + max((len(a) for a in extra), default=0)
    ids = np.full((len(qids), width), -1, dtype=np.int32)
    ids[:, :top.shape[1]] = top
    for i, added in enumerate(extra):
        ids[i, top.shape[1]:top.shape[1] + len(added)] = added
    grades = np.zeros(ids.shape, dtype=np.float32)
    for i, qid in enumerate(qids):
        for docid, grade in qrels[qid].items():
            if grade > 0:
                grades[i, ids[i] == doc_index[docid]] = grade
    return Lists(qids, features, ids, grades, sum(len(a) for a in extra))


def split_dev(qids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random ``fraction`` of the queries held out for dev; both lists keep the input order."""
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(len(qids))[:max(1, round(fraction * len(qids)))].tolist())
    return [q for i, q in enumerate(qids) if i not in held], [q for i, q in enumerate(qids) if i in held]


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class CoderRecipe:
    """CODER as a recipe: ``model`` to train, ``batches``, ``loss``, ``evaluate`` (dev nDCG@10) and ``save``."""

    name = "coder"
    args_class = CoderArgs

    def __init__(self, args: CoderArgs, seed: int = 0, progress: bool = True):
        args.validate()
        self.args, self.seed = args, seed
        if Path(args.model).suffix == ".onnx":
            raise InputError(args.model, "is an ONNX export: CODER trains a torch model dir (export it afterwards)")
        self.model: DenseModel = load_model(args.model, family=args.family, **args.encoder_options)
        self.vectors: DocVectors = open_doc_vectors(args.index, args.vectors, args.vectors_cache, progress)
        index_dir = Path(args.index)
        if self.model.dim != self.vectors.dim:
            raise InputError(index_dir / INDEX_FILE, f"has dimension {self.vectors.dim} but the model {args.model} "
                                                     f"gives {self.model.dim}-dim vectors: the index must be built "
                                                     "from the base model's document side", field="dim")
        if args.depth > self.vectors.num_docs:
            raise InputError(index_dir / DOCID_FILE, f"--depth {args.depth} exceeds the {self.vectors.num_docs} "
                                                     "documents of the index", field="depth")
        qrels = read_qrels(args.qrels)
        dev_qrels = read_qrels(args.dev_qrels) if args.dev_qrels else None
        topics = read_topics(args.topics)
        for path, judged in ((args.qrels, qrels), (args.dev_qrels, dev_qrels)):
            for qid in judged or ():
                if qid not in topics:
                    raise InputError(path, f"judges query {qid!r}, which has no text in {args.topics}",
                                     qrels_line(path, qid), "query-id")
        if dev_qrels is None:
            train_qids, dev_qids = split_dev(list(qrels), args.dev_fraction, seed)
            self.dev_qrels = {q: qrels[q] for q in dev_qids}
        else:
            train_qids, dev_qids = [q for q in qrels if q not in dev_qrels], list(dev_qrels)
            self.dev_qrels = dev_qrels
        if not train_qids:
            raise ValueError(f"no training queries left in {args.qrels} once the dev queries are held out")
        run = read_run(args.candidates)
        features = self.model.features([topics[q] for q in train_qids], "query")
        self.lists = build_lists(run, qrels, self.vectors.doc_index, args.depth, features, train_qids,
                                 args.candidates, args.qrels)
        self.topics, self.run, self.dev_qids = topics, run, dev_qids
        self.provenance = {
            "recipe": "coder", "base_model": str(args.model), "index": str(args.index),
            "index_fingerprint": self.vectors.fingerprint, "candidates": str(args.candidates),
            "candidates_sha256": file_sha256(args.candidates), "depth": args.depth, "loss": args.loss,
            "tau_y": args.tau_y, "tau_s": args.tau_s, "seed": seed, "train_queries": len(train_qids),
            "dev_queries": len(dev_qids), "missed_positives_added": self.lists.missed,
            "document_encoder": "the base model (CODER trains the query side; the index is unchanged)"}
        if args.loss == "max-margin":
            self.provenance["margin"] = args.margin

    # -- the seam a training loop drives -------------------------------------------------------
    def batches(self, epoch: int, batch_size: int) -> Iterator[np.ndarray]:
        """Rows of the training lists, shuffled by (seed, epoch) alone, so a resumed run sees the same order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.lists.qids))
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]

    def loss(self, model: DenseModel, rows: np.ndarray) -> torch.Tensor:
        """The list-wise loss of a batch of training queries (rows of :attr:`lists`)."""
        lists = self.lists
        batch = collate(lists.features, rows, model.tokenizer.pad_token_id)
        device = model.device
        queries = model(**{k: torch.from_numpy(v).to(device) for k, v in batch.items()}, side="query")
        ids = lists.ids[rows]
        docs = torch.from_numpy(self.vectors.gather(ids)).to(device)
        valid = torch.from_numpy(ids >= 0).to(device)
        grades = torch.from_numpy(lists.grades[rows]).to(device)
        scores = candidate_scores(queries.float(), docs, valid)
        if self.args.loss == "listnet":
            return listnet_loss(scores, grades, valid, self.args.tau_y, self.args.tau_s)
        return max_margin_loss(scores, grades, valid, self.args.margin, self.args.tau_s)

    def rerank(self, model: DenseModel, qids: list[str]) -> Run:
        """These queries' top N candidates of M_C (no positives injected) reranked by ``model``."""
        reranker = Reranker(self.vectors, model, batch_size=self.args.eval_batch_size)
        return reranker.rerank_run({q: self.topics[q] for q in qids}, self.run, self.args.depth,
                                   source=self.args.candidates, progress=False)

    def evaluate(self, model: DenseModel) -> dict[str, float]:
        """Dev nDCG@10 and R@100 of reranking M_C's top N (the quantity the paper validates on)."""
        return evaluate(self.rerank(model, self.dev_qids), self.dev_qrels, DEV_METRICS)

    def save(self, model: DenseModel, out_dir: str | Path, **loop_info: Any) -> None:
        """A model dir like the base one (its ``dense_ext.json`` family and options) plus what it was trained from."""
        extra = dict(model.config.extra, coder={**self.provenance, **loop_info})
        saved = dataclasses.replace(model.config, extra=extra)
        original, model.config = model.config, saved
        try:
            model.save(out_dir)
        finally:
            model.config = original
