"""Merge shard index dirs into one: ``python -m pyserini_dense_ext.index.merge --shards A B ... --output DIR``.

Shards come from ``python -m pyserini_dense_ext.encode input ... --shard-id i --shard-num n``: each
is a contiguous slice of the corpus, so concatenating them in shard-id order gives the rows (and
docids) of an unsharded build, in the same order. Shards must agree on dimension, encoder and
rows per document, cover every shard id once and share no docid. The merged index is rebuilt from
the concatenated vectors by the same :func:`build_faiss_index` an unsharded run uses, so a merged
flat, HNSW or PQ index is the one a single encode would have written. That needs the shards'
vectors back: flat and HNSW shards store them exactly, flat-fp16 ones to fp16 precision; PQ
shards have thrown them away and cannot be merged (encode shards as flat, merge, ask for pq here).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from ..io.errors import InputError
from ..io.fingerprint import combine_fingerprints
from ..io.lock import output_lock
from ..progress import progress_iter
from .faiss_dir import (DEFAULT_EF_SEARCH, INDEX_FILE, INDEX_TYPES, META_FILE, IndexMeta, build_faiss_index,
                        index_type_of, read_index_dir, write_index_dir)


@dataclass
class Shard:
    path: Path
    index: faiss.Index | None  # dropped once its vectors are read, to bound memory
    row_docids: list[str]
    meta: IndexMeta
    has_meta: bool


def load_shards(shard_dirs: Sequence[str | Path], progress: bool = False) -> list[Shard]:
    """Read shard dirs and return them in corpus order, checked to belong together."""
    if not shard_dirs:
        raise ValueError("no shard dirs given")
    shards = []
    for d in progress_iter(shard_dirs, "reading shards", "shard", progress):
        index, row_docids, meta = read_index_dir(d)
        shards.append(Shard(Path(d), index, row_docids, meta, (Path(d) / META_FILE).is_file()))
    ordered = order_shards([(s.path, s.meta, s.has_meta) for s in shards])
    shards = [shards[i] for i in ordered]
    check_compatible([(s.path, s.meta, s.index.metric_type) for s in shards], [s.row_docids for s in shards])
    return shards


def order_shards(items: Sequence[tuple[Path, IndexMeta, bool]]) -> list[int]:
    """Positions of the shards in corpus order: by recorded shard id, or as given for dirs without metadata."""
    with_meta = [has for _, _, has in items]
    if not any(with_meta):
        return list(range(len(items)))  # Pyserini's own dirs: the caller's order is the corpus order
    if not all(with_meta):
        missing = next(path for path, _, has in items if not has)
        raise InputError(missing / META_FILE, "is missing while other shards have one: cannot tell this shard's "
                                              "place in the corpus")
    nums = {meta.shard_num for _, meta, _ in items}
    if len(nums) != 1:
        raise InputError(items[0][0] / META_FILE, f"shards disagree on shard_num: {sorted(nums)}", field="shard_num")
    num = nums.pop()
    ids = [meta.shard_id for _, meta, _ in items]
    for path, meta, _ in items:
        if ids.count(meta.shard_id) > 1:
            raise InputError(path / META_FILE, f"shard {meta.shard_id} of {num} is given twice", field="shard_id")
    if sorted(ids) != list(range(num)):
        missing = sorted(set(range(num)) - set(ids))
        raise InputError(items[0][0], f"shards {missing} of {num} are missing (got shard ids {sorted(ids)})",
                         field="shard_id")
    return sorted(range(len(items)), key=lambda i: ids[i])


def check_compatible(items: Sequence[tuple[Path, IndexMeta, int]], row_docids: Sequence[Sequence[str]]) -> None:
    """Same dimension, encoder, rows per document, passage split and inner-product metric; no docid in two
    shards."""
    first_path, first, _ = items[0]
    for path, meta, metric in items:
        if metric != faiss.METRIC_INNER_PRODUCT:
            raise InputError(path / INDEX_FILE, "is not an inner-product index (Pyserini and this package search by "
                                                "inner product)", field="metric")
        for name in ("dim", "rows_per_doc", "passages"):
            if getattr(meta, name) != getattr(first, name):
                raise InputError(path / META_FILE, f"has {name}={getattr(meta, name)} but {first_path} has "
                                                   f"{getattr(first, name)}", field=name)
        if meta.encoder != first.encoder:
            keys = sorted(k for k in meta.encoder.keys() | first.encoder.keys()
                          if meta.encoder.get(k) != first.encoder.get(k))
            raise InputError(path / META_FILE, f"was made by another encoder than {first_path} (differs in "
                                               f"{', '.join(keys)}): shards must share one model", field="encoder")
    seen: dict[str, Path] = {}
    for (path, _, _), docids in zip(items, row_docids):
        for docid in dict.fromkeys(docids):
            if docid in seen:
                raise InputError(path / "docid", f"docid {docid!r} is also in {seen[docid]}: shards overlap",
                                 field="docid")
            seen[docid] = path


def stored_vectors(shard: Shard) -> np.ndarray:
    """A shard's float32 rows, when its index kept them (flat: exact, flat-fp16: to fp16, HNSW: exact)."""
    assert shard.index is not None
    if index_type_of(shard.index) not in ("flat", "flat-fp16", "hnsw"):
        raise InputError(shard.path / INDEX_FILE, f"is a {type(faiss.downcast_index(shard.index)).__name__} index, "
                                                  "which keeps only compressed "
                                                  "codes, so its vectors cannot be merged: encode the shards with "
                                                  "--index-type flat or flat-fp16, merge them, and ask the merge "
                                                  "for hnsw or pq", field="index_type")
    return shard.index.reconstruct_n(0, shard.index.ntotal)


def merge_index_dirs(shard_dirs: Sequence[str | Path], out_dir: str | Path, index_type: str = "flat",
                     overwrite: bool = False, progress: bool = True, **index_options: Any) -> Path:
    """Merge shard dirs into one ``index_type`` index dir (written atomically); returns its path.

    Memory: all shards' vectors at once, plus the new index (twice the flat size for flat).
    """
    out = Path(out_dir)
    with output_lock(out):
        return _merge(shard_dirs, out, index_type, overwrite, progress, **index_options)


def _merge(shard_dirs: Sequence[str | Path], out: Path, index_type: str, overwrite: bool, progress: bool,
           **index_options: Any) -> Path:
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r}; choose from {INDEX_TYPES}")
    shards = load_shards(shard_dirs, progress)
    parts = []
    for shard in shards:
        parts.append(stored_vectors(shard))
        shard.index = None
    vectors = np.concatenate(parts)
    del parts
    row_docids = [d for s in shards for d in s.row_docids]
    first = shards[0].meta
    if progress:
        print(f"building {index_type} index over {len(vectors)} rows from {len(shards)} shards", flush=True)
    index = build_faiss_index(vectors, index_type, **index_options)
    corpora = [s.meta.corpus for s in shards]
    meta = IndexMeta(dim=first.dim, num_rows=len(vectors), num_docs=sum(s.meta.num_docs for s in shards),
                     rows_per_doc=first.rows_per_doc, index_type=index_type, encoder=first.encoder,
                     corpus=combine_fingerprints(corpora) if None not in corpora else None, passages=first.passages)
    return write_index_dir(out, index, row_docids, meta, overwrite=overwrite)


EXAMPLE = """example (two processes, or two machines, then one merge):
  python -m pyserini_dense_ext.encode input --corpus C --shard-id 0 --shard-num 2 encoder ... output --index idx.0
  python -m pyserini_dense_ext.encode input --corpus C --shard-id 1 --shard-num 2 encoder ... output --index idx.1
  python -m pyserini_dense_ext.index.merge --shards idx.0 idx.1 --output idx --index-type hnsw
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyserini_dense_ext.index.merge", epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Merge shard index dirs (encode --shard-id/--shard-num) into one index "
                                            "dir, docids in corpus order. Shards must be flat, flat-fp16 or hnsw "
                                            "(their vectors are read back); the output can be any index type.")
    p.add_argument("--shards", nargs="+", required=True, metavar="DIR",
                   help="shard index dirs, in any order (ordered by their recorded shard id; Pyserini dirs "
                        "without our metadata are taken in the order given)")
    p.add_argument("--output", required=True, help="merged index dir (written to a temporary name, then renamed)")
    p.add_argument("--index-type", choices=INDEX_TYPES, default="flat", help="index type of the merged dir")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree")
    p.add_argument("--ef-construction", type=int, default=200, help="HNSW build beam width")
    p.add_argument("--ef-search", type=int, default=DEFAULT_EF_SEARCH,
                   help=f"HNSW search beam width stored with the index (default {DEFAULT_EF_SEARCH}; searches use "
                        "at least the number of rows asked for)")
    p.add_argument("--pq-m", type=int, default=None, help="PQ sub-quantisers (default: dim/4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {"hnsw": dict(hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search),
               "pq": dict(pq_m=args.pq_m)}.get(args.index_type, {})
    path = merge_index_dirs(args.shards, args.output, args.index_type, args.overwrite, progress=not args.quiet,
                            **options)
    meta = IndexMeta.load(path)
    print(f"wrote {path} ({meta.num_docs} documents, {meta.num_rows} rows, {args.index_type})")
    return 0


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
