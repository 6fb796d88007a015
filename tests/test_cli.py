"""The command line as a user meets it: console scripts, closed pipes, run formats and tags, encode's options."""
from __future__ import annotations

import configparser
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext import cli
from pyserini_dense_ext.encode.__main__ import main as encode_main
from pyserini_dense_ext.index import read_index_dir
from pyserini_dense_ext.io import read_corpus, read_run, write_run

from conftest import WORDS, write_jsonl
from test_index_search import QUERIES, build

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def console_scripts() -> dict[str, str]:
    """``setup.cfg``'s console scripts: name -> attribute of ``pyserini_dense_ext.cli``."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.split("=") for line in config["options.entry_points"]["console_scripts"].strip().splitlines()]
    return {name.strip(): target.strip().split(":")[1] for name, target in lines}


# ----- console scripts -----------------------------------------------------------------------------

def test_every_readme_command_has_a_console_script():
    """The README says every command has one; index.lucene had none."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = set(re.findall(r"python -m (pyserini_dense_ext(?:\.[a-z_]+)*)", readme))
    assert len(commands) >= 11
    scripted = {getattr(cli, attr).module for attr in console_scripts().values()}
    for command in commands:
        module = command if (ROOT / (command.replace(".", "/") + ".py")).is_file() else command + ".__main__"
        assert module in scripted, command


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_console_script_is_installed_and_helps(name, monkeypatch, capsys):
    assert (Path(sys.executable).parent / name).is_file(), f"{name}: reinstall with pip install -e ."
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exit_:
        getattr(cli, console_scripts()[name])()
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "usage: python -m pyserini_dense_ext" in out and "example" in out.lower()


def test_an_installed_console_script_runs_its_command(tiny_corpus, tmp_path):
    script = Path(sys.executable).parent / "dense-ext-index-lucene"
    out = tmp_path / "bm25"
    done = subprocess.run([str(script), "--corpus", str(tiny_corpus), "--index", str(out)], capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from pyserini.search.lucene import LuceneSearcher

    assert LuceneSearcher(str(out)).num_docs == 12


# ----- a closed output pipe ------------------------------------------------------------------------

def read_one_line_then_close(cmd: list[str]) -> subprocess.CompletedProcess:
    """Start ``cmd``, read its first line and close the pipe, as ``cmd | head -1`` does."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, first.decode(), stderr)


def test_eval_per_query_into_a_closed_pipe_exits_quietly(tmp_path):
    qids = [f"query-{i:05d}" for i in range(4000)]  # ~200 KB of table: more than a pipe buffers
    write_run(tmp_path / "run.trec", {q: [("d1", 2.0), ("d2", 1.0)] for q in qids})
    (tmp_path / "qrels.txt").write_text("".join(f"{q} 0 d1 1\n" for q in qids))
    done = read_one_line_then_close([sys.executable, "-m", "pyserini_dense_ext.eval", "--run", str(tmp_path / "run.trec"),
                                     "--qrels", str(tmp_path / "qrels.txt"), "--per-query"])
    assert done.stdout.startswith("query")
    assert done.stderr == "" and done.returncode == cli.SIGPIPE_EXIT


def test_run_cli_stops_quietly_when_buffered_output_meets_a_closed_pipe():
    """The one place every command goes through; output still in Python's buffer at exit is the hard case."""
    program = ("import sys\nfrom pyserini_dense_ext.cli import run_cli\n"
               "def main(argv):\n    for i in range(100000):\n        print('line', i)\n    return 0\nrun_cli(main)\n")
    done = read_one_line_then_close([sys.executable, "-c", program])
    assert done.stdout == "line 0\n" and done.stderr == "" and done.returncode == cli.SIGPIPE_EXIT


# ----- run formats and tags ------------------------------------------------------------------------

def check_formats(trec: Path, msmarco: Path, tag: str) -> None:
    """Same rankings in both files; TREC lines carry the tag, MS MARCO lines are qid, docid, rank."""
    trec_lines = [line.split() for line in trec.read_text().splitlines()]
    assert trec_lines and {line[5] for line in trec_lines} == {tag} and {line[1] for line in trec_lines} == {"Q0"}
    marco_lines = [line.split("\t") for line in msmarco.read_text().splitlines()]
    assert [(q, d, r) for q, _, d, r, _, _ in trec_lines] == [tuple(line) for line in marco_lines]
    assert {q: [d for d, _ in h] for q, h in read_run(msmarco).items()} == \
        {q: [d for d, _ in h] for q, h in read_run(trec).items()}


def test_search_cli_output_format_and_run_tag(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.search.__main__ import main

    index = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    common = ["--index", str(index), "--encoder", str(tiny_family_dirs["repbert"]), "--topics", str(topics),
              "--hits", "4", "--quiet"]
    assert main(common + ["--output", str(tmp_path / "a.trec"), "--run-tag", "my-tag"]) == 0
    assert main(common + ["--output", str(tmp_path / "a.tsv"), "--output-format", "msmarco"]) == 0
    check_formats(tmp_path / "a.trec", tmp_path / "a.tsv", "my-tag")


def test_hybrid_and_fuse_cli_output_format_and_run_tag(tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini_dense_ext.fusion.__main__ import main as fuse_main
    from pyserini_dense_ext.index.lucene import build_lucene_index
    from pyserini_dense_ext.search.hybrid.__main__ import main as hybrid_main

    index = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    bm25 = build_lucene_index(read_corpus(tiny_corpus), tmp_path / "bm25", progress=False)
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    groups = ["dense", "--index", str(index), "--encoder", str(tiny_family_dirs["repbert"]), "sparse", "--index",
              str(bm25), "fusion", "--method", "rrf", "run", "--topics", str(topics), "--hits", "5", "--quiet"]
    assert hybrid_main(groups + ["--output", str(tmp_path / "h.trec"), "--run-tag", "hyb"]) == 0
    assert hybrid_main(groups + ["--output", str(tmp_path / "h.tsv"), "--output-format", "msmarco"]) == 0
    check_formats(tmp_path / "h.trec", tmp_path / "h.tsv", "hyb")
    assert hybrid_main(groups + ["--output", str(tmp_path / "default.trec")]) == 0
    assert (tmp_path / "default.trec").read_text().split("\n")[0].split()[-1] == "hybrid-rrf"
    runs = ["--runs", str(tmp_path / "h.trec"), str(tmp_path / "h.trec"), "--method", "combsum"]
    assert fuse_main(runs + ["--output", str(tmp_path / "f.trec"), "--run-tag", "fused"]) == 0
    assert fuse_main(runs + ["--output", str(tmp_path / "f.tsv"), "--output-format", "msmarco"]) == 0
    check_formats(tmp_path / "f.trec", tmp_path / "f.tsv", "fused")


# ----- encode's output and input options -----------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_300(tmp_path_factory) -> Path:
    """300 distinct documents: enough rows to train 8-bit PQ codebooks."""
    rng = random.Random(3)
    texts: dict[str, None] = {}
    while len(texts) < 300:
        texts[" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))] = None
    rows = [{"_id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    return write_jsonl(tmp_path_factory.mktemp("c300") / "corpus.jsonl", rows)


@pytest.mark.parametrize("index_type, options, expected", [
    ("flat-fp16", [], {}),
    ("hnsw", ["--hnsw-m", "8", "--ef-construction", "40", "--ef-search", "64"],
     {"hnsw_m": 8, "ef_construction": 40, "ef_search": 64}),
    ("pq", ["--pq-m", "8"], {"pq_m": 8, "pq_nbits": 8}),
])
def test_encode_index_type_and_its_options_reach_the_faiss_index(tiny_family_dirs, corpus_300, tmp_path, capfd,
                                                                  index_type, options, expected):
    from pyserini_dense_ext.encoders import load_model

    out = tmp_path / "idx"
    assert encode_main(["input", "--corpus", str(corpus_300), "encoder", "--encoder", str(tiny_family_dirs["repbert"]),
                        "output", "--index", str(out), "--index-type", index_type, *options, "--quiet"]) == 0
    index, docids, meta = read_index_dir(out)
    assert meta.index_type == index_type and meta.index_options == expected
    typed = faiss.downcast_index(index)  # (a view: `index` keeps owning the memory)
    assert type(typed).__name__ == {"flat-fp16": "IndexScalarQuantizer", "hnsw": "IndexHNSWFlat",
                                    "pq": "IndexPQ"}[index_type]
    if index_type == "hnsw":  # the graph really has degree M (2M at level 0); efSearch is stored in the file too
        assert (typed.hnsw.nb_neighbors(0), typed.hnsw.nb_neighbors(1), typed.hnsw.efSearch) == (16, 8, 64)
    if index_type == "pq":
        assert (typed.pq.M, typed.pq.nbits) == (8, 8)
        err = capfd.readouterr().err  # 300 vectors are too few for 256 centroids: said once, not 8 times
        assert err.count("PQ codebooks trained on 300 vectors") == 1 and "WARNING clustering" not in err
    docs = read_corpus(corpus_300)
    vectors = load_model(tiny_family_dirs["repbert"]).encode([d.contents for d in docs], "document")
    if index_type != "pq":  # rows kept exactly (HNSW) or to fp16 precision
        np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), vectors, rtol=2 ** -10, atol=1e-6)


@pytest.mark.parametrize("policy", ["error", "skip", "keep"])
def test_encode_empty_policy(tiny_family_dirs, tmp_path, policy, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "wing flow"}, {"_id": "b", "text": "  "},
                                                     {"_id": "c", "text": "heat"}])
    out = tmp_path / "idx"
    args = ["input", "--corpus", str(corpus), "--empty", policy, "encoder", "--encoder",
            str(tiny_family_dirs["repbert"]), "output", "--index", str(out), "--quiet"]
    if policy == "error":
        with pytest.raises(SystemExit) as exit_:
            cli.run_cli(encode_main, args)
        assert exit_.value.code == 2 and not out.exists()
        assert f"{corpus}, line 2: field 'text'" in capsys.readouterr().err
        return
    assert encode_main(args) == 0
    assert read_index_dir(out)[1] == (["a", "b", "c"] if policy == "keep" else ["a", "c"])


def test_encode_refuses_an_existing_output_before_loading_anything(tmp_path, capsys):
    out = tmp_path / "idx"
    out.mkdir()
    with pytest.raises(SystemExit) as exit_:  # neither the corpus nor the model exists: neither was touched
        cli.run_cli(encode_main, ["input", "--corpus", str(tmp_path / "missing.jsonl"), "encoder", "--encoder",
                                  str(tmp_path / "no-model"), "output", "--index", str(out)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {out} already exists; pass --overwrite to replace it\n"


def test_index_metadata_is_json_a_user_can_read(tiny_family_dirs, tiny_corpus, tmp_path):
    out = build(tiny_family_dirs["repbert"], tiny_corpus, tmp_path / "idx")
    meta = json.loads((out / "dense_ext_index.json").read_text())
    assert {"corpus", "encoder", "index_options", "index_type"} <= set(meta)


# ----- what the docs and help texts tell a user ------------------------------------------------------

def help_texts(monkeypatch, capsys) -> dict[str, str]:
    """Every command's --help (and each argument group's) as a user prints it."""
    texts = {}
    for name, attr in console_scripts().items():
        groups = {"dense-ext-encode": ["input", "encoder", "output"], "dense-ext-hybrid": ["dense", "sparse", "fusion",
                                                                                         "run"]}.get(name, [])
        for argv in [["--help"]] + [[g, "--help"] for g in groups]:
            monkeypatch.setattr(sys, "argv", [name, *argv])
            with pytest.raises(SystemExit):
                getattr(cli, attr)()
            texts[" ".join([name, *argv])] = capsys.readouterr().out
    return texts


def test_docs_and_help_name_only_paths_a_user_has(monkeypatch, capsys):
    """Examples used data/scifact/... (no such dir for a user) and benches one machine's /work/cache paths."""
    sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
               for p in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*.py"),
                         *ROOT.glob("pyserini_dense_ext/**/*.py")]}
    sources.update(help_texts(monkeypatch, capsys))
    for where, text in sources.items():
        assert not re.search(r"(?<![\w./])data/(scifact|cranfield)/", text), where
        assert not re.search(r"/work/|/home/|/root/|/tmp/", text), where
    quickstart = sources["dense-ext-quickstart --help"]
    assert "--encoder" in quickstart and "--model" not in quickstart


def test_what_the_readme_commands_create_is_ignored_by_git(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["indexes/scifact-minilm/index", "exports/minilm-q.onnx", "models/my-repbert/config.json",
             "runs/scifact.minilm.trec", "run.trec", "quickstart-output/runs/bm25.trec", "bench/output/x.json"]
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths], capture_output=True, text=True)
    assert done.stdout.split() == paths
