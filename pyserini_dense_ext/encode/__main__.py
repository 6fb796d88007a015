"""``python -m pyserini_dense_ext.encode input ... encoder ... output ...``: corpus to FAISS index dir.

Mirrors ``python -m pyserini.encode``'s groups, but writes the index dir directly, resumes after
a crash, sorts batches by length and validates the whole corpus before encoding anything (a
first pass that keeps 8 bytes per document), then reads and encodes it chunk by chunk, so memory
does not grow with the corpus. A second run into the same output fails at once, naming the first.
"""
from __future__ import annotations

import argparse
import sys

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..cli import add_encoder_options, encoder_overrides, parse_groups, run_cli
from ..index import INDEX_TYPES
from ..index.distributed import add_ray_options, ray_options
from ..index.faiss_dir import DEFAULT_EF_SEARCH
from ..io.corpus import EMPTY_POLICIES

GROUPS = ("input", "encoder", "output")
EXAMPLE = """example:
  python -m pyserini_dense_ext.encode \\
    input   --corpus ../shared/data/scifact/corpus.jsonl \\
    encoder --encoder MODEL_DIR --family repbert --pooling mean --l2-norm --doc-segment-id 0 \\
    output  --index indexes/scifact-minilm --index-type flat

long documents as passages of 64 tokens sharing 32, the title before each (rows docid#k; search them with
python -m pyserini_dense_ext.search ... --max-passage):
  python -m pyserini_dense_ext.encode \\
    input   --corpus ../shared/data/scifact/corpus.jsonl --passages 64 32 --title-prefix \\
    encoder --encoder MODEL_DIR --family repbert --pooling mean --l2-norm --doc-segment-id 0 \\
    output  --index indexes/scifact-minilm-maxp
"""


def parsers() -> dict[str, argparse.ArgumentParser]:
    top = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.encode",
                                  description="Encode a corpus (Pyserini JsonCollection or BEIR corpus.jsonl) "
                                              "into a Pyserini-compatible FAISS index dir. Arguments come in three "
                                              "groups: input, encoder, output (run a group with --help).",
                                  epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("groups", nargs="*", metavar="{input,encoder,output}", help="argument groups, in any order")
    inp = argparse.ArgumentParser(prog="... input", description="Where the documents come from.")
    inp.add_argument("--corpus", required=True, help="a .jsonl file or a dir of them ({id,contents} or BEIR "
                                                     "{_id,title,text})")
    inp.add_argument("--empty", choices=EMPTY_POLICIES, default="error",
                     help="an empty document is an error (default), is skipped, or is kept and encoded as is")
    inp.add_argument("--shard-id", type=int, default=0, help="0-based shard to encode (default 0)")
    inp.add_argument("--shard-num", type=int, default=1, help="number of shards (default 1)")
    inp.add_argument("--passages", type=int, nargs=2, metavar=("LEN", "STRIDE"), default=None,
                     help="index each document as passages docid#k of whole words holding at most LEN of the "
                          "encoder's tokens, consecutive passages sharing at most STRIDE tokens (shards split "
                          "documents, never a document's passages)")
    inp.add_argument("--title-prefix", action="store_true",
                     help="with --passages: put the title before every passage (else it starts passage 0)")
    enc = argparse.ArgumentParser(prog="... encoder", description="Which model and how to use it.")
    add_encoder_options(enc)
    add_ray_options(enc)
    out = argparse.ArgumentParser(prog="... output", description="Where the index dir goes.")
    out.add_argument("--index", "--embeddings", dest="index", required=True, help="output index dir")
    out.add_argument("--index-type", choices=INDEX_TYPES, default="flat",
                     help="flat IP (exact), flat-fp16 (exact scan over half-size fp16 rows), hnsw or pq")
    out.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree")
    out.add_argument("--ef-construction", type=int, default=200, help="HNSW build beam width")
    out.add_argument("--ef-search", type=int, default=DEFAULT_EF_SEARCH,
                     help=f"HNSW search beam width stored with the index (default {DEFAULT_EF_SEARCH}; searches use "
                          "at least the number of rows asked for)")
    out.add_argument("--pq-m", type=int, default=None, help="PQ sub-quantisers (default: dim/4)")
    out.add_argument("--chunk-size", type=int, default=1024, help="documents per durable chunk (resume unit)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing index dir")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    return {"": top, "input": inp, "encoder": enc, "output": out}


def main(argv: list[str] | None = None) -> int:
    args = parse_groups(parsers(), sys.argv[1:] if argv is None else argv, GROUPS)
    return run(args["input"], args["encoder"], args["output"])


def run(inp: argparse.Namespace, enc: argparse.Namespace, out: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io.lock import output_lock

    with output_lock(out.index):  # from the start: a second run fails before reading anything
        if Path(out.index).exists() and not out.overwrite:  # before the corpus is read or the model loaded
            raise FileExistsError(f"{out.index} already exists; pass --overwrite to replace it")
        return _encode(inp, enc, out)


def _encode(inp: argparse.Namespace, enc: argparse.Namespace, out: argparse.Namespace) -> int:
    from ..encoders import load_document_encoder
    from ..index.encode import DocumentEncoderLoader, encode_corpus, shard_slice
    from ..index.passages import PassageSpec, split_for_encoder
    from ..io.corpus import CorpusStream, DocSource
    from ..io.errors import InputError
    from ..io.fingerprint import encoder_fingerprint

    if inp.title_prefix and inp.passages is None:
        raise ValueError("--title-prefix needs --passages LEN STRIDE")
    # a bad window (stride >= LEN, LEN past the model) is refused here too, before any reading
    spec = None if inp.passages is None else PassageSpec(*inp.passages, title_prefix=inp.title_prefix,
                                                         tokens=str(enc.encoder))
    docs = CorpusStream(inp.corpus, empty=inp.empty, progress=not out.quiet,
                        separator=spec.separator if spec else None)
    shard = shard_slice(docs.total, inp.shard_id, inp.shard_num)
    docs.shard(shard.start, shard.stop)
    if not len(docs):
        raise InputError(inp.corpus, f"shard {inp.shard_id} of {inp.shard_num} is empty: the corpus has only "
                                     f"{docs.total} documents", field="shard-id")
    ray = ray_options(enc)
    # With --ray the workers encode on --device; here the model is only checked and its config read.
    encoder = load_document_encoder(enc.encoder, family=enc.family, device="cpu" if ray else enc.device,
                                    batch_size=enc.batch_size, **encoder_overrides(enc))
    model = encoder.model
    encoder_id = encoder_fingerprint(enc.encoder, model.config.to_dict())
    index_options = {"hnsw": dict(hnsw_m=out.hnsw_m, ef_construction=out.ef_construction, ef_search=out.ef_search),
                     "pq": dict(pq_m=out.pq_m)}.get(out.index_type, {})
    # the index's corpus is the documents before the split (a hybrid's BM25 side matches it)
    corpus = None if spec is None else docs.corpus_fingerprint()
    # passages are streamed, split as the documents are read
    rows: DocSource = docs if spec is None else split_for_encoder(docs, spec, model, progress=not out.quiet)
    loader = DocumentEncoderLoader(str(enc.encoder), enc.family, encoder_overrides(enc), enc.batch_size)
    path = encode_corpus(rows, model, out.index, encoder_id, out.index_type, out.chunk_size, enc.batch_size,
                         out.overwrite, progress=not out.quiet, shard_id=inp.shard_id, shard_num=inp.shard_num,
                         ray=ray, ray_loader=loader if ray else None, passages=spec, corpus=corpus,
                         **index_options)
    what = f"{len(docs)} documents" + (f" as {len(rows)} passages" if spec else "")
    print(f"wrote {path} ({what}, {model.dim} dims)")
    return 0


if __name__ == "__main__":
    run_cli(main)
