"""CODER (Zerveas et al., EMNLP 2022, "CODER: An efficient framework for improving retrieval through
COntextual Document Embedding Reranking"): fine-tune only the query encoder of a trained dual encoder,
list-wise, against the fixed document vectors already in its index.

Each training query brings its top N candidates from a first-stage run M_C (``--negatives``: BM25, the
base dense model, a hybrid; N = ``--negative-depth``, 1000 as in the paper) plus every judged positive
M_C missed, appended as the paper does. All of them are scored at once, as inner products of the query
vector with their stored vectors (ME-BERT: the max over a document's m rows), and the loss compares that
list with the qrels: ListNet, KL(softmax(y / tau_y) || softmax(s / tau_s)) (graded qrels give graded
targets), or the pair-wise max-margin loss of the paper's ablation. The corpus is never read or
re-encoded: document vectors come memory-mapped from the index (flat or flat-fp16, read back exactly;
``--vectors`` for others) and candidates are int32. The trained dir is a model of the base family that
searches the same index (single-stage) or reranks any run (``python -m pyserini_dense_ext.rerank``).

Dev: the dev queries' top ``--eval-depth`` candidates of ``--eval-candidates`` (default: M_C), no
positives added, reranked by the model as it is: what the paper validates on (``--dev-ranking search``
ranks the whole index instead).

Defaults: batch 32 queries (the paper's), 10 epochs, AdamW with 10% warm-up and linear decay, the dev
split evaluated every 20 steps and its best step kept; the learning rate (1e-4) and the temperatures
(tau_s 0.05, tau_y 0.1) were chosen on the dev split of SciFact's training queries (docs/coder.md). tau_s
matters for unit-length vectors: cosines lie in [-1, 1], whose softmax over 1000 candidates is nearly
flat; tau_y = 0.5 put most target mass on the ~1000 unjudged candidates and training only hurt.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...encoders import FAMILIES, DenseModel, DenseQueryEncoder, backend_for, load_model
from ...index import DOCID_FILE
from ...index.vectors import DocVectors, open_doc_vectors
from ...io import InputError, read_run
from ...io.qrels import Qrels
from ...io.runs import Run
from ...rerank import Reranker, candidate_scores, docids_to_ids
from ...search.dense import adapt_query_encoder
from ...search.index_config import query_encoder_settings
from ..args import ENCODER_FIELDS, arg
from ..data import judged_queries, positives, sha256_file
from ..evaluation import rank_with_index
from ..listwise import LOSSES, listnet_loss, max_margin_loss
from ..recipe import Recipe, epoch_rng


DEV_QRELS = "dev_qrels.tsv"
DEV_RANKINGS = ("rerank", "search")


@dataclass
class CoderArgs:
    """coder: CODER's own options"""

    index: str | None = arg(None, "dense FAISS index dir built from the base model's document side (required); "
                                  "its vectors stay fixed", metavar="DIR")
    family: str | None = arg(None, f"family of --model when its dir has no dense_ext.json: {', '.join(FAMILIES)}")
    loss: str = arg("listnet", f"list-wise loss: {' or '.join(LOSSES)} (the paper's ablation)")
    tau_y: float = arg(0.1, "ListNet target temperature: softmax(grade / tau_y) over the candidates")
    tau_s: float = arg(0.05, "score temperature: softmax(score / tau_s) (max-margin: scores / tau_s)")
    margin: float = arg(1.0, "max-margin loss: the margin, on score / tau_s")
    vectors: str | None = arg(None, "document vectors as .npy (rows in the index's row order): needed for PQ and "
                                    "HNSW indexes, whose stored vectors are approximate", metavar="NPY")
    vectors_cache: str | None = arg(None, "where vectors read back from a flat index are kept (default: the index "
                                          "dir)", metavar="DIR")
    dev_ranking: str = arg("rerank", "how dev queries are ranked: rerank (the top --eval-depth of "
                                     "--eval-candidates, as the paper validates) or search (the whole index, as the "
                                     "model will be used single-stage)")

    def validate(self) -> None:
        if self.index is None:
            raise ValueError("--index: is required (the dense index of the base model)")
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"--family: choose from {sorted(FAMILIES)}, got {self.family!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss: choose from {LOSSES}, got {self.loss!r}")
        if self.dev_ranking not in DEV_RANKINGS:
            raise ValueError(f"--dev-ranking: choose from {DEV_RANKINGS}, got {self.dev_ranking!r}")
        for name in ("tau_y", "tau_s", "margin"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be positive, got {getattr(self, name)!r}")


@dataclass
class Lists:
    """Training lists: ``ids`` int32 ``(q, W)``, the top N of M_C then the positives it missed, -1 padded;
    ``grades`` float32 ``(q, W)``, each candidate's qrels grade (0 unjudged, negative grades or padding)."""

    qids: list[str]
    ids: np.ndarray
    grades: np.ndarray
    missed: int  # judged positives outside M_C's top N, appended

    @classmethod
    def build(cls, run: Run, qrels: Qrels, doc_index: dict[str, int], depth: int, source: str) -> "Lists":
        qids = [q for q in qrels if positives(qrels[q])]
        lacking = [q for q in qids if not run.get(q)]
        if lacking:
            raise InputError(source, f"has no candidates for {len(lacking)} training queries, e.g. {lacking[:3]}",
                             field="qid")
        top = docids_to_ids([[d for d, _ in run[q]] for q in qids], doc_index, depth)
        added = []
        for qid, row in zip(qids, top):
            present = set(row.tolist())
            added.append([doc_index[d] for d in sorted(positives(qrels[qid])) if doc_index[d] not in present])
        ids = np.full((len(qids), top.shape[1] + max(map(len, added), default=0)), -1, dtype=np.int32)
        ids[:, :top.shape[1]] = top
        grades = np.zeros(ids.shape, dtype=np.float32)
        for i, (qid, extra) in enumerate(zip(qids, added)):
            ids[i, top.shape[1]:top.shape[1] + len(extra)] = extra
            for docid, grade in qrels[qid].items():
                if grade > 0:
                    grades[i, ids[i] == doc_index[docid]] = grade
        return cls(qids, ids, grades, sum(map(len, added)))


class CoderRecipe(Recipe):
    name = "coder"
    summary = "CODER: list-wise fine-tuning of the query encoder against an index's fixed document vectors"
    example = ("python -m pyserini_dense_ext.train coder --model MODEL_DIR --index indexes/scifact-minilm \\\n"
               "    --data data/scifact --negatives runs/minilm.train.trec --output models/coder-minilm")
    Args = CoderArgs
    defaults = dict(negative_depth=1000, eval_depth=1000, batch_size=32, learning_rate=1e-4, epochs=10,
                    warmup_ratio=0.1, eval_steps=20, dev_fraction=0.2)

    model: DenseModel
    vectors: DocVectors

    def prepare(self) -> None:
        args, options = self.args, self.options
        if not args.negatives:
            raise ValueError("--negatives: is required: the first-stage run M_C whose top --negative-depth hits per "
                             "query are CODER's candidates")
        if backend_for(args.model).name != "torch":
            raise InputError(args.model, "is not a torch model dir (an ONNX export?): CODER trains the torch model "
                                         "and exports it afterwards")
        self.vectors = open_doc_vectors(options.index, options.vectors, options.vectors_cache, not args.quiet)
        index_dir = Path(options.index)
        # As in search: flags, then the model dir's own dense_ext.json, then the encoder config the index recorded.
        family, settings = query_encoder_settings(self.vectors.meta, index_dir, args.model, options.family,
                                                  {name: getattr(args, name) for name in ENCODER_FIELDS
                                                   if getattr(args, name) is not None})
        self.model = load_model(args.model, family=family, device=str(self.device), **settings)
        adapt_query_encoder(self.vectors.meta, index_dir, self.vectors.dim, DenseQueryEncoder(model=self.model))
        for flag in ("negative_depth", "eval_depth"):
            if getattr(args, flag) > self.vectors.num_docs:
                raise InputError(index_dir / DOCID_FILE, f"--{flag.replace('_', '-')} {getattr(args, flag)} exceeds "
                                                         f"the {self.vectors.num_docs} documents of the index",
                                 field=flag)
        doc_index = self.vectors.doc_index
        in_index = f"the dense index ({index_dir / DOCID_FILE})"
        self.queries, train, self._dev, self.files = judged_queries(args, doc_index, in_index)
        runs = {path: read_run(path, docids=doc_index, docid_source=in_index)
                for path in dict.fromkeys(filter(None, (args.negatives, args.eval_candidates)))}
        self.lists = Lists.build(runs[args.negatives], train, doc_index, args.negative_depth, args.negatives)
        self.files["candidates"] = args.negatives
        eval_source = args.eval_candidates or args.negatives
        self.dev_candidates = runs[eval_source]
        lacking = [q for q in self._dev if not self.dev_candidates.get(q)]
        if lacking:
            raise InputError(eval_source, f"has no hits for {len(lacking)} dev queries, e.g. {lacking[:3]}; give "
                                          "--eval-candidates a run over the dev queries", field="qid")

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def batches(self, epoch: int) -> list[np.ndarray]:
        """Rows of the training lists, ``--batch-size`` queries each, in an order fixed by (seed, epoch)."""
        order = epoch_rng(self.args.seed, epoch).permutation(len(self.lists.qids))
        return [order[i:i + self.args.batch_size] for i in range(0, len(order), self.args.batch_size)]

    def loss(self, rows: np.ndarray) -> torch.Tensor:
        lists, options, device = self.lists, self.options, self.model.device
        queries = self.model.embed([self.queries[lists.qids[r]] for r in rows], "query")
        ids = lists.ids[rows]
        docs = torch.from_numpy(self.vectors.gather(ids)).to(device)
        valid = torch.from_numpy(ids >= 0).to(device)
        grades = torch.from_numpy(lists.grades[rows]).to(device)
        scores = candidate_scores(queries.float(), docs, valid)
        if options.loss == "listnet":
            return listnet_loss(scores, grades, valid, options.tau_y, options.tau_s)
        return max_margin_loss(scores, grades, valid, options.margin, options.tau_s)

    @property
    def dev_qrels(self) -> Qrels:
        return self._dev

    def dev_run(self) -> Run:
        queries = {q: self.queries[q] for q in self._dev}
        if self.options.dev_ranking == "search":
            return rank_with_index(self.model, queries, self.options.index, self.args.eval_batch_size)
        reranker = Reranker(self.vectors, self.model, batch_size=self.args.eval_batch_size)
        return reranker.rerank_run(queries, self.dev_candidates, self.args.eval_depth, progress=False)

    def save(self, out_dir: Path) -> None:
        """The model dir, plus ``dev_qrels.tsv`` when the dev queries were held out here: the queries this model
        never trained on, for tuning anything downstream of it (a hybrid's weight, say) without leakage."""
        self.model.save(out_dir)
        if self._dev and not self.args.dev_qrels:
            (out_dir / DEV_QRELS).write_text("query-id\tcorpus-id\tscore\n" + "".join(
                f"{q}\t{d}\t{g}\n" for q, judged in self._dev.items() for d, g in judged.items()), encoding="utf-8")

    def provenance(self) -> dict[str, Any]:
        model_dir = Path(self.args.model)
        weights = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
        return {"base_model": {"path": str(model_dir), "weights": {p.name: sha256_file(p) for p in weights}},
                "encoder": self.model.config.to_dict(),
                "index": {"path": self.options.index, "fingerprint": self.vectors.fingerprint,
                          "documents": self.vectors.num_docs, "rows_per_document": self.vectors.rows_per_doc},
                "files": {role: {"path": path, "sha256": sha256_file(path)} for role, path in self.files.items()},
                "candidates": {"depth": self.args.negative_depth, "train_queries": len(self.lists.qids),
                               "missed_positives_added": self.lists.missed},
                "dev_queries": len(self._dev),
                "loss": {"name": self.options.loss, "tau_y": self.options.tau_y, "tau_s": self.options.tau_s,
                         **({"margin": self.options.margin} if self.options.loss == "max-margin" else {})},
                "document_side": "the index's vectors, unchanged (only the query encoder is trained)"}


RECIPE = CoderRecipe
