"""Hostile input: random bytes, malformed lines, huge and empty texts, Unicode edge cases, damaged index dirs.

The contract: every reader returns valid data or raises ``InputError`` naming the file (and line
where there is one); no library exception escapes. Property tests use hypothesis with few
examples, so the file stays fast on 2 cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserini_dense_ext.encoders import load_model, load_query_encoder
from pyserini_dense_ext.encoders.encoded_queries import load_encoded_queries, save_encoded_queries
from pyserini_dense_ext.index import build_faiss_index, read_index_dir, write_index_dir
from pyserini_dense_ext.index.encode import encode_corpus
from pyserini_dense_ext.index.faiss_dir import IndexMeta
from pyserini_dense_ext.io import Doc, InputError, read_corpus, read_qrels, read_run, read_topics
from pyserini_dense_ext.search import DenseSearcher
from pyserini_dense_ext.search.shards import ShardedSearcher

ROOT = Path(__file__).resolve().parents[1]
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

READERS = {"corpus.jsonl": read_corpus, "topics.tsv": read_topics, "queries.jsonl": read_topics,
           "qrels.tsv": read_qrels, "run.trec": read_run}


def check_result(name: str, result) -> None:
    """What a reader returns is valid, whatever it was fed."""
    if name == "corpus.jsonl":
        ids = [d.docid for d in result]
        assert ids and len(set(ids)) == len(ids)
        assert all(i and not any(c.isspace() for c in i) for i in ids)
        for d in result:
            (d.docid + d.contents).encode("utf-8")  # writable to a docid file, hashable, tokenisable
    elif name in ("topics.tsv", "queries.jsonl"):
        assert result and all(q and t.strip() for q, t in result.items())
        for q, t in result.items():
            (q + t).encode("utf-8")
    elif name == "qrels.tsv":
        assert result and all(isinstance(g, int) for hits in result.values() for g in hits.values())
    else:
        for hits in result.values():
            scores = [s for _, s in hits]
            assert all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)


def read_or_input_error(name: str, path: Path):
    try:
        result = READERS[name](path)
    except InputError as e:
        assert str(path) in str(e)
        return None
    check_result(name, result)
    return result


@pytest.mark.parametrize("name", READERS)
@FEW
@given(data=st.binary(max_size=600))
def test_random_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    read_or_input_error(name, path)


# Lines made of the pieces that break parsers: separators, numbers that are not, odd Unicode, BOMs,
# lone surrogates (written with surrogatepass, so the bytes are invalid UTF-8) and JSON escapes of them.
PIECES = st.sampled_from(["\t", " ", "  ", "\r", "Q0", "0", "1", "-1", "2.5", "nan", "inf", "-inf", "1e400", "x",
                          "query-id", "\ufeff", "\x00", "\u2028", "\x85", "\u200b", "é", "👩‍👩‍👧", "\ud800",
                          '"\\ud800"', "{", "}", '"_id"', ":", ","])
LINE = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=10).map("".join)


@pytest.mark.parametrize("name", ["topics.tsv", "qrels.tsv", "run.trec"])
@FEW
@given(lines=st.lists(LINE, max_size=6))
def test_malformed_lines(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    read_or_input_error(name, path)


JSON_VALUE = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                       st.sampled_from(["", "  ", "a b", "\ud800", "x\udc00", "d\u00a01", "d\u200b1", "ok"]),
                       st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                            max_size=2))
JSON_OBJECT = st.dictionaries(st.sampled_from(["_id", "id", "docid", "title", "text", "contents", "other"]),
                              JSON_VALUE, max_size=4)


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
@FEW
@given(rows=st.lists(st.one_of(JSON_OBJECT, JSON_VALUE), min_size=1, max_size=5))
def test_malformed_json_lines(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # json.dumps escapes surrogates
    read_or_input_error(name, path)


# ----- valid input, generated: what is read must be exactly what was written ---------------------------
# The hostile examples above are almost never accepted, so a reader that rejected everything would pass
# them; these generate only valid files (BOMs, CRLF, blank lines, headers, odd Unicode included) and
# compare the parse with the data the file was written from.

def _id_char(c: str) -> bool:
    return not c.isspace() and c != "\ufeff"  # a BOM at the start of line 1 is dropped, by design


IDS = st.text(st.characters(blacklist_categories=("Cs",)).filter(_id_char), min_size=1, max_size=10).filter(
    lambda i: i not in ("query-id", "qid", "query_id"))  # a BEIR qrels header's first cell
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=30)
NONEMPTY = TEXT.filter(lambda t: t.strip())
FILE_STYLE = st.tuples(st.booleans(), st.sampled_from(["\n", "\r\n"]), st.booleans())  # BOM, line end, blanks


def write_lines(path: Path, lines: list[str], style: tuple[bool, str, bool]) -> Path:
    bom, end, blanks = style
    if blanks:
        lines = [x for line in lines for x in (line, "")]
    path.write_bytes(("\ufeff" if bom else "").encode() + "".join(line + end for line in lines).encode("utf-8"))
    return path


@FEW
@given(rows=st.lists(st.tuples(IDS, TEXT, TEXT, st.sampled_from(["_id", "id", "docid"]), st.booleans()),
                     min_size=1, max_size=6, unique_by=lambda r: r[0]).filter(
           lambda rows: all(text.strip() or title.strip() for _, text, title, _, _ in rows)),
       style=FILE_STYLE)
def test_valid_corpus_files_are_read_exactly(tmp_path, rows, style):
    objects = [{key: docid, "title": title, "text": text} if beir else {key: docid, "contents": title + " " + text}
               for docid, text, title, key, beir in rows]
    path = write_lines(tmp_path / "corpus.jsonl", [json.dumps(o, ensure_ascii=style[0]) for o in objects], style)
    expected = [Doc(docid, text.strip(), title.strip()) if beir else Doc(docid, (title + " " + text).strip())
                for docid, text, title, _, beir in rows]
    assert read_corpus(path) == expected


@FEW
@given(queries=st.dictionaries(IDS, NONEMPTY.filter(lambda t: "\r" not in t), min_size=1, max_size=6),
       style=FILE_STYLE, int_ids=st.booleans())
def test_valid_topics_are_read_exactly(tmp_path, queries, style, int_ids):
    tsv = write_lines(tmp_path / "topics.tsv", [f"{q}\t{t}" for q, t in queries.items()], style)
    assert read_topics(tsv) == {q: t.strip() for q, t in queries.items()}
    if int_ids:  # BEIR queries.jsonl may give numeric ids
        queries = {str(i): t for i, t in enumerate(queries.values())}
    rows = [{"_id": int(q) if int_ids else q, "text": t} for q, t in queries.items()]
    jsonl = write_lines(tmp_path / "queries.jsonl", [json.dumps(r) for r in rows], style)
    assert read_topics(jsonl) == {q: t.strip() for q, t in queries.items()}
    some = set(list(queries)[::2])
    assert read_topics(jsonl, some) == {q: t.strip() for q, t in queries.items() if q in some}


@FEW
@given(judgements=st.dictionaries(st.tuples(IDS, IDS), st.integers(-1, 3), min_size=1, max_size=8),
       style=FILE_STYLE, beir=st.booleans())
def test_valid_qrels_are_read_exactly(tmp_path, judgements, style, beir):
    lines = ([f"{q}\t{d}\t{g}" for (q, d), g in judgements.items()] if beir else
             [f"{q} 0 {d} {g}" for (q, d), g in judgements.items()])
    path = write_lines(tmp_path / "qrels.tsv", (["query-id\tcorpus-id\tscore"] if beir else []) + lines, style)
    expected: dict[str, dict[str, int]] = {}
    for (q, d), g in judgements.items():
        expected.setdefault(q, {})[d] = g
    assert read_qrels(path) == expected


@FEW
@given(run=st.dictionaries(IDS, st.dictionaries(IDS, st.floats(allow_nan=False, allow_infinity=False, width=64),
                                                min_size=1, max_size=5), min_size=1, max_size=4),
       style=FILE_STYLE, msmarco=st.booleans())
def test_valid_runs_are_read_exactly(tmp_path, run, style, msmarco):
    lines = []
    for q, hits in run.items():
        ranked = sorted(hits.items(), key=lambda h: (-h[1], h[0]))
        lines += [f"{q}\t{d}\t{r}" if msmarco else f"{q} Q0 {d} {r} {s!r} tag"
                  for r, (d, s) in enumerate(ranked, start=1)]
    path = write_lines(tmp_path / "run.trec", lines, style)
    expected = {q: sorted(((d, 1.0 / r if msmarco else s) for r, (d, s) in
                           enumerate(sorted(h.items(), key=lambda x: (-x[1], x[0])), start=1)),
                          key=lambda x: (-x[1], x[0])) for q, h in run.items()}
    assert read_run(path) == expected


@pytest.mark.parametrize("text, message", [
    ('{"_id": "\\ud800", "text": "x"}', "field '_id' holds a lone surrogate"),
    ('{"_id": "d", "text": "a\\udc00b"}', "field 'text' holds a lone surrogate"),
    ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
    ('{"_id": "d\\u00a01", "text": "x"}', "no whitespace"),  # no-break space inside an id
    ('{"_id": "d\\u20281", "text": "x"}', "no whitespace"),  # a line separator would split the docid file
])
def test_corpus_unicode_and_structure_errors(tmp_path, text, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=message):
        read_corpus(path)


@pytest.mark.parametrize("name, text, message", [
    ("qrels.tsv", "q 0 d inf\n", "field 'score' relevance grade 'inf' is not a number"),
    ("qrels.tsv", "q 0 d 1e400\n", "field 'score' relevance grade '1e400' is not a number"),
    ("run.trec", "q Q0 d 1 1e400 t\n", "field 'score' '1e400' is not a valid score"),
    ("run.trec", "q Q0 d 1 nan t\n", "field 'score' 'nan' is not a valid score"),
    ("queries.jsonl", '{"_id": [1], "text": "x"}\n', "field '_id' must be a string or an integer, got list"),
    ("queries.jsonl", '{"_id": "q", "text": "x\\ud800"}\n', "field 'text' holds a lone surrogate"),
])
def test_numbers_and_ids_that_are_not(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        READERS[name](path)


def test_byte_order_mark_is_dropped_not_glued_to_the_first_id(tmp_path):
    for name, body in {"corpus.jsonl": '{"_id": "d1", "text": "x"}\n', "topics.tsv": "1\tq\n",
                       "qrels.tsv": "1 0 d1 1\n", "run.trec": "1 Q0 d1 1 2.0 t\n"}.items():
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert read_corpus(tmp_path / "corpus.jsonl")[0].docid == "d1"
    assert read_topics(tmp_path / "topics.tsv") == {"1": "q"}
    assert read_qrels(tmp_path / "qrels.tsv") == {"1": {"d1": 1}}
    assert read_run(tmp_path / "run.trec") == {"1": [("d1", 2.0)]}


# ----- Unicode, huge and empty texts through encoding and search --------------------------------------

ODD = {"emoji-👩‍👩‍👧": "family emoji 👩‍👩‍👧 and flags 🇫🇷", "combining-é": "cafe\u0301 vs café",
       "rtl-שלום": "שלום עולם مرحبا", "zwsp\u200bid": "zero\u200bwidth joiner\u200d",
       "cjk-漢字": "漢字かなカナ", "nul-inside": "a\x00b control \x07 chars", "fullwidth-ＡＢＣ": "ＡＢＣ１２３"}


def test_unicode_docids_and_texts_round_trip_through_an_index(tiny_family_dirs, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in ODD.items()), encoding="utf-8")
    docs = read_corpus(corpus)
    assert [d.docid for d in docs] == list(ODD)
    model = load_model(tiny_family_dirs["repbert"])
    out = encode_corpus(docs, model, tmp_path / "idx", {"model": "x"}, chunk_size=3, progress=False)
    assert read_index_dir(out)[1] == list(ODD)
    searcher = DenseSearcher(out, load_query_encoder(tiny_family_dirs["repbert"]))
    hits = searcher.batch_search(list(ODD.values()), list(ODD), k=len(ODD))
    assert all(sorted(h.docid for h in hits[q]) == sorted(ODD) for q in ODD)


@FEW
@given(docids=st.lists(IDS, min_size=1, max_size=8, unique=True))
def test_any_docid_the_corpus_accepts_survives_the_docid_file(tmp_path, docids):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "text": "x"}) + "\n" for d in docids), encoding="utf-8")
    ids = [d.docid for d in read_corpus(corpus)]
    assert ids == docids
    vectors = np.eye(len(ids), 8, dtype=np.float32)
    out = write_index_dir(tmp_path / "idx", build_faiss_index(vectors), ids,
                          IndexMeta(dim=8, num_rows=len(ids), num_docs=len(ids)), overwrite=True)
    assert read_index_dir(out)[1] == ids


def test_huge_document_and_query_are_truncated_like_their_prefix(tiny_family_dirs, tmp_path):
    model = load_model(tiny_family_dirs["repbert"])  # documents: 256 tokens, queries: 20
    huge = "protein cells in the boundary layer " * 60_000  # 2.2 MB, ~360k tokens
    prefix = " ".join(huge.split()[:400])
    np.testing.assert_allclose(model.encode([huge], "document"), model.encode([prefix], "document"), atol=1e-6)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "huge", "text": huge}) + "\n" + json.dumps({"_id": "s", "text": "wing"}))
    out = encode_corpus(read_corpus(corpus), model, tmp_path / "idx", {"model": "x"}, progress=False)
    searcher = DenseSearcher(out, load_query_encoder(tiny_family_dirs["repbert"]))
    got = searcher.search(huge, k=2)
    want = searcher.search(" ".join(huge.split()[:40]), k=2)
    assert [h.docid for h in got] == [h.docid for h in want]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-5)


def test_empty_queries(tiny_family_dirs, tiny_corpus, tmp_path):
    """In files an empty query is an error; through the API it is encoded as it is (special tokens only)."""
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\tfine\n2\t   \n")
    with pytest.raises(InputError, match=r"line 2: field 'text' query '2' has empty text"):
        read_topics(topics)
    model = load_model(tiny_family_dirs["repbert"])
    out = encode_corpus(read_corpus(tiny_corpus), model, tmp_path / "idx", {"model": "x"}, progress=False)
    searcher = DenseSearcher(out, load_query_encoder(tiny_family_dirs["repbert"]))
    for empty in ("", "   ", "\x00\u200b"):
        hits = searcher.search(empty, k=3)
        scores, docs = searcher.search_vectors(model.encode([""], "query"), 3)
        assert [h.docid for h in hits] == [searcher.docids[i] for i in docs[0]]
    with pytest.raises(ValueError, match="nothing to encode"):
        searcher.batch_search([], [], k=3)


# ----- damaged or mismatched index dirs ----------------------------------------------------------------

@pytest.fixture()
def flat_dir(tmp_path) -> Path:
    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    return write_index_dir(tmp_path / "idx", build_faiss_index(vectors), [f"d{i}" for i in range(300)],
                           IndexMeta(dim=16, num_rows=300, num_docs=300))


@pytest.mark.parametrize("index_type", ["flat", "flat-fp16", "hnsw", "pq"])
def test_truncated_index_files_are_input_errors(tmp_path, index_type):
    vectors = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
    good = write_index_dir(tmp_path / "good", build_faiss_index(vectors, index_type, pq_m=4),
                           [f"d{i}" for i in range(300)], IndexMeta(dim=16, num_rows=300, num_docs=300))
    data = (good / "index").read_bytes()
    for cut in (0, 3, 4, 20, 60, len(data) // 2, len(data) - 1):
        (good / "index").write_bytes(data[:cut])
        with pytest.raises(InputError, match="not a readable FAISS index"):
            read_index_dir(good)


@FEW
@given(data=st.binary(max_size=300))
def test_random_bytes_as_index_file(flat_dir, data):
    (flat_dir / "index").write_bytes(data)
    with pytest.raises(InputError, match="index"):
        DenseSearcher(flat_dir)


@pytest.mark.parametrize("docids, message", [
    ([f"d{i}" for i in range(299)], "docid: has 299 lines but the index has 300 rows"),
    ([f"d{i}" for i in range(301)], "has 301 lines but the index has 300 rows"),
    ([f"d{i}" for i in range(150)] + [""] + [f"d{i}" for i in range(151, 300)], "line 151: is an empty docid"),
    (["d0"] * 300, "names 1 distinct documents but dense_ext_index.json says 300"),
])
def test_docid_file_out_of_step_with_the_index(flat_dir, docids, message):
    (flat_dir / "docid").write_text("".join(d + "\n" for d in docids))
    with pytest.raises(InputError, match=message):
        DenseSearcher(flat_dir)


def test_docid_file_not_utf8(flat_dir):
    (flat_dir / "docid").write_bytes(b"".join(b"d%d\n" % i for i in range(299)) + b"\xff\n")
    with pytest.raises(InputError, match="line 300: is not valid UTF-8"):
        DenseSearcher(flat_dir)


@FEW
@given(value=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.sampled_from(["dim", "num_rows", "num_docs", "rows_per_doc", "index_type",
                                                        "encoder", "shard_id", "shard_num", "x"]),
                                       st.one_of(st.integers(-2, 400), st.booleans(), st.text(max_size=3),
                                                 st.none(), st.just({})), max_size=9)))
def test_any_metadata_file_is_valid_or_an_input_error(flat_dir, value):
    (flat_dir / "dense_ext_index.json").write_text(json.dumps(value))
    try:
        meta = read_index_dir(flat_dir)[2]
    except InputError as e:
        assert "dense_ext_index.json" in str(e) or "docid" in str(e)
        return
    assert (meta.dim, meta.num_rows, meta.num_docs) == (16, 300, 300) and meta.rows_per_doc >= 1


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))


@FEW
@given(optional=st.fixed_dictionaries({}, optional={
    "rows_per_doc": st.integers(1, 5), "index_type": st.sampled_from(["flat", "hnsw", "x"]),
    "encoder": st.dictionaries(st.text(max_size=5), JSON_SCALAR, max_size=3), "shard_id": st.integers(0, 3),
    "shard_num": st.integers(1, 4), "corpus": st.one_of(st.none(), st.text(max_size=64)),
    "index_options": st.dictionaries(st.text(max_size=5), JSON_SCALAR, max_size=3)}))
def test_valid_metadata_files_are_read_exactly(flat_dir, optional):
    written = {"dim": 16, "num_rows": 300, "num_docs": 300, **optional}
    (flat_dir / "dense_ext_index.json").write_text(json.dumps(written))
    meta = read_index_dir(flat_dir)[2]
    defaults = IndexMeta(dim=16, num_rows=300, num_docs=300)
    for name in ("dim", "num_rows", "num_docs", "rows_per_doc", "index_type", "encoder", "shard_id", "shard_num",
                 "corpus", "index_options"):
        assert getattr(meta, name) == written.get(name, getattr(defaults, name)), name


def test_query_vectors_of_the_wrong_width_or_not_finite(flat_dir, tiny_family_dirs, tmp_path):
    searcher = DenseSearcher(flat_dir)
    for bad in (np.zeros((1, 7)), np.zeros((2, 32)), np.zeros((1, 2, 16)), np.zeros(8)):
        with pytest.raises(InputError, match=r"dimension 16 but the query vectors have shape"):
            searcher.search_vectors(bad, 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        searcher.search_vectors(np.full((1, 16), np.nan), 3)
    with pytest.raises(InputError, match="dimension 16 but the query encoder gives 32-dim"):
        DenseSearcher(flat_dir, tiny_family_dirs["repbert"])
    with pytest.raises(InputError, match="dimension 16 but the query encoder gives 32-dim"):
        ShardedSearcher([flat_dir], tiny_family_dirs["repbert"])


# ----- encoded queries (no pickle) -----------------------------------------------------------------------

def test_encoded_queries_round_trip_and_search_without_a_model(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.encoders import DenseQueryEncoder

    model = load_model(tiny_family_dirs["repbert"])
    out = encode_corpus(read_corpus(tiny_corpus), model, tmp_path / "idx", {"model": "x"}, progress=False)
    queries = ["protein in cells", "wing flow", "é 👩‍👩‍👧"]
    save_encoded_queries(tmp_path / "q", queries, model.encode(queries, "query"))
    with_model = DenseSearcher(out, load_query_encoder(tiny_family_dirs["repbert"]))
    encoded = DenseSearcher(out, DenseQueryEncoder(encoded_query_dir=str(tmp_path / "q")))
    ids = ["a", "b", "c"]
    assert {q: [h.docid for h in hits] for q, hits in encoded.batch_search(queries, ids, k=4).items()} == \
           {q: [h.docid for h in hits] for q, hits in with_model.batch_search(queries, ids, k=4).items()}
    with pytest.raises(ValueError, match="'unseen' is not among the encoded queries"):
        encoded.search("unseen")


@pytest.mark.parametrize("files, message", [
    ({"embedding.pkl": b"\x80\x04K\x01."}, "embedding.pkl: is a pickle, which can run arbitrary code"),
    ({"embedding.npy": None, "text.json": b'["a", "b"]'}, r"holds float32 \(3, 4\), expected float \(2, d\)"),
    ({"embedding.npy": None, "text.json": b'["a", "a", "b"]'}, "lists the query 'a' twice"),
    ({"embedding.npy": None, "text.json": b'{"a": 1}'}, "must be a JSON list of query strings"),
    ({"embedding.npy": None, "text.json": b"\xff"}, "is not valid UTF-8 JSON"),
    ({"embedding.npy": b"not npy", "text.json": b'["a"]'}, "is not a plain .npy array"),
    ({"embedding.npy": "object", "text.json": b'["a"]'}, "is not a plain .npy array"),
    ({"embedding.npy": "nan", "text.json": b'["a", "b", "c"]'}, "NaN or infinite"),
])
def test_hostile_encoded_query_dirs(tmp_path, files, message):
    for name, content in files.items():
        path = tmp_path / name
        if content is None or content == "nan":
            vectors = np.ones((3, 4), np.float32)
            vectors[1, 2] = np.nan if content == "nan" else 1.0
            np.save(path, vectors)
        elif content == "object":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_encoded_queries(tmp_path)


# ----- the CLIs say it in one line ---------------------------------------------------------------------

def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_clis_report_hostile_input_without_a_traceback(tiny_family_dirs, flat_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "fine"}\n{"_id": "d2", "text": "bad \\udfff"}\n')
    result = cli("pyserini_dense_ext.encode", "input", "--corpus", str(corpus), "encoder", "--encoder",
                 str(tiny_family_dirs["repbert"]), "output", "--index", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{corpus}, line 2: field 'text' holds a lone surrogate" in result.stderr
    (flat_dir / "docid").write_text("".join(f"d{i}\n" for i in range(10)))
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\tprotein\n")
    result = cli("pyserini_dense_ext.search", "--index", str(flat_dir), "--encoder", str(tiny_family_dirs["repbert"]),
                 "--topics", str(topics), "--output", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "docid: has 10 lines but the index has 300 rows" in result.stderr
