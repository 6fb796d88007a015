"""The reproduction matrix: the repo's YAML is valid and its docs generated from it; the runner on a small matrix.

The small matrix fuses two run files made here (a shared step writes one of them), so the expected
values are computed from the same runs by the eval module, and a wrong expected value must drift.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import pyserini_dense_ext  # noqa: F401
from pyserini_dense_ext.eval.metrics import evaluate
from pyserini_dense_ext.fusion import fuse
from pyserini_dense_ext.io import InputError, read_qrels, write_run
from pyserini_dense_ext.repro import expected, load
from pyserini_dense_ext.repro.__main__ import main
from pyserini_dense_ext.repro.bench import ratio
from pyserini_dense_ext.repro.report import (MARKED, bench_table, docs_files, generated, markdown_table, page,
                                             render_marked)
from pyserini_dense_ext.repro.runner import Runner, command_modules

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the repo's matrix
def test_every_row_command_is_a_console_script_and_every_row_checks_something():
    matrix = load()
    modules = command_modules()
    assert {"fuse", "hybrid", "search", "encode", "quickstart", "tune", "onnx-export", "merge", "repro"} <= set(modules)
    commands = [c for r in matrix.rows.values() for c in r.commands] + [c for s in matrix.steps.values()
                                                                        for c in s.commands]
    assert commands
    for command in commands:
        assert command.split()[0] in modules, command
    assert all(r.expected or r.same_as for r in matrix.rows.values() if not r.fast)  # slow rows state numbers
    assert [r.name for r in matrix.select(["all"], fast=True)] == [r.name for r in matrix.rows.values() if r.fast]
    assert all(r.collection == "cranfield" for r in matrix.rows.values() if r.fast)  # CI has no SciFact


def test_docs_are_what_the_matrix_generates():
    """docs/reproductions.md and every marked table are up to date (fix: repro --write-docs)."""
    matrix = load()
    stale = [str(p.relative_to(ROOT)) for p, text in generated(matrix).items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert stale == [], "run python -m pyserini_dense_ext.repro --write-docs"
    marked = {m.group("name") for p in docs_files() for m in MARKED.finditer(p.read_text(encoding="utf-8"))}
    assert {"scifact-runs", "scifact-hybrids"} <= marked
    assert "reproductions.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_expected_reads_a_row():
    value, tolerance = expected("scifact-minilm", "nDCG@10")
    assert value == load().rows["scifact-minilm"].expected["ndcg@10"] and tolerance > 0


# ---------------------------------------------------------------- the runner on a small matrix
@pytest.fixture()
def small(tmp_path):
    """A BEIR-layout collection, two runs with tied and near-tied scores, and a matrix over them."""
    data = tmp_path / "data"
    (data / "qrels").mkdir(parents=True)
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq1\td4\t2\nq2\td1\t1\n")
    a = {"q1": [("d3", 2.0), ("d1", 2.0), ("d2", 1.5), ("d4", 0.5000001)], "q2": [("d2", 3.0), ("d1", 1.0)]}
    b = {"q1": [("d4", 0.9), ("d2", 0.4), ("d3", 0.4)], "q2": [("d1", 0.7), ("d3", 0.7)]}
    write_run(tmp_path / "a.trec", a)
    write_run(tmp_path / "b.trec", b)
    qrels = read_qrels(data / "qrels" / "test.tsv")
    want = evaluate(fuse([a, b], "rrf"), qrels, ("ndcg@10", "recall@100"))

    def write(expected_ndcg: float, copy: str = "fuse --runs {a} {b} --method rrf --output {out}/a.trec") -> Path:
        matrix = tmp_path / "matrix"
        matrix.mkdir(exist_ok=True)
        (matrix / "small.yaml").write_text(textwrap.dedent(f"""
            collection: {data}
            fast: true
            tolerance: 0.001
            steps:
              fused: {copy}
            rows:
              - name: from-step
                run_file: "{{fused}}/a.trec"
                expected: {{ndcg@10: {expected_ndcg}, recall@100: {want['recall@100']}}}
              - name: fuse-again
                run: fuse --runs {tmp_path}/a.trec {tmp_path}/b.trec --method rrf --output {{run}}
                expected: {{ndcg@10: {want['ndcg@10']}}}
                same_as: from-step
            """).replace("{a}", str(tmp_path / "a.trec")).replace("{b}", str(tmp_path / "b.trec")))
        return matrix

    return write, want


def test_rows_reproduce_share_steps_and_check_equal_rankings(small, tmp_path, capsys):
    write, want = small
    matrix = write(want["ndcg@10"])
    scratch = tmp_path / "scratch"
    assert main(["--matrix", str(matrix), "--scratch", str(scratch), "--run", "all", "--check", "--fast"]) == 0
    out = capsys.readouterr()
    assert "step fused: building" in out.err and "same ranking as from-step: identical" in out.out
    assert f"{want['ndcg@10']:.4f}" in out.out
    # the step is reused while its command is unchanged, rebuilt when it changes
    assert main(["--matrix", str(matrix), "--scratch", str(scratch), "--run", "fuse-again", "--check"]) == 0
    assert "step fused: reusing" in capsys.readouterr().err
    write(want["ndcg@10"], copy="fuse --runs {a} {b} --method rrf --rrf-k 60 --output {out}/a.trec")
    assert main(["--matrix", str(matrix), "--scratch", str(scratch), "--run", "from-step", "--check"]) == 0
    assert "step fused: building" in capsys.readouterr().err


def test_drift_beyond_tolerance_exits_1_only_with_check(small, tmp_path, capsys):
    write, want = small
    matrix = write(round(want["ndcg@10"] + 0.002, 4))
    argv = ["--matrix", str(matrix), "--scratch", str(tmp_path / "scratch"), "--run", "from-step"]
    assert main(argv + ["--check"]) == 1
    out = capsys.readouterr().out
    assert "DRIFT" in out and "1 row(s) not reproduced: from-step" in out
    assert main(argv) == 0


def test_different_rankings_and_failing_commands_are_reported(small, tmp_path, capsys):
    write, want = small
    matrix = write(want["ndcg@10"])
    text = (matrix / "small.yaml").read_text()
    (matrix / "small.yaml").write_text(text.replace("--method rrf --output {run}", "--method combsum --output {run}")
                                       + "  - name: broken\n    run: fuse --runs nowhere.trec {run} --method rrf "
                                         "--output {run}\n    expected: {ndcg@10: 0.5}\n")
    results = Runner(load(matrix), tmp_path / "scratch", log=lambda line: None).run(list(load(matrix).rows.values()))
    by = {r.row.name: r for r in results}
    assert not by["fuse-again"].ok and "ranked differently" in by["fuse-again"].same
    assert by["broken"].mark == "ERROR" and "nowhere.trec" in by["broken"].error
    assert by["from-step"].ok


def test_bad_matrix_files_name_file_and_field(tmp_path):
    (tmp_path / "m.yaml").write_text("rows:\n  - name: x\n    run: fuse\n    expected: {ndgc@10: 0.5}\n")
    with pytest.raises(InputError, match=r"m.yaml:.*rows.x.expected.*unknown metric"):
        load(tmp_path)
    (tmp_path / "m.yaml").write_text("rows:\n  - name: x\n    run: fuse --output {nowhere}\n    expected: {map: 1}\n")
    with pytest.raises(InputError, match=r"unknown placeholder.*nowhere"):
        load(tmp_path)
    (tmp_path / "m.yaml").write_text("rows:\n  - name: x\n    run: fuse\n    same_as: y\n")
    with pytest.raises(InputError, match="same_as names no row 'y'"):
        load(tmp_path)


def test_bench_ratio_is_read_from_the_scripts_json(tmp_path):
    (tmp_path / "repro").mkdir()
    (tmp_path / "repro" / "bench.yaml").write_text(
        "bench:\n  - {name: b, what: w, script: bench/x.py, json: out/x.json, value: [r, 'a b'], target: 2}\n")
    bench = load(tmp_path / "repro").bench["b"]
    assert ratio(bench, tmp_path) is None
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.json").write_text(json.dumps({"r": {"a b": 2.5}}))
    assert ratio(bench, tmp_path) == 2.5
    (tmp_path / "out" / "x.json").write_text(json.dumps({"r": {}}))
    with pytest.raises(ValueError, match="missing 'a b'"):
        ratio(bench, tmp_path)



def test_bench_rows_pick_list_entries_divide_and_take_ceilings(tmp_path):
    (tmp_path / "repro").mkdir()
    (tmp_path / "repro" / "bench.yaml").write_text(
        "bench:\n"
        "  - {name: sel, what: w, script: s.py, json: x.json, value: [rows, 'batch=32,path=a', r], target: 1.3,"
        " last: 1.19}\n"
        "  - {name: div, what: w, script: s.py, json: x.json, value: [v, slow], over: [v, fast]}\n"
        "  - {name: low, what: w, script: s.py, json: x.json, value: [g], target: 0.1, better: lower,"
        " format: '{:+.1%}', last: 0.017}\n")
    matrix = load(tmp_path / "repro")
    (tmp_path / "x.json").write_text(json.dumps({"rows": [{"batch": 1, "path": "a", "r": 9}, {"batch": 32, "path": "a",
                                                "r": 1.5}], "v": {"slow": 6.0, "fast": 2.0}, "g": 0.25}))
    assert [ratio(matrix.bench[n], tmp_path) for n in ("sel", "div", "low")] == [1.5, 3.0, 0.25]
    low = matrix.bench["low"]
    assert low.missed(0.25) and not low.missed(0.017) and low.show_target() == "≤ +10.0%"
    assert matrix.bench["sel"].missed(1.19) and matrix.bench["sel"].show_target() == "≥ 1.3x"
    table = bench_table(list(matrix.bench.values()))
    assert "| ≤ +10.0% | +1.7% |" in table and "1.19x (missed)" in table


def test_grid_tables_put_rows_of_several_matrices_side_by_side(tmp_path):
    (tmp_path / "a.yaml").write_text(textwrap.dedent("""
        rows:
          - {name: a1, run: fuse, expected: {ndcg@10: 0.7220, recall@100: 0.9}}
          - {name: a2, run: fuse, expected: {ndcg@10: 0.6}}
        tables:
          g:
            label: nDCG@10
            metric: ndcg@10
            columns: [A, B]
            mean: mean
            lines:
              - {label: both, cells: [[a1, a2], b1]}
              - {label: one, cells: [a1, b1], bold: true}
              - {label: other, cells: ["a1:recall@100", {text: "0.5"}], mean: {text: "0.7"}}
        """))
    (tmp_path / "b.yaml").write_text("collection: elsewhere\nrows:\n  - {name: b1, run: fuse, expected: {ndcg@10: 0.3963}}\n")
    matrix = load(tmp_path)
    text = markdown_table(matrix.tables["g"], matrix)
    assert text.splitlines() == ["| nDCG@10 | A | B | mean |", "|---|---|---|---|",
                                 "| both | 0.7220 / 0.6000 | 0.3963 |  |",
                                 "| one | **0.7220** | **0.3963** | **0.55915** |",  # exact mean, not rounded twice
                                 "| other | 0.9000 | 0.5 | 0.7 |"]
    (tmp_path / "b.yaml").write_text("rows:\n  - {name: b1, run: fuse, expected: {recall@100: 0.4}}\n")
    with pytest.raises(ValueError, match="row 'b1' has no expected ndcg@10"):
        load(tmp_path)

def test_grid_cells_show_notes_bench_figures_and_alignment(tmp_path):
    """ROW:NOTE and ROW:row cells, {bench: NAME} cells (the row's format or the cell's), {bench:NAME} inside text,
    labels and bench descriptions, align; detail bench rows stay out of the summary table."""
    (tmp_path / "a.yaml").write_text(textwrap.dedent("""
        rows:
          - {name: r1, run: fuse, expected: {ndcg@10: 0.8055}, notes: {dev: "0.8095", kept: 180 / 210}}
        bench:
          - {name: fast, what: "rerank, ms/query", script: s.py, json: x.json, value: [a], target: 2, better: lower,
             format: "{:.2f} ms", last: 0.15, baseline: "(FAISS {bench:faiss} here)"}
          - {name: faiss, what: FAISS, script: s.py, json: x.json, value: [b], format: "{:.2f} ms", last: 2.03,
             detail: true}
          - {name: mem, what: memory, script: s.py, json: x.json, value: [c], format: "{:.0f} MiB", last: 793,
             detail: true}
        tables:
          g:
            label: run
            columns: [dev, test, kept, speed, FAISS, memory, reproduce]
            align: -rrrrrr-
            lines:
              - label: "CODER ({bench:mem})"
                cells: ["r1:dev", "r1:ndcg@10", "r1:kept", {bench: fast}, {bench: faiss, format: "{:.2f}"},
                        {text: "peak {bench:mem}"}, "r1:row"]
        """))
    matrix = load(tmp_path)
    assert markdown_table(matrix.tables["g"], matrix).splitlines() == [
        "| run | dev | test | kept | speed | FAISS | memory | reproduce |", "|---|---:|---:|---:|---:|---:|---:|---|",
        "| CODER (793 MiB) | 0.8095 | 0.8055 | 180 / 210 | 0.15 ms | 2.03 | peak 793 MiB | `dense-ext-repro --run r1` |"]
    summary = render_marked("<!-- repro:table bench -->\nold\n<!-- /repro:table -->", matrix)
    assert "(FAISS 2.03 ms here)" in summary and "| FAISS |" not in summary and "| memory |" not in summary
    assert "| FAISS (detail) |" in page(matrix) and "| memory (detail) |" in page(matrix)
    text = (tmp_path / "a.yaml").read_text()
    for old, new, error in (('"r1:kept"', '"r1:seen"', "row 'r1' has no expected metric or note 'seen'"),
                            ("{bench: faiss,", "{bench: nowhere,", "table 'g' names no bench row 'nowhere'"),
                            ("FAISS {bench:faiss}", "FAISS {bench:gone}", "bench row 'fast' names no other bench row"),
                            ('"r1:ndcg@10"', "r1", "names a row without a metric"),
                            ("align: -rrrrrr-", "align: -rr", "align: one of"),
                            ("detail: true}\n  - {name: mem", "detial: true}\n  - {name: mem",
                             r"unknown key\(s\) \['detial'\]")):
        assert old in text
        (tmp_path / "a.yaml").write_text(text.replace(old, new))
        with pytest.raises((ValueError, InputError), match=error):
            load(tmp_path)


def test_reuse_takes_a_step_built_elsewhere(small, tmp_path, capsys):
    write, want = small
    matrix = write(want["ndcg@10"])
    built = tmp_path / "built-before"
    built.mkdir()
    (built / "a.trec").write_text((tmp_path / "b.trec").read_text())  # not what the step would build
    argv = ["--matrix", str(matrix), "--scratch", str(tmp_path / "scratch"), "--run", "from-step", "--check"]
    assert main(argv + ["--reuse", f"fused={built}"]) == 1  # scored from the reused dir: b.trec alone drifts
    assert "step fused: using" in capsys.readouterr().err and not (tmp_path / "scratch" / "steps").exists()
    assert main(argv) == 0
    with pytest.raises(ValueError, match="names no step"):
        main(argv + ["--reuse", f"nothing={built}"])


def test_a_row_not_measured_yet_prints_its_scores_and_passes_check(small, tmp_path, capsys):
    write, want = small
    matrix = write(want["ndcg@10"])
    text = (matrix / "small.yaml").read_text()
    (matrix / "small.yaml").write_text(text + "  - name: unmeasured\n    run_file: \"{fused}/a.trec\"\n")
    assert main(["--matrix", str(matrix), "--scratch", str(tmp_path / "s"), "--run", "unmeasured", "--check"]) == 0
    out = capsys.readouterr().out
    assert "new (no expected values yet)" in out and f"{want['ndcg@10']:.4f}" in out
    assert "| `unmeasured` | unmeasured | not measured yet |" in page(load(matrix))


def test_a_step_builds_the_steps_its_commands_name_first(small, tmp_path, capsys):
    """A row naming only a trained model's index still gets the model and the runs it was trained on."""
    write, want = small
    matrix = write(want["ndcg@10"])
    with (matrix / "small.yaml").open("a") as f:
        f.write("  - name: from-second-step\n    run_file: \"{again}/b.trec\"\n"
                "    expected: {ndcg@10: %s}\n" % want["ndcg@10"])
    text = (matrix / "small.yaml").read_text().replace(
        "steps:\n", f"steps:\n  again: fuse --runs {{fused}}/a.trec {tmp_path}/b.trec --method rrf --output {{out}}/b.trec\n")
    (matrix / "small.yaml").write_text(text)
    assert load(matrix).rows["from-second-step"].needs(load(matrix).steps) == ["fused", "again"]
    argv = ["--matrix", str(matrix), "--scratch", str(tmp_path / "scratch"), "--run", "from-second-step"]
    assert main(argv) == 0  # no row run before it built `fused`
    err = capsys.readouterr().err
    assert err.index("step fused: building") < err.index("step again: building")
    (matrix / "small.yaml").write_text(text.replace("fused: fuse --runs", "fused: fuse --runs {again}/b.trec"))
    with pytest.raises(ValueError, match="cycle: again -> fused -> again|cycle: fused -> again -> fused"):
        load(matrix)
