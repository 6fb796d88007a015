"""Long documents as passages: the split, MaxP against Pyserini's own (FaissSearcher, LuceneSearcher and its
output writer's --max-passage), both sides of the hybrid ranking documents, and bad input."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.index.passages import PassageSpec, split_corpus, tokenizer_counter, word_windows
from pyserini_dense_ext.io.corpus import Doc, read_corpus
from pyserini_dense_ext.io.errors import InputError

from conftest import WORDS, one_error_line, write_jsonl

LEN, STRIDE = 8, 4
QUERIES = ["protein cell expression", "cancer risk patients", "wing flow pressure", "mach number shock",
           "gene", "heat boundary layer treatment"]


def brute_force_windows(counts, length, stride):
    """The definition, step by step: the longest run of words within ``length`` tokens (at least one word), then
    the next passage at the first later word from which the rest of this passage holds at most ``stride`` tokens
    and the first word not yet covered fits within ``length`` (or that word itself)."""
    n, start, out = len(counts), 0, []
    if n == 0:
        return [(0, 0)]
    while True:
        end = start + 1
        while end < n and sum(counts[start:end + 1]) <= length:
            end += 1
        out.append((start, end))
        if end == n:
            return out
        start = next(w for w in range(start + 1, end + 1)
                     if sum(counts[w:end]) <= stride and (w == end or sum(counts[w:end + 1]) <= length))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=60), st.integers(1, 12), st.data())
def test_windows_follow_the_definition(counts, length, data):
    stride = data.draw(st.integers(0, length - 1))
    windows = word_windows(counts, length, stride)
    assert windows == brute_force_windows(counts, length, stride)
    if counts:
        assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
        assert s1 < s2 <= e1 < e2  # each passage starts later, overlaps or touches the previous one, and ends later
        assert sum(counts[s2:e1]) <= stride  # at most STRIDE tokens shared
    for s, e in windows:
        assert e - s == 1 or sum(counts[s:e]) <= length  # within the window, unless one word is longer alone


def long_docs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [{"_id": f"d{i}", "title": "" if i % 4 == 0 else " ".join(rng.choice(WORDS, 2)),
             "text": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 60))))} for i in range(n)]


@pytest.fixture(scope="module")
def passage_corpus(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("passages") / "corpus.jsonl", long_docs())


def test_split_with_a_tokenizer_keeps_whole_words_within_the_window(tiny_bert, passage_corpus):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    docs = read_corpus(passage_corpus)
    for title_prefix in (False, True):
        passages = split_corpus(docs, PassageSpec(LEN, STRIDE, title_prefix), tokenizer_counter(tokenizer),
                                progress=False)
        by_doc: dict[str, list[Doc]] = {}
        for p in passages:
            by_doc.setdefault(p.docid.split("#")[0], []).append(p)
        assert list(by_doc) == [d.docid for d in docs]  # corpus order, every document
        for doc in docs:
            parts = by_doc[doc.docid]
            assert [p.docid for p in parts] == [f"{doc.docid}#{k}" for k in range(len(parts))]
            source = doc.text if title_prefix else doc.contents
            assert all(p.title == (doc.title if title_prefix else "") for p in parts)
            for p in parts:  # whole words of the document, within LEN of the model's tokens
                assert f" {p.text} " in f" {source} " and len(tokenizer.tokenize(p.text)) <= LEN
            words = source.split()
            assert parts[0].text.split()[0] == words[0] and parts[-1].text.split()[-1] == words[-1]
        assert len(passages) > len(docs)  # the window is shorter than most documents


def test_passage_stream_is_the_split_corpus_read_as_a_stream(tiny_bert, passage_corpus):
    """``encode --passages`` splits a :class:`CorpusStream` as it is read: the same passages, ids and fingerprints
    as splitting the documents in memory, and a resume identity equal to the list's."""
    from transformers import AutoTokenizer

    from pyserini_dense_ext.index.passages import PassageStream
    from pyserini_dense_ext.io.corpus import CorpusStream, DocList

    counter = tokenizer_counter(AutoTokenizer.from_pretrained(str(tiny_bert)))
    spec = PassageSpec(LEN, STRIDE, True)
    expected = split_corpus(read_corpus(passage_corpus), spec, counter, progress=False)
    stream = PassageStream(CorpusStream(passage_corpus), spec, counter, batch_size=7, progress=False)
    assert len(stream) == len(expected) and stream.documents == len(long_docs())
    assert list(stream.docs()) == expected == list(stream.docs())  # every pass splits the same way
    assert stream.fingerprint() == DocList(expected).fingerprint()
    assert stream.corpus_fingerprint() == DocList(expected).corpus_fingerprint()
    shard = PassageStream(CorpusStream(passage_corpus).shard(10, 20), spec, counter, progress=False)
    assert {p.docid.split("#")[0] for p in shard.docs()} == {f"d{i}" for i in range(10, 20)}


# ---------------------------------------------------------------- dense: ours against Pyserini's FaissSearcher
def encode_passages(tmp_path_factory, model_dir, corpus) -> Path:
    """``encode --passages LEN STRIDE --title-prefix`` of ``corpus`` with ``model_dir``: the index dir."""
    from pyserini_dense_ext.encode.__main__ import main

    out = tmp_path_factory.mktemp("passages") / "index"
    assert main(["input", "--corpus", str(corpus), "--passages", str(LEN), str(STRIDE), "--title-prefix",
                 "encoder", "--encoder", str(model_dir), "output", "--index", str(out),
                 "--chunk-size", "50", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def dense_passages(tmp_path_factory, tiny_family_dirs, passage_corpus):
    return encode_passages(tmp_path_factory, tiny_family_dirs["repbert"], passage_corpus)


def pyserini_max_passage(hits, max_passage_hits, delimiter="#"):
    """Pyserini's own MaxP: its output writer's hits_iterator (pyserini/output_writer.py)."""
    from pyserini.output_writer import TrecWriter

    writer = TrecWriter("unused", use_max_passage=True, max_passage_delimiter=delimiter,
                        max_passage_hits=max_passage_hits)
    return [(docid, score) for docid, _, score, _ in writer.hits_iterator(hits)]


def test_passage_index_rows_and_record(dense_passages, passage_corpus, tiny_family_dirs):
    from pyserini_dense_ext.index import read_index_dir

    _, row_docids, meta = read_index_dir(dense_passages)
    assert meta.passages == {"length": LEN, "stride": STRIDE, "title_prefix": True, "separator": "#",
                             "tokens": str(tiny_family_dirs["repbert"])}
    assert meta.num_docs == len(row_docids) > 40
    assert sorted({d.split("#")[0] for d in row_docids}) == sorted(d["_id"] for d in long_docs())


@pytest.mark.parametrize("hits,max_passage_hits", [(25, 5), (25, 100), (400, 10)])
def test_search_max_passage_equals_pyserini_faiss_searcher_and_writer(dense_passages, tiny_family_dirs, tmp_path,
                                                                      hits, max_passage_hits):
    from pyserini.output_writer import OutputFormat, get_output_writer
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.encoders import load_query_encoder
    from pyserini_dense_ext.search.__main__ import main

    topics = write_jsonl(tmp_path / "q.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(QUERIES)])
    ours = tmp_path / "ours.trec"
    assert main(["--index", str(dense_passages), "--encoder", str(tiny_family_dirs["repbert"]), "--topics",
                 str(topics), "--output", str(ours), "--hits", str(hits), "--max-passage", "--max-passage-hits",
                 str(max_passage_hits), "--quiet"]) == 0
    searcher = FaissSearcher(str(dense_passages), load_query_encoder(tiny_family_dirs["repbert"]))
    results = searcher.batch_search(QUERIES, [f"q{i}" for i in range(len(QUERIES))], k=hits)
    theirs = tmp_path / "theirs.trec"
    with get_output_writer(str(theirs), OutputFormat.TREC, "w", max_hits=hits, tag="x", use_max_passage=True,
                           max_passage_delimiter="#", max_passage_hits=max_passage_hits) as writer:
        for i in range(len(QUERIES)):
            writer.write(f"q{i}", results[f"q{i}"])
    mine = [line.split()[:5] for line in ours.read_text().splitlines()]
    expected = [line.split()[:5] for line in theirs.read_text().splitlines()]
    assert [row[:4] for row in mine] == [row[:4] for row in expected]  # qid Q0 docid rank
    # our flat search multiplies matrices, FAISS scans with SIMD: the scores agree to float32 noise (docs/scale.md)
    np.testing.assert_allclose([float(row[4]) for row in mine], [float(row[4]) for row in expected], atol=1e-5)
    assert all("#" not in row[2] for row in mine)
    per_query = [sum(1 for row in mine if row[0] == f"q{i}") for i in range(len(QUERIES))]
    assert max(per_query) <= max_passage_hits and (hits < 400 or min(per_query) == max_passage_hits)


def test_searching_passages_without_max_passage_warns(dense_passages, tiny_family_dirs, tmp_path, caplog):
    from pyserini_dense_ext.search.__main__ import main

    topics = write_jsonl(tmp_path / "q.jsonl", [{"_id": "1", "text": "gene"}])
    with caplog.at_level(logging.WARNING):
        assert main(["--index", str(dense_passages), "--encoder", str(tiny_family_dirs["repbert"]), "--topics",
                     str(topics), "--output", str(tmp_path / "r.trec"), "--quiet"]) == 0
    assert "holds passages" in caplog.text and "--max-passage is not set" in caplog.text


# ---------------------------------------------------------------- BM25 passages and the hybrid
@pytest.fixture(scope="module")
def lucene_passages(tmp_path_factory, tiny_bert, passage_corpus):
    from pyserini_dense_ext.index.lucene import main

    out = tmp_path_factory.mktemp("bm25") / "index"
    assert main(["--corpus", str(passage_corpus), "--index", str(out), "--passages", str(LEN), str(STRIDE),
                 "--title-prefix", "--tokenizer", str(tiny_bert), "--threads", "1", "--quiet"]) == 0
    return out


def lucene(path):
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(path))
    searcher.set_bm25(0.9, 0.4)
    return searcher


def test_bm25_passages_with_the_model_tokenizer_are_the_dense_passages(lucene_passages, dense_passages,
                                                                      passage_corpus, tiny_bert):
    from transformers import AutoTokenizer

    from pyserini_dense_ext.index import read_index_dir
    from pyserini_dense_ext.index.lucene import LuceneRecord

    searcher = lucene(lucene_passages)
    row_docids = read_index_dir(dense_passages)[1]
    assert searcher.num_docs == len(row_docids)
    expected = split_corpus(read_corpus(passage_corpus), PassageSpec(LEN, STRIDE, True),
                            tokenizer_counter(AutoTokenizer.from_pretrained(str(tiny_bert))), progress=False)
    assert [p.docid for p in expected] == row_docids
    for p in expected:
        assert json.loads(searcher.doc(p.docid).raw())["contents"] == p.contents
    assert LuceneRecord.of(lucene_passages).passages["length"] == LEN


def test_passage_indexes_record_the_collection_and_are_reused_only_for_their_split(lucene_passages, dense_passages,
                                                                                 passage_corpus):
    """Both sides fingerprint the documents before the split (the hybrid's same-collection check compares
    collections), and reuse checks compare the split on its own."""
    from pyserini_dense_ext.index import read_index_dir, reuse_problems
    from pyserini_dense_ext.index.lucene import LuceneRecord, lucene_reuse_problems
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    docs_key = docs_fingerprint(read_corpus(passage_corpus))
    meta, record = read_index_dir(dense_passages)[2], LuceneRecord.of(lucene_passages)
    assert meta.corpus == record.corpus == docs_key
    assert reuse_problems(dense_passages, docs_key, meta.encoder, "flat", passages=meta.passages) == []
    assert reuse_problems(dense_passages, docs_key, meta.encoder, "flat") == ["it holds passages, not whole documents"]
    assert reuse_problems(dense_passages, docs_key, meta.encoder, "flat",
                          passages={**meta.passages, "stride": STRIDE - 1}) == ["it holds other passages"]
    assert lucene_reuse_problems(lucene_passages, docs_key, passages=record.passages) == []
    assert lucene_reuse_problems(lucene_passages, docs_key) == ["it was built with other options (passages)"]


def test_hybrid_sides_fold_passages_as_pyserini_does(lucene_passages, dense_passages, tiny_family_dirs):
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.encoders import load_query_encoder
    from pyserini_dense_ext.search import DenseSearcher
    from pyserini_dense_ext.search.hybrid import HybridSearcher

    sparse = lucene(lucene_passages)
    hybrid = HybridSearcher(DenseSearcher(dense_passages, tiny_family_dirs["repbert"]), sparse,
                            max_passage_delimiter="#")
    qids = [str(i) for i in range(len(QUERIES))]
    k0 = 30
    bm25 = sparse.batch_search(QUERIES, qids, k=k0, threads=1)
    for i, (ids, scores) in enumerate(hybrid.sparse_hits(QUERIES, k0)):
        assert list(zip(ids.tolist(), scores.tolist())) == pyserini_max_passage(bm25[str(i)], 10 ** 6)
    faiss = FaissSearcher(str(dense_passages), load_query_encoder(tiny_family_dirs["repbert"]))
    dense = faiss.batch_search(QUERIES, qids, k=k0)
    for i, (ids, scores) in enumerate(hybrid.dense_hits(QUERIES, k0)):
        theirs = pyserini_max_passage(dense[str(i)], 10 ** 6)
        assert ids.tolist() == [d for d, _ in theirs]
        np.testing.assert_allclose(scores, [s for _, s in theirs], rtol=1e-6)
    fused = hybrid.batch_search(QUERIES, qids, k0=k0, k=7, fusion="rrf")
    for qid in qids:
        docids = [h.docid for h in fused[qid]]
        assert len(docids) == len(set(docids)) <= 7 and all("#" not in d for d in docids)


def test_hybrid_cli_max_passage_writes_documents(lucene_passages, dense_passages, tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.io.runs import read_run
    from pyserini_dense_ext.search.hybrid.__main__ import main

    topics = write_jsonl(tmp_path / "q.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(QUERIES)])
    out = tmp_path / "run.trec"
    assert main(["dense", "--index", str(dense_passages), "--encoder", str(tiny_family_dirs["repbert"]),
                 "sparse", "--index", str(lucene_passages), "fusion", "--method", "rrf", "--hits", "50",
                 "run", "--topics", str(topics), "--output", str(out), "--max-passage", "--max-passage-hits", "6",
                 "--quiet"]) == 0
    run = read_run(out)
    assert set(run) == {f"q{i}" for i in range(len(QUERIES))}
    assert all(len(h) == 6 and all("#" not in d for d, _ in h) for h in run.values())


def test_bm25_passages_without_a_tokenizer_count_words(passage_corpus, tmp_path):
    from pyserini_dense_ext.index.lucene import main

    out = tmp_path / "words"
    assert main(["--corpus", str(passage_corpus), "--index", str(out), "--passages", "5", "2", "--quiet"]) == 0
    searcher = lucene(out)
    contents = [json.loads(searcher.doc(i).raw())["contents"] for i in range(searcher.num_docs)]
    assert max(len(c.split()) for c in contents) == 5  # title + text split as one, 5 words at most


def test_max_passage_equals_pyserinis_writer_on_random_lists():
    from pyserini_dense_ext.search.maxp import max_passage

    class Hit:
        def __init__(self, docid, score):
            self.docid, self.score = docid, score

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        ids = [f"d{rng.integers(0, 8)}" + ("" if rng.random() < 0.2 else f"#{rng.integers(0, 5)}")
               + ("#x" if rng.random() < 0.1 else "") for _ in range(n)]
        scores = np.sort(rng.normal(size=n))[::-1]
        hits = int(rng.integers(1, 10))
        docids, got = max_passage(ids, scores, hits)
        assert list(zip(docids.tolist(), got.tolist())) == pyserini_max_passage(
            [Hit(d, float(s)) for d, s in zip(ids, scores)], hits)


# ---------------------------------------------------------------- rerank by the best passage (MaxP)
@pytest.fixture(scope="module")
def mebert_passages(tmp_path_factory, tiny_family_dirs, passage_corpus):
    """ME-BERT over passages: m rows per passage, so a document is m x (its passages) rows."""
    return encode_passages(tmp_path_factory, tiny_family_dirs["mebert"], passage_corpus)


def passage_reference(index_dir, model_dir):
    """What the index holds, read with FAISS alone: each row id, its vector, and the query encoder."""
    import faiss

    from pyserini_dense_ext.encoders import load_model

    index = faiss.read_index(str(index_dir / "index"))
    rows = index.reconstruct_n(0, index.ntotal)
    row_ids = (index_dir / "docid").read_text().split()
    return row_ids, rows, load_model(model_dir)


def brute_maxp(query_vector, row_ids, rows, docids):
    """Each document's score: the max inner product over every row whose id cuts to it at '#'."""
    scores = rows @ query_vector
    return [max(float(s) for r, s in zip(row_ids, scores) if r.split("#", 1)[0] == d) for d in docids]


@pytest.mark.parametrize("family", ["repbert", "mebert"])
def test_reranker_max_passage_scores_documents_by_their_best_passage(dense_passages, mebert_passages,
                                                                     tiny_family_dirs, family):
    from pyserini_dense_ext.index.vectors import open_doc_vectors
    from pyserini_dense_ext.rerank import Reranker

    index_dir = {"repbert": dense_passages, "mebert": mebert_passages}[family]
    row_ids, rows, model = passage_reference(index_dir, tiny_family_dirs[family])
    vectors = open_doc_vectors(index_dir, progress=False, passage_delimiter="#")
    assert not vectors.uniform and vectors.docids == [d["_id"] for d in long_docs()]
    with pytest.raises(ValueError, match="rows .passages., not one number"):
        vectors.rows_per_doc
    reranker = Reranker(vectors, tiny_family_dirs[family], max_passage_delimiter="#")
    rng = np.random.default_rng(3)
    subsets = [list(rng.permutation(vectors.docids)[:int(rng.integers(1, 15))]) for _ in QUERIES]
    ranked = reranker.rerank(QUERIES, subsets)
    query_vectors = model.encode(QUERIES, "query")
    for q, subset, (got_ids, got_scores) in zip(query_vectors, subsets, ranked):
        ref = dict(zip(subset, brute_maxp(q, row_ids, rows, subset)))
        assert sorted(got_ids.tolist()) == sorted(subset) and np.all(np.diff(got_scores) <= 0)
        np.testing.assert_allclose(got_scores, [ref[d] for d in got_ids], rtol=1e-5, atol=1e-6)
    # every document: the top 5 agree with scoring all documents by brute force
    top = reranker.rerank(QUERIES, [vectors.docids] * len(QUERIES), k=5)
    for q, (got_ids, got_scores) in zip(query_vectors, top):
        ref = np.sort(brute_maxp(q, row_ids, rows, vectors.docids))[::-1][:5]
        np.testing.assert_allclose(got_scores, ref, rtol=1e-5, atol=1e-6)


def rerank_cli(*args):
    from pyserini_dense_ext.cli import run_cli
    from pyserini_dense_ext.rerank.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(a) for a in args])
    return exit_info.value.code


@pytest.fixture()
def topics_file(tmp_path):
    return write_jsonl(tmp_path / "q.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(QUERIES)])


def test_rerank_cli_max_passage_reranks_a_document_run(dense_passages, tiny_family_dirs, topics_file, tmp_path):
    """A document-level first stage (here a shuffled run) reranked against the passage index: the top --depth
    documents by brute-force MaxP, --max-passage-hits written, document ids only."""
    from pyserini_dense_ext.io.runs import read_run, write_run

    row_ids, rows, model = passage_reference(dense_passages, tiny_family_dirs["repbert"])
    docids = [d["_id"] for d in long_docs()]
    rng = np.random.default_rng(5)
    first = {f"q{i}": [(d, float(-r)) for r, d in enumerate(rng.permutation(docids))] for i in range(len(QUERIES))}
    write_run(tmp_path / "first.trec", first)
    assert rerank_cli("--run", tmp_path / "first.trec", "--index", dense_passages, "--encoder",
                      tiny_family_dirs["repbert"], "--topics", topics_file, "--depth", 20, "--max-passage",
                      "--max-passage-hits", 7, "--output", tmp_path / "out.trec", "--quiet") == 0
    got = read_run(tmp_path / "out.trec")
    for i, q in enumerate(model.encode(QUERIES, "query")):
        top20 = [d for d, _ in first[f"q{i}"][:20]]
        ref = sorted(zip(top20, brute_maxp(q, row_ids, rows, top20)), key=lambda x: -x[1])[:7]
        assert [d for d, _ in got[f"q{i}"]] == [d for d, _ in ref]
        np.testing.assert_allclose([s for _, s in got[f"q{i}"]], [s for _, s in ref], rtol=1e-5, atol=1e-6)


def test_rerank_cli_max_passage_folds_a_passage_run(dense_passages, tiny_family_dirs, topics_file, tmp_path):
    """A passage-level run (ids docid#k): its passages re-scored by their own vectors, then folded as Pyserini's
    writer folds (each document at its best candidate passage, --max-passage-hits documents)."""
    from pyserini_dense_ext.io.runs import read_run, write_run

    class Hit:
        def __init__(self, docid, score):
            self.docid, self.score = docid, score

    row_ids, rows, model = passage_reference(dense_passages, tiny_family_dirs["repbert"])
    rng = np.random.default_rng(6)
    first = {f"q{i}": [(row_ids[j], float(-r)) for r, j in enumerate(rng.permutation(len(row_ids))[:60])]
             for i in range(len(QUERIES))}
    write_run(tmp_path / "first.trec", first)
    for hits in (4, 100):
        out = tmp_path / f"out{hits}.trec"
        assert rerank_cli("--run", tmp_path / "first.trec", "--index", dense_passages, "--encoder",
                          tiny_family_dirs["repbert"], "--topics", topics_file, "--depth", 50, "--max-passage",
                          "--max-passage-hits", hits, "--output", out, "--quiet") == 0
        got = read_run(out)
        for i, q in enumerate(model.encode(QUERIES, "query")):
            top50 = [d for d, _ in first[f"q{i}"][:50]]
            scored = sorted(((d, float(rows[row_ids.index(d)] @ q)) for d in top50), key=lambda x: -x[1])
            theirs = pyserini_max_passage([Hit(d, s) for d, s in scored], hits)
            assert [d for d, _ in got[f"q{i}"]] == [d for d, _ in theirs] and all("#" not in d for d, _ in theirs)
            np.testing.assert_allclose([s for _, s in got[f"q{i}"]], [s for _, s in theirs], rtol=1e-5, atol=1e-6)
        assert max(len(h) for h in got.values()) == min(hits, max(len({d.split("#")[0] for d, _ in h[:50]})
                                                                   for h in first.values()))


def test_rerank_cli_max_passage_bad_input(dense_passages, tiny_family_dirs, topics_file, tmp_path, capsys):
    run, out = tmp_path / "first.trec", tmp_path / "out.trec"
    base = ["--run", run, "--index", dense_passages, "--encoder", tiny_family_dirs["repbert"], "--topics",
            topics_file, "--output", out, "--quiet"]
    # documents against passages without --max-passage: the run, its line and field, and the flag to use
    run.write_text("q0 Q0 d3 1 3.0 x\n")
    assert rerank_cli(*base) == 2
    err = capsys.readouterr().err
    assert (f"{run}, line 1: field 'docid' names document 'd3', which the dense index ({dense_passages / 'docid'}) "
            "does not hold; the index holds its passages (d3#k): --max-passage") in err and one_error_line(err)
    # with --max-passage: a document not in the index, a run mixing documents and passages, --hits
    run.write_text("q0 Q0 d3 1 3.0 x\nq0 Q0 nope 2 2.0 x\n")
    assert rerank_cli(*base, "--max-passage") == 2
    assert f"{run}, line 2: field 'docid' names document 'nope'" in capsys.readouterr().err
    run.write_text("q0 Q0 d3 1 3.0 x\nq0 Q0 d4#0 2 2.0 x\n")
    assert rerank_cli(*base, "--max-passage") == 2
    assert (f"{run}: field 'docid' mixes passages ('d4#0') and documents ('d3')" in capsys.readouterr().err)
    assert rerank_cli(*base, "--max-passage", "--hits", 5) == 2
    assert "--max-passage-hits says how many documents are written" in capsys.readouterr().err
    assert rerank_cli(*base, "--max-passage", "--max-passage-hits", 0) == 2
    assert "--max-passage-hits must be positive" in capsys.readouterr().err
    run.write_text("q0 Q0 d3 1 3.0 x\n")
    assert rerank_cli(*base, "--max-passage", "--depth", 41) == 2
    assert "field 'depth' --depth 41 exceeds the 40 documents of the index" in capsys.readouterr().err
    assert not out.exists()


def test_hybrid_rerank_group_reranks_maxp_documents_by_their_best_passage(lucene_passages, dense_passages,
                                                                         tiny_family_dirs, topics_file, tmp_path):
    """``run --max-passage`` + ``rerank --encoder``: the fused documents re-scored against the dense group's passage
    index, each by its best passage (no rerank --index needed)."""
    from pyserini_dense_ext.io.runs import read_run
    from pyserini_dense_ext.search import DenseSearcher
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.__main__ import main

    from pyserini_dense_ext.encoders import load_model

    from conftest import make_tiny_bert

    coder = tmp_path / "coder"  # another query encoder of the index's family, as a CODER model is
    load_model(make_tiny_bert(tmp_path / "bert", seed=1), family="repbert", strict=False).save(coder)
    out = tmp_path / "run.trec"
    assert main(["dense", "--index", str(dense_passages), "--encoder", str(tiny_family_dirs["repbert"]),
                 "sparse", "--index", str(lucene_passages), "fusion", "--method", "rrf", "--hits", "50",
                 "run", "--topics", str(topics_file), "--output", str(out), "--max-passage", "--max-passage-hits", "6",
                 "--quiet", "rerank", "--encoder", str(coder)]) == 0
    run = read_run(out)
    qids = [f"q{i}" for i in range(len(QUERIES))]
    fused = HybridSearcher(DenseSearcher(dense_passages, tiny_family_dirs["repbert"]), lucene(lucene_passages),
                           max_passage_delimiter="#").batch_search(QUERIES, qids, k0=50, k=6, fusion="rrf")
    row_ids, rows, model = passage_reference(dense_passages, coder)
    for qid, q in zip(qids, model.encode(QUERIES, "query")):
        docs = [h.docid for h in fused[qid]]
        assert len(docs) == 6 and sorted(d for d, _ in run[qid]) == sorted(docs)
        ref = dict(zip(docs, brute_maxp(q, row_ids, rows, docs)))
        np.testing.assert_allclose([s for _, s in run[qid]], [ref[d] for d, _ in run[qid]], rtol=1e-5, atol=1e-6)
        assert [s for _, s in run[qid]] == sorted((s for _, s in run[qid]), reverse=True)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("passages,message", [
    (["8", "8"], "the stride (the tokens two passages share) must be smaller than the window, got window 8, stride 8"),
    (["4", "9"], "must be smaller than the window"),
    (["600", "10"], "a window of 600 tokens plus the 2 the encoder adds (repbert formatting) is longer than its "
                    "maximum of 256 tokens; use a window of at most 254"),
])
def test_bad_windows_exit_2_with_one_line(tiny_family_dirs, passage_corpus, tmp_path, passages, message, capsys):
    from pyserini_dense_ext.cli import run_cli
    from pyserini_dense_ext.encode.__main__ import main

    out = tmp_path / "idx"
    with pytest.raises(SystemExit) as e:
        run_cli(main, ["input", "--corpus", str(passage_corpus), "--passages", *passages, "encoder", "--encoder",
                       str(tiny_family_dirs["repbert"]), "output", "--index", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and one_error_line(err)
    assert not out.exists() and not (tmp_path / ".idx.partial").exists()


def test_a_docid_holding_the_separator_names_file_line_and_field(tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.encode.__main__ import main as encode_main
    from pyserini_dense_ext.index.lucene import main as lucene_main

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x y"}, {"_id": "b#2", "text": "z"}])
    with pytest.raises(InputError, match=r"c.jsonl, line 2: field '_id' docid 'b#2' contains '#'"):
        encode_main(["input", "--corpus", str(corpus), "--passages", "4", "1", "encoder", "--encoder",
                     str(tiny_family_dirs["repbert"]), "output", "--index", str(tmp_path / "i")])
    with pytest.raises(InputError, match=r"c.jsonl, line 2: field '_id' docid 'b#2' contains '#'"):
        lucene_main(["--corpus", str(corpus), "--index", str(tmp_path / "l"), "--passages", "4", "1"])
    assert lucene_main(["--corpus", str(corpus), "--index", str(tmp_path / "l"), "--quiet"]) == 0  # no split: fine


def test_passage_flags_need_passages(passage_corpus, tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.encode.__main__ import main as encode_main
    from pyserini_dense_ext.index.lucene import main as lucene_main

    with pytest.raises(ValueError, match="--title-prefix needs --passages"):
        encode_main(["input", "--corpus", str(passage_corpus), "--title-prefix", "encoder", "--encoder",
                     str(tiny_family_dirs["repbert"]), "output", "--index", str(tmp_path / "i")])
    with pytest.raises(SystemExit):
        lucene_main(["--corpus", str(passage_corpus), "--index", str(tmp_path / "l"), "--tokenizer", "x"])
