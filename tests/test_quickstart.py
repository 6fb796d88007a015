"""The quickstart end to end on tiny BEIR folders and tiny models (the README's command 1 at small scale)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_qrels, read_run
from pyserini_dense_ext.quickstart import main

from conftest import write_jsonl


def beir_folder(root, corpus, queries, qrels_lines):
    (root / "qrels").mkdir(parents=True)
    shutil.copy(corpus, root / "corpus.jsonl")
    write_jsonl(root / "queries.jsonl", [{"_id": q, "text": t} for q, t in queries.items()])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels_lines))
    return root


@pytest.fixture()
def data(tiny_corpus, tmp_path):
    queries = {"1": "cancer gene risk", "2": "wing flow", "3": "not judged"}
    return beir_folder(tmp_path / "beir", tiny_corpus, queries, ["1\td1\t1\n", "1\td8\t2\n", "2\td9\t1\n"])


@pytest.fixture()
def other_data(tmp_path):
    """Another corpus whose docids overlap the first one's (d0..d5) but whose texts do not."""
    corpus = write_jsonl(tmp_path / "other.jsonl", [{"_id": f"d{i}", "text": t} for i, t in enumerate(
        ["mach number of the shock", "heat in the layer", "protein study in mice", "wing pressure", "gene", "a b"])])
    return beir_folder(tmp_path / "other", corpus, {"1": "shock wave", "2": "protein"}, ["1\td0\t1\n", "2\td2\t1\n"])


def printed_table(text):
    return {line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["BM25"], ["dense"],
                                                                                       ["hybrid"])}


def test_quickstart_on_a_beir_folder(tiny_family_dirs, data, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--data", str(data), "--encoder", str(tiny_family_dirs["repbert"]), "--output", str(out), "--hits", "5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    qrels = read_qrels(data / "qrels" / "test.tsv")
    for name in ("bm25", "dense", "hybrid"):
        run = read_run(out / "runs" / f"{name}.trec")
        assert set(run) == {"1", "2"}
        # BM25 only returns documents sharing a term with the query; dense (and so the fusion) fills all 5
        assert all(0 < len(hits) <= 5 if name == "bm25" else len(hits) == 5 for hits in run.values())
        ndcg = evaluate(run, qrels, ("ndcg@10",))["ndcg@10"]
        assert f"{ndcg:.4f}" in printed  # the printed table is the evaluation of the written run
    # the default fusion is auto, over all the queries at once, and the quickstart says so with its estimate
    from pyserini_dense_ext.fusion import as_hits, fuse, pool
    from pyserini_dense_ext.fusion.auto import calibrate

    bm25, dense = (read_run(out / "runs" / f"{name}.trec") for name in ("bm25", "dense"))
    assert {q: [d for d, _ in h] for q, h in read_run(out / "runs" / "hybrid.trec").items()} == \
        {q: [d for d, _ in h] for q, h in fuse([bm25, dense], "auto", k=5).items()}
    weight = calibrate([pool([as_hits(bm25.get(q, [])), as_hits(dense[q])]) for q in dense])["dense_weight"]
    assert "fusing BM25 and dense with auto (the default)" in printed
    assert f"auto: dense weight {weight:.2f} from 2 queries" in printed
    assert main(args) == 0
    assert printed.count("reusing") == 0 and capsys.readouterr().out.count("reusing") == 2


def test_another_corpus_in_the_same_output_is_refused_not_reused(tiny_family_dirs, data, other_data, tmp_path,
                                                                  capsys):
    """The bug: the second data set's runs came from the first one's indexes, all metrics 0, exit 0."""
    out = tmp_path / "out"
    model = ["--encoder", str(tiny_family_dirs["repbert"]), "--output", str(out), "--hits", "5"]
    assert main(["--data", str(data), *model]) == 0
    before = {p.name: p.read_bytes() for p in (out / "runs").iterdir()}
    capsys.readouterr()
    with pytest.raises(ValueError, match=r"bm25-index: it holds other documents.*dense-index: it holds other "
                                         r"documents.*--output DIR.*--overwrite"):
        main(["--data", str(other_data), *model])
    assert "reusing" not in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (out / "runs").iterdir()} == before  # the first runs are kept
    # --overwrite rebuilds both: the result equals a run into a fresh dir
    assert main(["--data", str(other_data), *model, "--overwrite"]) == 0
    rebuilt = printed_table(capsys.readouterr().out)
    fresh_out = tmp_path / "fresh"
    assert main(["--data", str(other_data), *model[:2], "--output", str(fresh_out), "--hits", "5"]) == 0
    fresh = printed_table(capsys.readouterr().out)
    assert [line.split()[:6] for line in rebuilt.values()] == [line.split()[:6] for line in fresh.values()]
    assert float(rebuilt["BM25"].split()[1]) > 0
    for name in ("bm25", "dense", "hybrid"):
        assert read_run(out / "runs" / f"{name}.trec") == read_run(fresh_out / "runs" / f"{name}.trec")


def test_reuse_is_keyed_on_the_models_content_not_its_path(tiny_family_dirs, data, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--data", str(data), "--output", str(out), "--hits", "5"]
    assert main(args + ["--encoder", str(tiny_family_dirs["repbert"])]) == 0
    link = tmp_path / "venv-link"
    link.symlink_to(tiny_family_dirs["repbert"], target_is_directory=True)
    copy = shutil.copytree(tiny_family_dirs["repbert"], tmp_path / "a-copy")
    capsys.readouterr()
    for same in (link, copy):  # the same model reached another way: reused, not re-encoded
        assert main(args + ["--encoder", str(same)]) == 0
        assert capsys.readouterr().out.count("reusing") == 2
    # same path, other weights: refused
    weights = next(copy.glob("*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"dense-index: another encoder made it \(differs in model_sha256\)"):
        main(args + ["--encoder", str(copy)])
    # and other encoding options: refused too
    with pytest.raises(ValueError, match=r"differs in l2_norm"):
        main(args + ["--encoder", str(tiny_family_dirs["repbert"]), "--l2-norm"])


def test_bad_arguments_fail_before_any_work(tiny_family_dirs, data, tmp_path, capsys):
    from pyserini_dense_ext.onnx import export_onnx

    out = tmp_path / "out"
    base = ["--data", str(data), "--output", str(out), "--encoder", str(tiny_family_dirs["repbert"])]
    with pytest.raises(SystemExit) as exit_:
        main(base + ["--fusion", "foo"])
    assert exit_.value.code == 2 and "invalid choice: 'foo'" in capsys.readouterr().err
    query = tmp_path / "q.onnx"
    export_onnx(tiny_family_dirs["repbert"], "query", query, optimize_graph=False, check=False)
    for encoder in ([query], [query, query]):
        with pytest.raises(ValueError, match="query and one document ONNX export|both query exports"):
            main(base[:-1] + [*map(str, encoder)])
    assert not out.exists()


def test_quickstart_with_a_query_and_a_document_onnx_export(tiny_family_dirs, data, tmp_path, capsys):
    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.index import read_index_dir
    from pyserini_dense_ext.io import read_corpus, read_topics
    from pyserini_dense_ext.onnx import OnnxQueryEncoder, export_onnx
    from pyserini_dense_ext.search import DenseSearcher

    exports = tmp_path / "exports"
    for side in ("query", "document"):
        export_onnx(tiny_family_dirs["repbert"], side, exports / f"{side}.onnx", optimize_graph=False, check=False)
    for encoder in ([exports / "document.onnx", exports / "query.onnx"], [exports]):  # two files, or their dir
        out = tmp_path / f"out{len(encoder)}"
        assert main(["--data", str(data), "--output", str(out), "--hits", "5", "--encoder", *map(str, encoder)]) == 0
        index, docids, _ = read_index_dir(out / "dense-index")
        torch_vectors = load_model(tiny_family_dirs["repbert"]).encode(
            [d.contents for d in read_corpus(data / "corpus.jsonl")], "document")
        np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), torch_vectors, atol=1e-4)
        topics = read_topics(data / "queries.jsonl", {"1", "2"})
        expected = DenseSearcher(out / "dense-index", OnnxQueryEncoder(str(exports / "query.onnx"))).search_run(
            topics, k=5, progress=False)
        assert {q: [d for d, _ in h] for q, h in read_run(out / "runs" / "dense.trec").items()} == \
               {q: [d for d, _ in h] for q, h in expected.items()}
