"""Full documents vs passages with MaxP on SciFact test: nDCG@10, R@100 and index size, dense, BM25 and hybrid.

SciFact abstracts run to a few hundred tokens, so a 64-token window with a 32-token overlap splits
almost every one of them into several passages. The full-document indexes are the benches' shared
ones (``common.minilm_index``, ``common.bm25_index``); the passage indexes are built with the
package's commands (``encode``, ``index.lucene``) under ``bench/output/passages/``; each is reused
on a re-run only while its recorded corpus, model and split match. Searches (``search``,
``search.hybrid``) run every time:

    python bench/passages_scifact.py                      # window 64, stride 32
    python bench/passages_scifact.py --window 128 --stride 64

Dense: all-MiniLM-L6-v2 with the MiniLM preset (full documents truncated at 256 tokens). BM25:
Pyserini's defaults (k1 0.9, b 0.4), contents title + text. Passages: whole words, at most
``--window`` MiniLM tokens, ``--title-prefix``, the same passages on both sides (``index.lucene
--tokenizer``). MaxP as Pyserini's MS MARCO document runs: 10,000 passages searched, the best
1,000 documents kept (``--hits 10000 --max-passage --max-passage-hits 1000``). Hybrid: RRF (k 60)
of the two sides, each side 1,000 documents (full) or 10,000 passages folded into documents.
Nothing is tuned here: every setting is a default or the issue's example window.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import (OUTPUT, add_common_args, bm25_index, check_common_args, machine, minilm_encoder_id, minilm_index,
                    read_docs, set_threads, table, write_json)

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.encoders.presets import MINILM
from pyserini_dense_ext.index import reuse_problems
from pyserini_dense_ext.index.lucene import lucene_reuse_problems
from pyserini_dense_ext.index.passages import PassageSpec
from pyserini_dense_ext.io.fingerprint import docs_fingerprint

METRICS = ("ndcg@10", "recall@100")


def minilm_flags(model: str) -> list[str]:
    return ["--encoder", model, "--family", MINILM["family"], "--pooling", MINILM["pooling"], "--l2-norm",
            "--query-segment-id", "0", "--doc-segment-id", "0", "--query-max-length", "256", "--doc-max-length", "256"]


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def timed(step: str, times: dict[str, float], fn, *args) -> None:
    start = time.perf_counter()
    fn(*args)
    times[step] = round(time.perf_counter() - start, 1)
    print(f"{step}: {times[step]} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--window", type=int, default=64, help="passage length in MiniLM tokens (default 64)")
    parser.add_argument("--stride", type=int, default=32, help="tokens two passages share (default 32)")
    args = parser.parse_args()
    check_common_args(parser, args)
    set_threads(args.threads)

    from pyserini_dense_ext.encode.__main__ import main as encode
    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.index.lucene import main as lucene
    from pyserini_dense_ext.io import read_qrels, read_run
    from pyserini_dense_ext.search.__main__ import main as search
    from pyserini_dense_ext.search.hybrid.__main__ import main as hybrid

    data, model = Path(args.data), args.model
    corpus, topics, qrels_path = data / "corpus.jsonl", data / "queries.jsonl", data / "qrels" / "test.tsv"
    tag = f"p{args.window}s{args.stride}"
    out = OUTPUT / "passages"
    stats = length_stats(corpus, model, args.window)
    print(stats, flush=True)
    times: dict[str, float] = {}
    dirs = {"dense": minilm_index(str(data), model), "bm25": bm25_index(str(data)),
            f"dense-{tag}": out / f"scifact-minilm-{tag}", f"bm25-{tag}": out / f"scifact-bm25-{tag}"}
    split = ["--passages", str(args.window), str(args.stride), "--title-prefix"]
    dense_spec = PassageSpec(args.window, args.stride, title_prefix=True, tokens=model).to_dict()
    docs_key = docs_fingerprint(read_docs(str(data)))
    if reuse_problems(dirs[f"dense-{tag}"], docs_key, minilm_encoder_id(model), "flat", passages=dense_spec) \
            if dirs[f"dense-{tag}"].exists() else True:
        timed(f"build dense-{tag}", times, encode, ["input", "--corpus", str(corpus), *split, "encoder",
                                                      *minilm_flags(model), "output", "--index",
                                                      str(dirs[f"dense-{tag}"]), "--overwrite"])
    if lucene_reuse_problems(dirs[f"bm25-{tag}"], docs_key, passages=dense_spec) \
            if dirs[f"bm25-{tag}"].exists() else True:
        timed(f"build bm25-{tag}", times, lucene, ["--corpus", str(corpus), "--index", str(dirs[f"bm25-{tag}"]),
                                                     *split, "--tokenizer", model, "--overwrite"])

    # Searches are redone on every run (seconds): a run file is never older than the indexes it came from.
    runs = out / "runs"
    maxp = ["--max-passage", "--max-passage-hits", "1000"]
    common = ["--topics", str(topics), "--qids-from", str(qrels_path), "--quiet"]
    searches = {
        "dense": lambda f: search(["--index", str(dirs["dense"]), *minilm_flags(model), *common, "--hits", "1000",
                                   "--output", str(f)]),
        f"dense-{tag}": lambda f: search(["--index", str(dirs[f"dense-{tag}"]), *minilm_flags(model), *common,
                                          "--hits", "10000", *maxp, "--output", str(f)]),
    }
    for name, (sparse_hits, extra) in {"": ("1000", []), f"-{tag}": ("10000", maxp)}.items():
        sides = ["dense", "--index", str(dirs[f"dense{name}"]), *minilm_flags(model),
                 "sparse", "--index", str(dirs[f"bm25{name}"])]
        searches[f"hybrid{name}"] = (lambda f, sides=sides, k0=sparse_hits, extra=extra: hybrid(
            [*sides, "fusion", "--method", "rrf", "--hits", k0, "run", *common, "--output", str(f), "--hits", "1000",
             "--threads", str(args.threads), *extra]))
    for name, fn in searches.items():
        timed(f"search {name}", times, fn, runs / f"{name}.trec")
    bm25_runs(dirs, tag, runs, topics, qrels_path, args.threads)

    qrels = read_qrels(qrels_path)
    rows, results = [], {}
    for name in ("bm25", f"bm25-{tag}", "dense", f"dense-{tag}", "hybrid", f"hybrid-{tag}"):
        scores = evaluate(read_run(runs / f"{name}.trec"), qrels, METRICS)
        index = dirs.get(name)
        results[name] = {**scores, "index_bytes": size(index) if index else None}
        rows.append([name, f"{scores['ndcg@10']:.4f}", f"{scores['recall@100']:.4f}",
                     f"{size(index) / 2 ** 20:.1f}" if index else "-"])
    print(table(rows, ["run (SciFact test)", "nDCG@10", "R@100", "index MiB"]))
    passages = sum(1 for _ in (dirs[f"dense-{tag}"] / "docid").open())
    stats["passages"], stats["passages_per_doc"] = passages, round(passages / stats["documents"], 2)
    print(stats)
    path = write_json(f"passages_scifact_{tag}.json", {"window": args.window, "stride": args.stride, "lengths": stats,
                                                        "results": results, "seconds": times, "machine": machine()})
    print(f"wrote {path}")


def length_stats(corpus: Path, model: str, window: int) -> dict[str, float]:
    """How long SciFact's documents are in MiniLM tokens: text alone (what a window splits with --title-prefix) and
    title + text (what the full-document index truncates at 256 with its 2 special tokens)."""
    import numpy as np
    from transformers import AutoTokenizer

    from pyserini_dense_ext.io.corpus import read_corpus

    docs = read_corpus(corpus)
    tokenizer = AutoTokenizer.from_pretrained(model)

    def lengths(texts: list[str]) -> np.ndarray:
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return np.array([len(x) for x in ids])

    text, contents = lengths([d.text for d in docs]), lengths([d.contents for d in docs])
    return {"documents": len(docs), "text_tokens_median": float(np.median(text)),
            "text_tokens_mean": round(float(text.mean()), 1), "text_longer_than_window": round(float(
                (text > window).mean()), 4), "contents_truncated_at_256": round(float((contents > 254).mean()), 4)}


def bm25_runs(dirs: dict[str, Path], tag: str, runs: Path, topics: Path, qrels_path: Path, threads: int) -> None:
    """BM25 alone, through the hybrid searcher's array BM25 path (identical to LuceneSearcher.batch_search)."""
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_dense_ext.io import read_qrels, read_topics, write_run
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse
    from pyserini_dense_ext.search.maxp import max_passage_run

    queries = read_topics(topics, set(read_qrels(qrels_path)))
    for name, k, fold in (("bm25", 1000, False), (f"bm25-{tag}", 10000, True)):
        path = runs / f"{name}.trec"
        searcher = LuceneSearcher(str(dirs[name]))
        searcher.set_bm25(0.9, 0.4)
        hits = ArraySparse(searcher).hits(list(queries.values()), k, threads)
        run = {q: list(zip(ids.tolist(), scores.tolist())) for q, (ids, scores) in zip(queries, hits)}
        write_run(path, max_passage_run(run, 1000) if fold else run, tag=name)


if __name__ == "__main__":
    main()
