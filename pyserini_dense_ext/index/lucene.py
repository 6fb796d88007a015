"""Build a BM25 Lucene index from our ``Doc`` list, so hybrid search needs no JSON collection on disk.

Pyserini's ``LuceneIndexer`` (Anserini's ``SimpleIndexer``) indexes in-process JSON documents
with Anserini's defaults (Porter stemming, stopwords kept out, positions and doc vectors off);
``contents`` is title + text, Pyserini's BEIR "flat" convention. As with the dense dirs, the
index is written to a temporary sibling and renamed into place, so a reader never opens a
half-written index and an interrupted build leaves the old one intact. A small
``dense_ext_lucene.json`` beside Lucene's files records a fingerprint of the documents, so the
index is reused only for the corpus it was built from (Lucene ignores files it did not write).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..io.atomic import atomic_dir
from ..io.lock import output_lock
from ..io.corpus import Doc
from ..io.errors import InputError
from ..io.fingerprint import docs_fingerprint
from ..progress import progress_bar

META_FILE = "dense_ext_lucene.json"


def build_lucene_index(docs: Sequence[Doc], out_dir: str | Path, threads: int = 2, store_raw: bool = True,
                       batch_size: int = 10_000, progress: bool = True, overwrite: bool = False) -> Path:
    """Index ``docs`` (``id`` + ``contents``) into a new Lucene dir at ``out_dir``; returns its path.

    ``store_raw`` keeps each document's JSON so ``LuceneSearcher.doc(docid).raw()`` works.
    """
    import pyserini_dense_ext  # noqa: F401  (Java settings before the JVM starts)

    from .. import pyserini_compat as compat

    out_dir = Path(out_dir)
    if not docs:
        raise ValueError("no documents to index")
    with output_lock(out_dir), atomic_dir(out_dir, overwrite) as tmp:
        args = ["-index", str(tmp)] + (["-storeRaw"] if store_raw else [])
        indexer = compat.lucene_indexer(str(tmp), args, threads)
        with progress_bar(len(docs), "lucene index", "doc", progress) as bar:
            for start in range(0, len(docs), batch_size):
                chunk = docs[start:start + batch_size]
                indexer.add_batch_raw([json.dumps({"id": d.docid, "contents": d.contents}) for d in chunk])
                bar.update(len(chunk))
        indexer.close()
        meta = {"corpus": docs_fingerprint(docs), "num_docs": len(docs), "store_raw": store_raw,
                "contents": "title + text"}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


def read_lucene_meta(index_dir: str | Path) -> dict[str, Any] | None:
    """What :func:`build_lucene_index` recorded, or None for a Lucene index built elsewhere."""
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("corpus"), str):
        raise InputError(path, "needs a string corpus fingerprint", field="corpus")
    return meta


def lucene_reuse_problems(index_dir: str | Path, corpus: str, store_raw: bool = True) -> list[str]:
    """Why the Lucene index at ``index_dir`` is not the one :func:`build_lucene_index` would build (empty: reuse)."""
    meta = read_lucene_meta(index_dir)
    if meta is None:
        return [f"it has no {META_FILE}, so what it holds is unknown"]
    problems = [] if meta["corpus"] == corpus else ["it holds other documents"]
    if meta.get("store_raw") != store_raw:
        problems.append("it was built with other options (store_raw)")
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..io.corpus import EMPTY_POLICIES, read_corpus

    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.index.lucene",
                                description="Build a Lucene (BM25) index from a BEIR corpus.jsonl or a Pyserini "
                                            "JsonCollection; contents = title + text.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python -m pyserini_dense_ext.index.lucene --corpus "
                                       "../shared/data/scifact/corpus.jsonl --index indexes/scifact-bm25")
    p.add_argument("--corpus", required=True, help="a .jsonl file or a dir of them")
    p.add_argument("--index", required=True, help="Lucene index dir to write (atomically)")
    p.add_argument("--threads", type=int, default=2, help="indexing threads (default 2)")
    p.add_argument("--empty", choices=EMPTY_POLICIES, default="error", help="what an empty document is")
    p.add_argument("--no-store-raw", action="store_true", help="do not keep each document's JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index dir")
    args = p.parse_args(argv)
    out = build_lucene_index(read_corpus(args.corpus, empty=args.empty), args.index, threads=args.threads,
                             store_raw=not args.no_store_raw, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
