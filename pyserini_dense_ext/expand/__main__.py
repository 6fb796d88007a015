"""``python -m pyserini_dense_ext.expand``: docTTTTTquery predicted queries for every document of a corpus.

Writes ``{"id": ..., "predicted_queries": [...]}`` per line; ``python -m
pyserini_dense_ext.index.lucene --expansions FILE --copies N`` indexes the expanded text.
"""
from __future__ import annotations

import argparse

import pyserini_dense_ext  # noqa: F401  (offline set-up before transformers loads)

from ..cli import run_cli
from ..index.distributed import add_ray_options, ray_options
from ..io.corpus import EMPTY_POLICIES
from . import Sampling

EXAMPLE = """example (castorini/doc2query-t5-base-msmarco downloaded to models/doc2query-t5-base-msmarco):
  python -m pyserini_dense_ext.expand --corpus ../shared/data/scifact/corpus.jsonl \\
    --model models/doc2query-t5-base-msmarco --output runs/scifact.d2q.jsonl --device cuda --batch-size 16
  python -m pyserini_dense_ext.index.lucene --corpus ../shared/data/scifact/corpus.jsonl \\
    --expansions runs/scifact.d2q.jsonl --copies 40 --index indexes/scifact-bm25-d2q

A killed run resumes when re-run with the same arguments; --shard-id/--shard-num write one file per
shard (index them together: --expansions shard0.jsonl shard1.jsonl ...); --ray spreads chunks over Ray workers.
"""


def build_parser() -> argparse.ArgumentParser:
    d = Sampling()
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.expand", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Generate docTTTTTquery predicted queries for every document with a local "
                                            "sequence-to-sequence checkpoint (top-k sampling, docTTTTTquery's "
                                            "defaults), reproducibly from --seed, as JSONL.")
    p.add_argument("--corpus", required=True, help="a .jsonl file or a dir of them ({id,contents} or BEIR "
                                                   "{_id,title,text}; the model reads title + text)")
    p.add_argument("--empty", choices=EMPTY_POLICIES, default="error", help="what an empty document is")
    p.add_argument("--model", required=True, metavar="DIR", help="local AutoModelForSeq2SeqLM dir (a doc2query T5)")
    p.add_argument("--output", required=True, help="JSONL file to write (atomically, when every chunk is done)")
    p.add_argument("--num-samples", type=int, default=d.num_samples,
                   help=f"predicted queries per document (default {d.num_samples})")
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"top-k sampling (default {d.top_k})")
    p.add_argument("--temperature", type=float, default=d.temperature,
                   help=f"sampling temperature (default {d.temperature})")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                   help=f"longest query in tokens (default {d.max_new_tokens})")
    p.add_argument("--max-input-length", type=int, default=d.max_input_length,
                   help=f"documents are truncated to this many tokens (default {d.max_input_length})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="each document's samples are drawn from a stream seeded by this and its docid: the same "
                        "seed gives the same queries, whatever the batch size, shards or resumes (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="documents per generate call, each with --num-samples sequences (default 8)")
    p.add_argument("--chunk-size", type=int, default=256, help="documents per durable chunk (resume unit)")
    p.add_argument("--shard-id", type=int, default=0, help="0-based shard to expand (default 0)")
    p.add_argument("--shard-num", type=int, default=1, help="number of shards (default 1)")
    add_ray_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..index.encode import shard_slice
    from ..io.corpus import CorpusStream
    from ..io.errors import InputError
    from . import GeneratorLoader, QueryGenerator, expand_corpus

    sampling = Sampling(args.num_samples, args.top_k, args.temperature, args.max_new_tokens, args.max_input_length,
                        args.seed)
    ray = ray_options(args)
    docs = CorpusStream(args.corpus, empty=args.empty, progress=not args.quiet)  # read chunk by chunk
    shard = shard_slice(docs.total, args.shard_id, args.shard_num)
    docs.shard(shard.start, shard.stop)
    if not len(docs):
        raise InputError(args.corpus, f"shard {args.shard_id} of {args.shard_num} is empty: the corpus has only "
                                      f"{docs.total} documents", field="shard-id")
    # With --ray the workers generate on --device; here the model is only checked.
    generator = QueryGenerator(args.model, sampling, "cpu" if ray else args.device, args.batch_size)
    job_id = {"model": str(args.model), **sampling.to_dict()}
    loader = GeneratorLoader(str(args.model), sampling, args.batch_size)
    path = expand_corpus(docs, generator, args.output, job_id, args.chunk_size, args.overwrite,
                         progress=not args.quiet, ray=ray, ray_loader=loader if ray else None)
    print(f"wrote {path} ({len(docs)} documents, {sampling.num_samples} queries each)")
    return 0


if __name__ == "__main__":
    run_cli(main)
