"""The quickstart end to end on a tiny BEIR folder and a tiny model (the README's command 1 at small scale)."""
from __future__ import annotations

import shutil

from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.io import read_qrels, read_run
from pyserini_dense_ext.quickstart import main

from conftest import write_jsonl


def test_quickstart_on_a_beir_folder(tiny_family_dirs, tiny_corpus, tmp_path, capsys):
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    shutil.copy(tiny_corpus, data / "corpus.jsonl")
    write_jsonl(data / "queries.jsonl", [{"_id": "1", "text": "cancer gene risk"}, {"_id": "2", "text": "wing flow"},
                                         {"_id": "3", "text": "not judged"}])
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td8\t2\n2\td9\t1\n")
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
    assert main(args) == 0
    assert printed.count("reusing") == 0 and capsys.readouterr().out.count("reusing") == 2
