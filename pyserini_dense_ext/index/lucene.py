"""Build a BM25 Lucene index from our ``Doc`` list, so hybrid search needs no JSON collection on disk.

Pyserini's ``LuceneIndexer`` (Anserini's ``SimpleIndexer``) indexes in-process JSON documents
with Anserini's defaults (Porter stemming, stopwords kept out, positions and doc vectors off);
``contents`` is title + text, Pyserini's BEIR "flat" convention. As with the dense dirs, the
index is written to a temporary sibling and renamed into place, so a reader never opens a
half-written index and an interrupted build leaves the old one intact.

``dense_ext_lucene.json`` beside Lucene's files (which Lucene ignores) records a fingerprint of the
documents, so the index is reused only for the corpus it was built from, and two variants of what
is indexed:

- docT5query expansion (``--expansions FILE [--copies N]``): each document's text followed by its
  first N predicted queries (:mod:`pyserini_dense_ext.io.expansions`), Anserini's doc2query-T5
  condition; Pyserini's ``LuceneSearcher`` opens the result like any index.
- passages (``--passages LEN STRIDE``, :mod:`.passages`): each document as passages ``docid#k``,
  searched with ``--max-passage`` so documents are ranked by their best passage (MaxP); with
  ``--tokenizer MODEL`` the windows are counted in that model's tokens, giving exactly the
  passages of ``encode ... --passages`` with the same model.

The fingerprint is of the documents before either (as the dense index records it), so a hybrid
can check that both sides index one collection whatever each side made of it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..io.atomic import atomic_dir
from ..io.lock import output_lock
from ..io.corpus import Doc
from ..io.errors import InputError
from ..io.fingerprint import docs_fingerprint
from ..progress import progress_bar
from .passages import PassageSpec, WordTokenCounter

META_FILE = "dense_ext_lucene.json"
EXAMPLE = """examples:
  python -m pyserini_dense_ext.index.lucene --corpus ../shared/data/scifact/corpus.jsonl --index indexes/scifact-bm25
  # docT5query: text + the first 40 predictions of each document (python -m pyserini_dense_ext.expand)
  python -m pyserini_dense_ext.index.lucene --corpus ../shared/data/scifact/corpus.jsonl \\
    --expansions runs/scifact.d2q.jsonl --copies 40 --index indexes/scifact-bm25-d2q
  # passages of 64 words sharing 32 (search with --max-passage), or counted in a model's tokens
  python -m pyserini_dense_ext.index.lucene --corpus ../shared/data/scifact/corpus.jsonl \\
    --passages 64 32 --title-prefix --tokenizer MODEL_DIR --index indexes/scifact-bm25-maxp
"""


@dataclass
class LuceneRecord:
    """What :func:`build_lucene_index` indexed, beyond Lucene's own files."""

    num_docs: int  # Lucene documents: passages when split
    corpus: str | None = None  # docs_fingerprint of the documents before any split or expansion
    store_raw: bool = True
    contents: str = "title + text"
    expansions: dict[str, Any] | None = None  # prediction files (name, sha256), format and copies
    passages: dict[str, Any] | None = None  # PassageSpec of an index of passages docid#k

    def save(self, directory: Path) -> None:
        (directory / META_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")

    @classmethod
    def of(cls, index_dir: str | Path) -> "LuceneRecord | None":
        """The record of an index built here, or None (built by Pyserini or Anserini)."""
        path = Path(index_dir) / META_FILE
        if not path.is_file():
            return None
        try:
            record = cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            raise InputError(path, f"is not a valid record of this index: {e}") from None
        if not (record.corpus is None or isinstance(record.corpus, str)):
            raise InputError(path, "needs a string (or null) corpus fingerprint", field="corpus")
        return record


def expansion_record(files: Sequence[str | Path], fmt: str, copies: int | None) -> dict[str, Any]:
    """Which predictions were appended: each file's name and SHA-256, the format and ``--copies``."""
    out = []
    for path in map(Path, files):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        out.append({"name": path.name, "sha256": h.hexdigest()})
    return {"files": out, "format": fmt, "copies": copies}


def build_lucene_index(docs: Sequence[Doc], out_dir: str | Path, threads: int = 2, store_raw: bool = True,
                       batch_size: int = 10_000, progress: bool = True, overwrite: bool = False,
                       record: LuceneRecord | None = None) -> Path:
    """Index ``docs`` (``id`` + ``contents``) into a new Lucene dir at ``out_dir``; returns its path.

    ``store_raw`` keeps each document's JSON so ``LuceneSearcher.doc(docid).raw()`` works; ``record``
    (from :func:`prepare_docs`) says what the documents are (expanded, passages), written beside the
    index; without one, ``docs`` are the collection as it is.
    """

    import pyserini_dense_ext  # noqa: F401  (Java settings before the JVM starts)

    from .. import pyserini_compat as compat

    out_dir = Path(out_dir)
    if not docs:
        raise ValueError("no documents to index")
    record = dataclasses.replace(record or LuceneRecord(len(docs), corpus=docs_fingerprint(docs)),
                                 num_docs=len(docs), store_raw=store_raw)
    with output_lock(out_dir), atomic_dir(out_dir, overwrite) as tmp:
        args = ["-index", str(tmp)] + (["-storeRaw"] if store_raw else [])
        indexer = compat.lucene_indexer(str(tmp), args, threads)
        with progress_bar(len(docs), "lucene index", "doc", progress) as bar:
            for start in range(0, len(docs), batch_size):
                chunk = docs[start:start + batch_size]
                indexer.add_batch_raw([json.dumps({"id": d.docid, "contents": d.contents}) for d in chunk])
                bar.update(len(chunk))
        indexer.close()
        record.save(tmp)
    return out_dir


def lucene_reuse_problems(index_dir: str | Path, corpus: str, store_raw: bool = True,
                          expansions: dict[str, Any] | None = None,
                          passages: dict[str, Any] | None = None) -> list[str]:
    """Why the Lucene index at ``index_dir`` is not the one :func:`build_lucene_index` would build (empty: reuse).

    ``corpus`` is the documents' fingerprint before any split or expansion; ``expansions`` and
    ``passages`` what :func:`prepare_docs` records for them (None: plain documents).
    """
    record = LuceneRecord.of(index_dir)
    if record is None:
        return [f"it has no {META_FILE}, so what it holds is unknown"]
    problems = []
    if record.corpus != corpus:
        problems.append("it holds other documents" if record.corpus else "it records no corpus fingerprint")
    changed = [name for name, value in (("store_raw", store_raw), ("expansions", expansions), ("passages", passages))
               if getattr(record, name) != value]
    if changed:
        problems.append(f"it was built with other options ({', '.join(changed)})")
    return problems


def prepare_docs(docs: Sequence[Doc], corpus: str | Path, expansions: Sequence[str | Path] = (),
                 expansions_format: str = "jsonl", copies: int | None = None, passages: PassageSpec | None = None,
                 counter: WordTokenCounter | None = None, all_docs: Sequence[Doc] | None = None,
                 progress: bool = True) -> tuple[list[Doc], LuceneRecord]:
    """What to index for ``docs``: split into ``passages`` (windows counted by ``counter``, default one token
    per word), with their predictions appended, and the record saying so.

    The ``lines`` format pairs predictions by position with ``all_docs`` (the collection as read,
    empty documents included), default ``docs``.
    """
    from ..io.expansions import FORMATS, expand_docs, read_predictions_jsonl, read_predictions_lines
    from .passages import count_words, split_corpus

    out = list(docs)
    key_of = None
    if passages is not None:
        out = split_corpus(docs, passages, counter or count_words, progress=progress)
        key_of = {p.docid: p.docid.split(passages.separator, 1)[0] for p in out}
    record = LuceneRecord(num_docs=len(out), corpus=docs_fingerprint(docs),
                          passages=None if passages is None else passages.to_dict())
    if expansions:
        if expansions_format not in FORMATS:
            raise ValueError(f"unknown predictions format {expansions_format!r}; choose from {FORMATS}")
        source = ", ".join(map(str, expansions))
        if expansions_format == "jsonl":
            predictions, where = read_predictions_jsonl(expansions)
        else:
            if copies is not None and copies > len(expansions):
                raise ValueError(f"--copies {copies}, but the released format gives one prediction per file and "
                                 f"{len(expansions)} file(s) were given")
            predictions, where = read_predictions_lines(expansions, all_docs or docs, corpus), None
            kept = {d.docid for d in docs}
            predictions = {d: q for d, q in predictions.items() if d in kept}
        out = expand_docs(out, predictions, copies, source, corpus, where, key_of)
        record.contents = "title + text + newline + predicted queries"
        record.expansions = expansion_record(expansions, expansions_format, copies)
    return out, record


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..io.corpus import EMPTY_POLICIES, read_corpus
    from ..io.expansions import FORMATS
    from .passages import SEPARATOR, tokenizer_counter

    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.index.lucene", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Build a Lucene (BM25) index from a BEIR corpus.jsonl or a Pyserini "
                                            "JsonCollection; contents = title + text, optionally followed by "
                                            "docT5query predictions, optionally split into passages.")
    p.add_argument("--corpus", required=True, help="a .jsonl file or a dir of them")
    p.add_argument("--index", required=True, help="Lucene index dir to write (atomically)")
    p.add_argument("--threads", type=int, default=2, help="indexing threads (default 2)")
    p.add_argument("--empty", choices=EMPTY_POLICIES, default="error", help="what an empty document is")
    p.add_argument("--no-store-raw", action="store_true", help="do not keep each document's JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index dir")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    exp = p.add_argument_group("docT5query expansion")
    exp.add_argument("--expansions", nargs="+", metavar="FILE", default=[],
                     help="predicted queries: JSONL {id, predicted_queries} (python -m pyserini_dense_ext.expand; "
                          "shard files in any order) or, with --expansions-format lines, docTTTTTquery's released "
                          "text files (one line per document in collection order, one file per sample)")
    exp.add_argument("--expansions-format", choices=FORMATS, default="jsonl", help="format of --expansions")
    exp.add_argument("--copies", type=int, default=None, metavar="N",
                     help="append the first N predictions of each document (default: all it has)")
    pas = p.add_argument_group("passages (MaxP)")
    pas.add_argument("--passages", type=int, nargs=2, metavar=("LEN", "STRIDE"), default=None,
                     help="index passages docid#k of whole words, at most LEN tokens each, consecutive ones sharing "
                          "at most STRIDE; search with --max-passage")
    pas.add_argument("--title-prefix", action="store_true", help="put the title before every passage")
    pas.add_argument("--tokenizer", metavar="MODEL_DIR", default=None,
                     help="count LEN and STRIDE in this model's tokens (the dense index's passages), not in words")
    args = p.parse_args(argv)
    if (args.title_prefix or args.tokenizer) and args.passages is None:
        p.error("--title-prefix and --tokenizer need --passages LEN STRIDE")
    if args.copies is not None and not args.expansions:
        p.error("--copies needs --expansions")
    spec = None if args.passages is None else PassageSpec(*args.passages, title_prefix=args.title_prefix,
                                                          tokens=args.tokenizer or "words")
    counter = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        try:
            counter = tokenizer_counter(AutoTokenizer.from_pretrained(args.tokenizer))
        except (OSError, ValueError) as e:
            raise InputError(args.tokenizer, f"has no usable tokenizer: {e}", field="tokenizer") from None
    # the released format pairs by position: read every document, then drop the empty ones --empty skip drops
    pair_all = args.expansions_format == "lines" and args.expansions and args.empty == "skip"
    all_docs = read_corpus(args.corpus, empty="keep" if pair_all else args.empty,
                           separator=SEPARATOR if spec else None)
    docs = [d for d in all_docs if d.text or d.title] if pair_all else all_docs
    docs, record = prepare_docs(docs, args.corpus, args.expansions, args.expansions_format, args.copies, spec,
                                counter, all_docs, progress=not args.quiet)
    out = build_lucene_index(docs, args.index, threads=args.threads, store_raw=not args.no_store_raw,
                             overwrite=args.overwrite, record=record, progress=not args.quiet)
    print(f"wrote {out} ({len(docs)} {'passages' if spec else 'documents'})")
    return 0


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
