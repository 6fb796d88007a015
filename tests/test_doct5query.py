"""docT5query: query generation (distribution, reproducibility, resume, shards, Ray), prediction readers,
expanded Lucene indexes opened by Pyserini and searched by the hybrid, quickstart --expansions."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.io.corpus import Doc, read_corpus
from pyserini_dense_ext.io.errors import InputError

from conftest import crash_on_call, one_error_line, write_jsonl

TEXTS = ["protein expression in human cells", "cancer risk and gene expression", "heat flow in a boundary layer",
         "shock wave at mach number two", "mice study of disease treatment", "wing", "reduced effect",
         "increased risk of cancer in patients with the gene", "pressure on aircraft wing in flow"]


@pytest.fixture()
def corpus(tmp_path):
    rows = [{"_id": f"d{i}", "title": "" if i % 3 else "title words", "text": t} for i, t in enumerate(TEXTS)]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def expand_cli(corpus, model, out, *extra):
    from pyserini_dense_ext.expand.__main__ import main

    assert main(["--corpus", str(corpus), "--model", str(model), "--output", str(out), "--num-samples", "4",
                 "--max-new-tokens", "6", "--quiet", *map(str, extra)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_samples_follow_top_k_softmax_of_the_model(tiny_t5, temperature):
    """The Gumbel-max sampler draws first tokens with the top-k softmax of the model's own first-step scores."""
    import torch

    from pyserini_dense_ext.expand import QueryGenerator, Sampling

    n = 3000
    generator = QueryGenerator(tiny_t5, Sampling(num_samples=n, max_new_tokens=1, temperature=temperature), "cpu", 1)
    doc = Doc("d0", TEXTS[7])
    got = generator.predict([doc])[0]["predicted_queries"]
    tokenizer, model = generator.tokenizer, generator.model
    with torch.no_grad():  # the reference: one forward pass, top 10 of the scores, softmax at the temperature
        ids = tokenizer([doc.contents], return_tensors="pt")["input_ids"]
        logits = model(input_ids=ids, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits[0, -1]
    top = torch.topk(logits, 10)
    probs = torch.softmax(top.values / temperature, -1).numpy()
    words = [tokenizer.decode([int(t)], skip_special_tokens=True) for t in top.indices]
    expected: dict[str, float] = {}
    for w, p in zip(words, probs):
        expected[w] = expected.get(w, 0.0) + float(p)
    assert set(got) <= set(expected)  # nothing outside the top 10
    observed = {w: got.count(w) / n for w in expected}
    assert 0.5 * sum(abs(observed[w] - expected[w]) for w in expected) < 0.05  # total variation; ~0.02 by chance


@pytest.mark.parametrize("row,k,candidates", [
    ([3.0, 2.0, 1.0, 0.0, -1.0], 2, [0, 1]),  # plain top 2
    ([5.0, 1.0, 1.0, 1.0, -2.0], 2, [0, 1, 2, 3]),  # a tie at the cut: every tied token is a candidate (HF's rule)
    ([0.5, -1.0, 2.0], 10, [0, 1, 2]),  # k beyond the vocabulary: all tokens
])
def test_sampler_draws_the_top_k_softmax_including_ties_at_the_cut(row, k, candidates):
    import torch

    from pyserini_dense_ext.expand import DocumentSampler, Sampling

    n = 20000
    sampler = DocumentSampler([7], Sampling(num_samples=n, top_k=k, temperature=0.7), "cpu")
    out = sampler(None, torch.tensor([row] * n))
    assert torch.isfinite(out).sum(-1).eq(1).all()  # exactly one token per row survives, for greedy decoding
    counts = np.bincount(out.argmax(-1).numpy(), minlength=len(row)) / n
    expected = np.zeros(len(row))
    expected[candidates] = torch.softmax(torch.tensor(row)[candidates] / 0.7, -1).numpy()
    assert set(np.flatnonzero(counts)) <= set(candidates)
    np.testing.assert_allclose(counts, expected, atol=0.015)  # 20,000 draws: standard error <= 0.0036


def test_same_seed_same_predictions_whatever_the_batching(tiny_t5, corpus, tmp_path):
    """A document's queries depend on the seed and the document only: not on batch size, chunking or shards."""
    reference = expand_cli(corpus, tiny_t5, tmp_path / "a.jsonl", "--batch-size", 1, "--chunk-size", 2)
    assert reference == expand_cli(corpus, tiny_t5, tmp_path / "b.jsonl", "--batch-size", 4, "--chunk-size", 5)
    shards = [expand_cli(corpus, tiny_t5, tmp_path / f"s{i}.jsonl", "--shard-id", i, "--shard-num", 2,
                         "--batch-size", 3) for i in range(2)]
    assert shards[0] + shards[1] == reference
    assert [r["id"] for r in reference] == [f"d{i}" for i in range(len(TEXTS))]
    assert all(len(r["predicted_queries"]) == 4 for r in reference)
    queries = [q for r in reference for q in r["predicted_queries"]]
    assert len(set(queries)) > len(queries) // 2  # real sampling: mostly different queries
    other = expand_cli(corpus, tiny_t5, tmp_path / "c.jsonl", "--seed", 1)
    assert other != reference and [r["id"] for r in other] == [r["id"] for r in reference]


def test_a_killed_run_resumes_to_the_same_file(tiny_t5, corpus, tmp_path):
    from pyserini_dense_ext.expand import QueryGenerator, Sampling, expand_corpus
    from pyserini_dense_ext.index.chunks import partial_dir

    docs = read_corpus(corpus)
    sampling = Sampling(num_samples=3, max_new_tokens=5)
    generator = QueryGenerator(tiny_t5, sampling, "cpu", 2)
    job = {"model": "tiny", **sampling.to_dict()}
    whole = expand_corpus(docs, generator, tmp_path / "whole.jsonl", job, chunk_size=2, progress=False)
    out = tmp_path / "resumed.jsonl"
    with crash_on_call(generator, "predict", 3), pytest.raises(KeyboardInterrupt):
        expand_corpus(docs, generator, out, job, chunk_size=2, progress=False)
    assert not out.exists() and len(list(partial_dir(out).glob("chunk-*.jsonl"))) == 2
    real, calls = generator.predict, []
    generator.predict = lambda chunk, progress=False: calls.append(len(chunk)) or real(chunk, progress)
    expand_corpus(docs, generator, out, job, chunk_size=2, progress=False)
    del generator.predict
    assert calls == [2, 2, 1]  # only the three unfinished chunks
    assert out.read_bytes() == whole.read_bytes() and not partial_dir(out).exists()
    other = tmp_path / "other.jsonl"
    with crash_on_call(generator, "predict", 2), pytest.raises(KeyboardInterrupt):
        expand_corpus(docs, generator, other, job, chunk_size=2, progress=False)
    with pytest.raises(ValueError, match="other arguments"):  # chunks of another seed are not resumed
        expand_corpus(docs, generator, other, {**job, "seed": 5}, chunk_size=2, progress=False)


def test_expansion_on_ray_equals_one_process(tiny_t5, corpus, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (extra 'ray')")
    single = expand_cli(corpus, tiny_t5, tmp_path / "one.jsonl", "--chunk-size", 3)
    assert expand_cli(corpus, tiny_t5, tmp_path / "ray.jsonl", "--chunk-size", 3, "--ray", "--ray-workers", 2) == single


@pytest.mark.parametrize("args,message", [
    (["--top-k", "0"], "--top-k must be positive"),
    (["--temperature", "0"], "--temperature must be positive"),
    (["--shard-id", "2", "--shard-num", "2"], "shard-id"),
])
def test_bad_settings_exit_2_with_one_line(tiny_t5, corpus, tmp_path, args, message, capsys):
    from pyserini_dense_ext.cli import run_cli
    from pyserini_dense_ext.expand.__main__ import main

    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as e:
        run_cli(main, ["--corpus", str(corpus), "--model", str(tiny_t5), "--output", str(out), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and one_error_line(err) and not out.exists()


def test_a_model_that_is_not_seq2seq_is_an_input_error(tiny_bert, corpus, tmp_path):
    from pyserini_dense_ext.expand.__main__ import main

    with pytest.raises(InputError, match="not a sequence-to-sequence model"):
        main(["--corpus", str(corpus), "--model", str(tiny_bert), "--output", str(tmp_path / "o.jsonl")])


# ---------------------------------------------------------------- reading predictions
def test_jsonl_reader_names_file_line_and_field(tmp_path):
    from pyserini_dense_ext.io.expansions import read_predictions_jsonl

    good = write_jsonl(tmp_path / "a.jsonl", [{"id": "d0", "predicted_queries": ["q one", " q two "]},
                                              {"id": 7, "predicted_queries": []}])
    predictions, where = read_predictions_jsonl([good])
    assert predictions == {"d0": ["q one", "q two"], "7": []} and where["7"] == (good, 2)
    bad = write_jsonl(tmp_path / "b.jsonl", [{"id": "d1", "predicted_queries": ["x"]},
                                             {"id": "d2", "predicted_queries": "not a list"}])
    with pytest.raises(InputError, match=r"b.jsonl, line 2: field 'predicted_queries' must be a list of strings"):
        read_predictions_jsonl([bad])
    dup = write_jsonl(tmp_path / "c.jsonl", [{"id": "d0", "predicted_queries": ["x"]}])
    with pytest.raises(InputError, match=r"c.jsonl, line 1: field 'id' duplicate id 'd0' \(first in .*a.jsonl, line 1"):
        read_predictions_jsonl([good, dup])


def test_released_lines_pair_by_position_one_file_per_sample(tmp_path):
    from pyserini_dense_ext.io.expansions import expand_docs, read_predictions_lines

    docs = [Doc("a", "alpha"), Doc("b", "beta", "title"), Doc("c", "gamma")]
    (tmp_path / "sample000.txt").write_text("qa0\nqb0\nqc0\n")
    (tmp_path / "sample001.txt").write_text("qa1\n\nqc1\n")  # a blank line: no prediction from this sample
    files = [tmp_path / "sample000.txt", tmp_path / "sample001.txt"]
    predictions = read_predictions_lines(files, docs, "corpus.jsonl")
    assert predictions == {"a": ["qa0", "qa1"], "b": ["qb0"], "c": ["qc0", "qc1"]}
    expanded = expand_docs(docs, predictions, 1, "p", "corpus.jsonl")
    assert [d.contents for d in expanded] == ["alpha\nqa0", "title beta\nqb0", "gamma\nqc0"]
    assert expand_docs(docs, predictions, None, "p", "c")[2].contents == "gamma\nqc0 qc1"
    (tmp_path / "short.txt").write_text("qa0\nqb0\n")
    with pytest.raises(InputError, match=r"short.txt: has 2 lines but the collection corpus.jsonl has 3 documents"):
        read_predictions_lines([tmp_path / "short.txt"], docs, "corpus.jsonl")


def test_every_document_needs_predictions_and_every_prediction_a_document(tmp_path):
    from pyserini_dense_ext.io.expansions import expand_docs, read_predictions_jsonl

    docs = [Doc("a", "alpha"), Doc("b", "beta")]
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "predicted_queries": ["x"]}])
    predictions, where = read_predictions_jsonl([path])
    with pytest.raises(InputError, match=r"p.jsonl: has no predictions for 1 of the documents of corpus.jsonl "
                                         r"\(first: 'b'\)"):
        expand_docs(docs, predictions, None, path, "corpus.jsonl", where)
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "predicted_queries": ["x"]},
                                              {"id": "b", "predicted_queries": ["y"]},
                                              {"id": "zz", "predicted_queries": ["z"]}])
    predictions, where = read_predictions_jsonl([path])
    with pytest.raises(InputError, match=r"q.jsonl, line 3: field 'id' id 'zz' is not a document of corpus.jsonl"):
        expand_docs(docs, predictions, None, path, "corpus.jsonl", where)


# ---------------------------------------------------------------- expanded Lucene indexes
def lucene(path):
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(path))
    searcher.set_bm25(0.9, 0.4)
    return searcher


@pytest.fixture()
def predictions(tmp_path):
    """Hand-made predictions whose words are in no document, so a hit on them can only come from the expansion."""
    rows = [{"id": f"d{i}", "predicted_queries": [f"zebra{i} giraffe", f"okapi{i}", f"lemur{i} lemur{i}"]}
            for i in range(len(TEXTS))]
    return write_jsonl(tmp_path / "pred.jsonl", rows)


def test_expanded_index_is_pyserinis_and_holds_the_first_n_predictions(corpus, predictions, tmp_path):
    from pyserini_dense_ext.index.lucene import LuceneRecord, main

    out = tmp_path / "bm25-d2q"
    assert main(["--corpus", str(corpus), "--index", str(out), "--expansions", str(predictions), "--copies", "2",
                 "--threads", "1", "--quiet"]) == 0
    searcher = lucene(out)
    assert searcher.num_docs == len(TEXTS)
    for doc in read_corpus(corpus):
        i = doc.docid[1:]
        assert json.loads(searcher.doc(doc.docid).raw()) == {"id": doc.docid,
                                                             "contents": f"{doc.contents}\nzebra{i} giraffe okapi{i}"}
    assert [h.docid for h in searcher.search("okapi4")] == ["d4"]  # a predicted word finds its document
    assert searcher.search("lemur4") == []  # the third prediction was not appended (--copies 2)
    record = LuceneRecord.of(out)
    assert record.expansions["copies"] == 2 and record.expansions["files"][0]["name"] == "pred.jsonl"
    assert len(record.expansions["files"][0]["sha256"]) == 64


def test_array_bm25_and_hybrid_on_an_expanded_index_equal_batch_search(corpus, predictions, tiny_family_dirs,
                                                                       tmp_path):
    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.index.encode import encode_corpus
    from pyserini_dense_ext.index.lucene import build_lucene_index, prepare_docs
    from pyserini_dense_ext.search import DenseSearcher
    from pyserini_dense_ext.search.hybrid import HybridSearcher
    from pyserini_dense_ext.search.hybrid.sparse import ArraySparse

    docs = read_corpus(corpus)
    expanded, record = prepare_docs(docs, corpus, [predictions], progress=False)
    index = build_lucene_index(expanded, tmp_path / "bm25", threads=1, progress=False, record=record)
    searcher = lucene(index)
    queries = ["giraffe", "okapi3 cancer risk", "wing flow zebra8", "nothing zzz", "lemur1 lemur2 gene"]
    for k in (1, 3, 100):
        theirs = searcher.batch_search(queries, [str(i) for i in range(len(queries))], k=k, threads=2)
        mine = ArraySparse(searcher).hits(queries, k, threads=2)
        for i, (ids, scores) in enumerate(mine):
            assert list(zip(ids.tolist(), scores.tolist())) == [(h.docid, h.score) for h in theirs[str(i)]]
    dense_dir = encode_corpus(docs, load_model(tiny_family_dirs["repbert"]), tmp_path / "dense", {"model": "r"},
                              progress=False)
    hybrid = HybridSearcher(DenseSearcher(dense_dir, tiny_family_dirs["repbert"]), searcher)
    theirs = searcher.batch_search(queries, [str(i) for i in range(len(queries))], k=5, threads=1)
    for i, (ids, scores) in enumerate(hybrid.sparse_hits(queries, 5)):
        assert list(zip(ids.tolist(), scores.tolist())) == [(h.docid, h.score) for h in theirs[str(i)]]
    fused = hybrid.batch_search(queries, [str(i) for i in range(len(queries))], k0=5, k=5, fusion="rrf")
    assert fused["0"][0].docid in {h.docid for h in theirs["0"]}  # "giraffe" is only in the expansions


def test_hybrid_cli_and_released_format_with_skipped_empty_documents(corpus, tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.encode.__main__ import main as encode_main
    from pyserini_dense_ext.index.lucene import main as lucene_main
    from pyserini_dense_ext.io.runs import read_run
    from pyserini_dense_ext.search.hybrid.__main__ import main as hybrid_main

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    rows.insert(2, {"_id": "empty", "title": "", "text": ""})  # --empty skip drops it; its line still pairs
    write_jsonl(corpus, rows)
    lines = [f"okapi{r['_id']}" for r in rows]
    (tmp_path / "sample000.txt").write_text("\n".join(lines) + "\n")
    bm25 = tmp_path / "bm25"
    assert lucene_main(["--corpus", str(corpus), "--index", str(bm25), "--empty", "skip", "--expansions",
                        str(tmp_path / "sample000.txt"), "--expansions-format", "lines", "--quiet"]) == 0
    assert [h.docid for h in lucene(bm25).search("okapid3")] == ["d3"]
    dense = tmp_path / "dense"
    assert encode_main(["input", "--corpus", str(corpus), "--empty", "skip", "encoder", "--encoder",
                        str(tiny_family_dirs["repbert"]), "output", "--index", str(dense), "--quiet"]) == 0
    write_jsonl(tmp_path / "q.jsonl", [{"_id": "1", "text": "okapid3 wave"}, {"_id": "2", "text": "cancer"}])
    run_file = tmp_path / "run.trec"
    assert hybrid_main(["dense", "--index", str(dense), "--encoder", str(tiny_family_dirs["repbert"]),
                        "sparse", "--index", str(bm25), "fusion", "--method", "rrf", "run", "--topics",
                        str(tmp_path / "q.jsonl"), "--output", str(run_file), "--hits", "3", "--quiet"]) == 0
    run = read_run(run_file)
    assert run["1"][0][0] == "d3" and all(len(h) == 3 for h in run.values())
    with pytest.raises(ValueError, match=r"--copies 2, but the released format gives one prediction per file"):
        lucene_main(["--corpus", str(corpus), "--index", str(tmp_path / "x"), "--empty", "skip", "--expansions",
                     str(tmp_path / "sample000.txt"), "--expansions-format", "lines", "--copies", "2"])


def test_generated_expansions_end_to_end(tiny_t5, corpus, tmp_path):
    """expand's output, indexed: every document's contents end with its own first two generated queries."""
    from pyserini_dense_ext.index.lucene import main

    rows = expand_cli(corpus, tiny_t5, tmp_path / "gen.jsonl")
    out = tmp_path / "bm25"
    assert main(["--corpus", str(corpus), "--index", str(out), "--expansions", str(tmp_path / "gen.jsonl"),
                 "--copies", "2", "--quiet"]) == 0
    searcher = lucene(out)
    for row in rows:
        contents = json.loads(searcher.doc(row["id"]).raw())["contents"]
        assert contents.endswith("\n" + " ".join(row["predicted_queries"][:2]))


def test_quickstart_with_expansions_reuses_bm25_only_for_the_same_ones(tiny_family_dirs, corpus, predictions,
                                                                        tmp_path, capsys):
    from pyserini_dense_ext.index.lucene import LuceneRecord
    from pyserini_dense_ext.io import read_run
    from pyserini_dense_ext.quickstart import main

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    shutil.copy(corpus, data / "corpus.jsonl")
    write_jsonl(data / "queries.jsonl", [{"_id": "1", "text": "okapi4"}, {"_id": "2", "text": "wing flow"}])
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td4\t1\n2\td8\t1\n")
    out = tmp_path / "out"
    args = ["--data", str(data), "--encoder", str(tiny_family_dirs["repbert"]), "--output", str(out), "--hits", "5"]
    assert main(args + ["--expansions", str(predictions), "--copies", "2"]) == 0
    assert read_run(out / "runs" / "bm25.trec")["1"][0][0] == "d4"  # found through its predictions
    assert LuceneRecord.of(out / "bm25-index").expansions["copies"] == 2
    capsys.readouterr()
    assert main(args + ["--expansions", str(predictions), "--copies", "2"]) == 0
    assert capsys.readouterr().out.count("reusing") == 2
    with pytest.raises(ValueError, match=r"bm25-index: it was built with other options \(expansions\)"):
        main(args + ["--expansions", str(predictions), "--copies", "1"])  # other copies: refused, as main's rule
    assert LuceneRecord.of(out / "bm25-index").expansions["copies"] == 2
    capsys.readouterr()
    assert main(args + ["--expansions", str(predictions), "--copies", "1", "--overwrite"]) == 0  # BM25 rebuilt
    assert capsys.readouterr().out.count("reusing") == 1  # the dense index still is reused
    assert LuceneRecord.of(out / "bm25-index").expansions["copies"] == 1
    assert main(args + ["--overwrite"]) == 0  # no expansions: rebuilt plain
    assert LuceneRecord.of(out / "bm25-index").expansions is None and "1" not in read_run(out / "runs" / "bm25.trec")
