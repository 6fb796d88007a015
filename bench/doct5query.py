"""docT5query without a real checkpoint: generation speed, expanded-index size and BM25 on an expansion file.

No doc2query T5 is available on this machine (no network), so the models here are random T5s
built by this script under ``bench/output/doct5query/`` with a word-level tokenizer over
SciFact's most frequent words (32,000 for the speed models, T5's own vocabulary size; a real T5's
SentencePiece gives ~1.3 tokens per word, so real inputs are somewhat longer). Two shapes:

- ``tiny``: 1 layer, d_model 16 (the test model's shape, with SciFact's vocabulary);
- ``small``: T5-small's shape (6+6 layers, d_model 512, d_ff 2048, 8 heads, ~60M parameters).

1. Speed, documents/s on this machine's cores: ``QueryGenerator.predict`` (our per-document
   Gumbel-max sampler under greedy decoding) against Hugging Face's own sampler
   (``generate(do_sample=True, top_k=10, num_return_sequences=N)``) on the same 64 SciFact
   documents, same batches, in the same run; the models' output layer is left at its random scale,
   where one token wins every step and no sequence ends early, so every query is the full 64 tokens
   on both sides (a real model stops after ~10-20: this is the slow end).
2. The whole corpus expanded with ``python -m pyserini_dense_ext.expand`` and the tiny model (output
   layer scaled down, so it samples many different words: random text, not queries). To fit 2
   cores, this model knows only the 4,096 most frequent words (``--expand-vocab``) and its queries
   stop at 16 tokens (``--expand-tokens``, about a real predicted query's length): 40 x 16 words
   appended per document at most, the size of real docT5query expansions.
3. BM25 indexes with the first 0 / 10 / 40 predictions appended (``index.lucene --expansions
   --copies``): size, and SciFact test nDCG@10 / R@100. Random predictions are noise, so this
   measures what appending costs, not what docT5query gains.

    python bench/doct5query.py [--docs 16] [--num-samples 40] [--expand-vocab 4096] [--expand-tokens 16]
"""
from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

from common import OUTPUT, default_data, machine, set_threads, table, write_json

import pyserini_dense_ext  # noqa: F401

HERE = OUTPUT / "doct5query"
SHAPES = {"tiny": dict(d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
          "small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8)}


def make_model(path: Path, corpus: Path, shape: str, scale: float, vocab_words: int = 32000) -> Path:
    """A random T5 of ``shape`` with a word-level tokenizer over the corpus's ``vocab_words`` most frequent words
    (seeded: the same dir contents every time)."""
    if (path / "config.json").is_file():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    from pyserini_dense_ext.io.corpus import read_corpus

    counts = collections.Counter(w for d in read_corpus(corpus) for w in d.contents.lower().split())
    words = [w for w, _ in counts.most_common(vocab_words)]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(["<pad>", "</s>", "<unk>", *words]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocab), tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1, **SHAPES[shape])
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    model.save_pretrained(path)
    return path


def speed(model_dir: Path, docs, num_samples: int, batch_size: int) -> dict[str, float]:
    """Documents/s of our sampler and of Hugging Face's, same inputs and batches, interleaved per batch."""
    import torch

    from pyserini_dense_ext.expand import QueryGenerator, Sampling

    generator = QueryGenerator(model_dir, Sampling(num_samples=num_samples), "cpu", batch_size)
    tokenizer, model = generator.tokenizer, generator.model
    ours = hf = 0.0
    lengths = []
    for start in range(0, len(docs), batch_size):
        batch = docs[start:start + batch_size]
        t = time.perf_counter()
        generator.predict(batch)
        ours += time.perf_counter() - t
        inputs = tokenizer([d.contents for d in batch], max_length=512, truncation=True, padding=True,
                           return_tensors="pt")
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=True, top_k=10, num_return_sequences=num_samples,
                                 max_new_tokens=64)
        hf += time.perf_counter() - t
        lengths.append(out.shape[1] - 1)
    return {"ours_docs_per_s": len(docs) / ours, "hf_docs_per_s": len(docs) / hf, "ours_vs_hf": hf / ours,
            "tokens_per_query": sum(lengths) / len(lengths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=default_data(), help="SciFact dir (default: ../shared/data/scifact)")
    parser.add_argument("--docs", type=int, default=16, help="documents timed per model (default 16)")
    parser.add_argument("--num-samples", type=int, default=40, help="queries per document (default 40)")
    parser.add_argument("--batch-size", type=int, default=8, help="documents per generate call (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--expand-vocab", type=int, default=4096, help="words the expanding model knows (4096)")
    parser.add_argument("--expand-tokens", type=int, default=16, help="most tokens per expanded query (16)")
    args = parser.parse_args()
    if not args.data:
        parser.error("--data: SciFact not found")
    set_threads(args.threads)

    from pyserini_dense_ext.eval.metrics import evaluate
    from pyserini_dense_ext.expand.__main__ import main as expand
    from pyserini_dense_ext.index.lucene import expansion_record, lucene_reuse_problems, main as lucene
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint
    from pyserini_dense_ext.io import read_qrels, read_topics, write_run
    from pyserini_dense_ext.io.corpus import read_corpus

    data = Path(args.data)
    corpus = data / "corpus.jsonl"
    docs = read_corpus(corpus)
    results: dict = {"speed": {}, "bm25": {}}
    rows = []
    for shape in ("tiny", "small"):
        model = make_model(HERE / f"{shape}-speed", corpus, shape, scale=1.0)
        r = speed(model, docs[:args.docs], args.num_samples, args.batch_size)
        results["speed"][shape] = r
        rows.append([shape, f"{r['ours_docs_per_s']:.2f}", f"{r['hf_docs_per_s']:.2f}", f"{r['ours_vs_hf']:.2f}x",
                     f"{r['tokens_per_query']:.0f}"])
        print(rows[-1], flush=True)
    print(table(rows, ["model", "ours docs/s", "HF sampling docs/s", "ours vs HF", "tokens/query"]))

    # named by every setting that shapes it (the model is seeded), so an existing file is this one
    expansions = HERE / f"scifact-tiny{args.expand_vocab}-n{args.num_samples}-t{args.expand_tokens}.jsonl"
    if not expansions.exists():
        model = make_model(HERE / f"tiny-words{args.expand_vocab}", corpus, "tiny", 0.05, args.expand_vocab)
        start = time.perf_counter()
        expand(["--corpus", str(corpus), "--model", str(model), "--output", str(expansions), "--num-samples",
                str(args.num_samples), "--max-new-tokens", str(args.expand_tokens), "--batch-size",
                str(args.batch_size)])
        results["expand_seconds"] = round(time.perf_counter() - start, 1)
        results["expand_docs_per_s"] = round(len(docs) / results["expand_seconds"], 2)
    rows = [json.loads(line) for line in expansions.read_text().splitlines()]
    words = [len(q.split()) for r in rows for q in r["predicted_queries"]]
    results["words_per_query"] = sum(words) / len(words)

    qrels = read_qrels(data / "qrels" / "test.tsv")
    topics = read_topics(data / "queries.jsonl", set(qrels))
    table_rows = []
    for copies in (0, 10, 40):
        index = HERE / f"scifact-bm25-d2q{copies}"
        extra = ["--expansions", str(expansions), "--copies", str(copies)] if copies else []
        wanted = expansion_record([expansions], "jsonl", copies) if copies else None
        if not index.exists() or lucene_reuse_problems(index, docs_fingerprint(docs), expansions=wanted):
            lucene(["--corpus", str(corpus), "--index", str(index), "--overwrite", *extra])
        run = bm25_run(index, topics)
        write_run(HERE / f"bm25-d2q{copies}.trec", run, tag=f"bm25-d2q{copies}")
        scores = evaluate(run, qrels, ("ndcg@10", "recall@100"))
        size = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
        results["bm25"][copies] = {**scores, "index_bytes": size}
        table_rows.append([copies, f"{scores['ndcg@10']:.4f}", f"{scores['recall@100']:.4f}",
                           f"{size / 2 ** 20:.1f}"])
    print(table(table_rows, ["predictions appended", "nDCG@10", "R@100", "index MiB"]))
    print(f"wrote {write_json('doct5query.json', {**results, 'machine': machine()})}")


def bm25_run(index: Path, topics: dict[str, str]) -> dict:
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index))
    searcher.set_bm25(0.9, 0.4)
    hits = searcher.batch_search(list(topics.values()), list(topics), k=1000, threads=2)
    return {q: [(h.docid, h.score) for h in hits[q]] for q in topics}


if __name__ == "__main__":
    main()
