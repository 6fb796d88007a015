"""Bad input: every reader names the file, line and field, and the CLIs exit non-zero without a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_dense_ext.index.chunks import partial_dir
from pyserini_dense_ext.io import InputError, read_corpus, read_qrels, read_run, read_topics, write_run

ROOT = Path(__file__).resolve().parents[1]
GOOD = '{"_id": "d1", "title": "t", "text": "protein cells"}\n'


@pytest.mark.parametrize("line, field, message", [
    ('{"_id": "d2", "text": "x"', None, "not valid JSON"),
    ('{"title": "t", "text": "x"}', "id", "no document id"),
    ('{"_id": "d2", "title": "t"}', "text", "missing"),
    ('{"_id": "d2", "text": 5}', "text", "must be a string"),
    ('{"_id": "d2", "text": "   "}', "text", "is empty"),
    ('{"_id": "d 2", "text": "x"}', "_id", "no whitespace"),
    ('{"_id": "d1", "text": "again"}', "id", "duplicate docid 'd1'"),
    ('["not", "an", "object"]', None, "not a JSON object"),
])
def test_corpus_errors_name_file_line_field(tmp_path, line, field, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(GOOD + "\n" + line + "\n")
    with pytest.raises(InputError) as err:
        read_corpus(path)
    text = str(err.value)
    assert str(path) in text and "line 3" in text and message in text
    if field:
        assert f"field '{field}'" in text


def test_non_utf8_corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(GOOD.encode() + b'{"_id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"line 2: is not valid UTF-8"):
        read_corpus(path)


def test_empty_documents_policy(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(GOOD + '{"_id": "d2", "title": "", "text": ""}\n')
    assert [d.docid for d in read_corpus(path, empty="skip")] == ["d1"]
    kept = read_corpus(path, empty="keep")
    assert [d.docid for d in kept] == ["d1", "d2"] and kept[1].contents == ""


def test_jsoncollection_dir_and_contents_field(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"id": "2", "contents": "second"}\n')
    (tmp_path / "a.jsonl").write_text('{"id": 1, "contents": "first"}\n')
    docs = read_corpus(tmp_path)
    assert [(d.docid, d.contents) for d in docs] == [("1", "first"), ("2", "second")]


def test_topics_qrels_runs(tmp_path):
    tsv = tmp_path / "topics.tsv"
    tsv.write_text("1\tfirst query\n2\tsecond\n")
    assert read_topics(tsv) == {"1": "first query", "2": "second"}
    assert read_topics(tsv, {"2"}) == {"2": "second"}
    with pytest.raises(InputError, match="lacks 1 queries"):
        read_topics(tsv, {"2", "9"})
    tsv.write_text("1\tfirst\n2 no tab\n")
    with pytest.raises(InputError, match=r"topics.tsv, line 2: field 'text'"):
        read_topics(tsv)
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\tx\n")
    with pytest.raises(InputError, match=r"line 3: field 'score'"):
        read_qrels(qrels)
    run = tmp_path / "run.trec"
    run.write_text("1 Q0 d1 1 2.5 t\n1 Q0 d2 2 abc t\n")
    with pytest.raises(InputError, match=r"run.trec, line 2: field 'score'"):
        read_run(run)
    run.write_text("1 Q0 d1 1 2.5 t\n1 Q0 d1 2 1.0 t\n")
    with pytest.raises(InputError, match=r"line 2: field 'docid' duplicate docid 'd1' for query '1'"):
        read_run(run)


def test_run_round_trip_and_formats(tmp_path):
    run = {"q1": [("d1", 3.0), ("d2", 1.5)], "q2": [("d3", 0.25)]}
    write_run(tmp_path / "r.trec", run, tag="x")
    assert read_run(tmp_path / "r.trec") == run
    write_run(tmp_path / "r.tsv", run, fmt="msmarco")
    assert (tmp_path / "r.tsv").read_text().splitlines()[1] == "q1\td2\t2"
    assert read_run(tmp_path / "r.tsv") == {"q1": [("d1", 1.0), ("d2", 0.5)], "q2": [("d3", 1.0)]}


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_encode_cli_bad_corpus_exits_2_and_writes_nothing(tiny_family_dirs, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(GOOD + '{"_id": "d2", "text": ""}\n')
    out = tmp_path / "idx"
    result = cli("pyserini_dense_ext.encode", "input", "--corpus", str(corpus), "encoder", "--encoder",
                 str(tiny_family_dirs["repbert"]), "output", "--index", str(out))
    assert result.returncode == 2
    assert f"{corpus}, line 2: field 'text' is empty" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not partial_dir(out).exists()


def test_search_cli_not_a_model_and_dimension_mismatch(tiny_family_dirs, tiny_corpus, tmp_path):
    from test_index_search import build

    index = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    topics = tmp_path / "t.tsv"
    topics.write_text("1\tprotein\n")
    not_model = tmp_path / "not-a-model"
    not_model.mkdir()
    result = cli("pyserini_dense_ext.search", "--index", str(index), "--encoder", str(not_model), "--topics",
                 str(topics), "--output", str(tmp_path / "run"))
    assert result.returncode == 2 and "config.json" in result.stderr and "Traceback" not in result.stderr
    result = cli("pyserini_dense_ext.search", "--index", str(index), "--encoder", str(tiny_family_dirs["mebert"]),
                 "--topics", str(topics), "--output", str(tmp_path / "run"))
    assert result.returncode == 2 and "dimension 32" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module", ["pyserini_dense_ext.encode", "pyserini_dense_ext.search",
                                    "pyserini_dense_ext.quickstart", "pyserini_dense_ext.eval"])
def test_every_cli_has_help(module):
    result = cli(module, "--help")
    assert result.returncode == 0 and "usage" in result.stdout.lower() and len(result.stdout) > 300
