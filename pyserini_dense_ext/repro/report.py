"""What the matrix prints and writes: expected vs measured, ``docs/reproductions.md``, the docs' tables.

Tables that state numbers in README.md and docs/*.md sit between ``<!-- repro:table NAME -->`` and
``<!-- /repro:table -->`` and are generated from the matrix's ``tables``, so a number is typed once,
in ``repro/*.yaml``; ``tests/test_repro.py`` fails when the committed files differ from what
:func:`write_docs` would write.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from .matrix import ALIGN, BENCH_REF, ROOT, Bench, BenchCell, Matrix, Table, cell_key
from .runner import Result

PAGE = ROOT / "docs" / "reproductions.md"
MARKED = re.compile(r"(<!-- repro:table (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /repro:table -->)", re.S)


def result_table(results: Sequence[Result]) -> str:
    """Plain-text table: one line per row and metric, expected vs measured, a mark per row."""
    lines = [f"{'row':<34}{'metric':<12}{'expected':>10}{'measured':>10}{'diff':>9}{'tol':>8}{'s':>6}  mark"]
    for r in results:
        metrics = list(r.row.expected) or list(r.scores) or ["-"]
        for i, metric in enumerate(metrics):
            exp = r.row.expected.get(metric)
            got = r.scores.get(metric)
            cells = [f"{r.row.name if i == 0 else '':<34}", f"{metric:<12}",
                     f"{exp:>10.4f}" if exp is not None else f"{'':>10}",
                     f"{got:>10.4f}" if got is not None else f"{'-':>10}",
                     f"{got - exp:>+9.4f}" if got is not None and exp is not None else f"{'':>9}",
                     f"{r.row.tolerance:>8.4f}", f"{r.seconds:>6.0f}" if i == 0 else f"{'':>6}",
                     f"  {r.mark}" if i == 0 else ""]
            lines.append("".join(cells))
        if r.same is not None:
            lines.append(f"{'':<34}same ranking as {r.row.same_as}: {r.same}")
        if r.error:
            lines.append(f"{'':<34}{r.error}")
    return "\n".join(lines)


def figure(bench: Bench, format: str | None = None) -> str:
    """A bench row's last figure as its format (or ``format``) writes it."""
    if bench.last is None:
        return "not measured"
    return format.format(bench.last) if format else bench.show(bench.last)


def expand(text: str, bench: dict[str, Bench]) -> str:
    """``text`` with every ``{bench:NAME}`` replaced by that bench row's last figure."""
    return BENCH_REF.sub(lambda m: figure(bench[m.group(1)]), text)


def bench_table(benches: Sequence[Bench], measured: dict[str, float | None] | None = None,
                every: dict[str, Bench] | None = None, mark_detail: bool = False) -> str:
    """Markdown table of the speed matrix; ``measured`` adds this run's ratios. ``every`` (default: ``benches``)
    holds the rows a ``{bench:NAME}`` in a description may name; ``mark_detail`` marks the detail rows."""
    every = every if every is not None else {b.name: b for b in benches}
    head = ["benchmark", "ours vs", "target", "last measured", "date", "script"]
    if measured is not None:
        head.insert(3, "this run")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in benches:
        cells = [expand(b.what, every), expand(b.baseline, every), b.show_target() if b.target else "—",
                 (b.show(b.last) + (" (missed)" if b.missed(b.last) else "")) if b.last is not None
                 else "not measured", b.measured or "—",
                 f"`python {b.script}{' ' + b.args if b.args else ''}`"]
        if mark_detail and b.detail:
            cells[0] += " (detail)"
        if measured is not None:
            value = measured.get(b.name)
            cells.insert(3, (b.show(value) + (" (missed)" if b.missed(value) else "")) if value is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float) -> str:
    """4 decimals, or as many as a mean of 4-decimal values needs to be exact (0.55915): never rounded twice."""
    text = f"{value:.5f}"
    return text[:-1] if text.endswith("0") else text


def _rule(table: Table, width: int) -> str:
    """The header's separator line: markdown's default, or the table's ``align``."""
    return "|" + "".join(ALIGN[a] + "|" for a in (table.align or "-" * width))


def grid_table(table: Table, matrix: Matrix) -> str:
    """A grid table: per line a label and, per column, the metric of the rows named there (several joined by
    " / ", ``ROW:METRIC`` for another metric), a row's note (``ROW:NOTE``), a bench row's figure or text, and the
    mean of the columns when each is one row's metric."""
    def value(name: str) -> float | str:
        row, key, is_metric = cell_key(name, table.metric)
        return matrix.rows[row].expected[key] if is_metric else matrix.rows[row].cell(key)

    head = [table.label if table.label is not None else table.metric or "", *table.columns]
    head += [table.mean] if table.mean else []
    lines = ["| " + " | ".join(head) + " |", _rule(table, len(head))]
    for line in table.lines:
        values = [[value(n) for n in c] if isinstance(c, tuple) else None for c in line.cells]
        cells = [" / ".join(f"{v:.4f}" if isinstance(v, float) else v for v in vs) if vs is not None
                 else figure(matrix.bench[c.name], c.format) if isinstance(c, BenchCell) else expand(c, matrix.bench)
                 for c, vs in zip(line.cells, values)]
        if table.mean:
            singles = [vs[0] for vs in values if vs is not None and len(vs) == 1 and isinstance(vs[0], float)]
            cells.append(expand(line.mean, matrix.bench) if line.mean is not None else
                         _number(sum(singles) / len(singles)) if len(singles) == len(values) else "")
        if line.bold:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join([expand(line.label, matrix.bench), *cells]) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(table: Table, matrix: Matrix) -> str:
    """A generated table: its columns' headers, one line per row (a grid table: :func:`grid_table`)."""
    if table.lines:
        return grid_table(table, matrix)
    lines = ["| " + " | ".join(table.columns) + " |", _rule(table, len(table.columns))]
    for name in table.rows:
        row = matrix.rows[name]
        lines.append("| " + " | ".join(row.cell(key) for key in table.columns.values()) + " |")
    return "\n".join(lines) + "\n"


def page(matrix: Matrix) -> str:
    """``docs/reproductions.md``: every row with its commands, expected values, tolerance and last measurement."""
    out = ["# Reproductions", "",
           "Generated by `python -m pyserini_dense_ext.repro --write-docs` from `repro/*.yaml`; do not edit by hand.",
           "Each row is one condition: the commands that make its run file (console scripts of this package;",
           "`{data}` is the collection dir, `{scratch}` the scratch dir, `{run}` the row's run file, `{STEP}` the",
           "output of a shared step), the metrics it scores on the split's qrels with our `eval` module, and the",
           "tolerance `python -m pyserini_dense_ext.repro --run NAME --check` allows. Rows marked fast run in CI",
           "(`.ci/run`: `--run all --check --fast`); the others were last measured on the date shown, by the",
           "command named in their source note.", "",
           "Adding a row is a few lines in its collection's YAML (`name`, `label`, `run` commands writing `{run}` or a",
           "`run_file`, `expected` metrics, `measured` date; a build several rows share goes under `steps`), then",
           "`repro --write-docs`. A docs table shows the row once its name is in that table's `rows` (or a grid",
           "table's cells); tables sit in README.md and docs/*.md between `<!-- repro:table NAME -->` and",
           "`<!-- /repro:table -->`.", ""]
    for path, spec in matrix.files.items():
        rows = [r for r in matrix.rows.values() if r.source == path]
        if not rows:
            continue
        out += [f"## {spec.get('title', path.stem)}", "", f"Matrix: `repro/{path.name}`; collection: "
                f"`{spec.get('collection', 'cranfield')}`, qrels split `{spec.get('split', 'test')}`.", ""]
        if spec.get("about"):
            out += [" ".join(str(spec["about"]).split()), ""]
        out += ["| row | condition | expected | tolerance | fast | time | last measured |", "|" + "---|" * 7]
        for r in rows:
            exp = ", ".join(f"{m} {v:.4f}" for m, v in r.expected.items()) or "not measured yet"
            if r.same_as:
                exp += ("; " if exp else "") + f"ranking identical to `{r.same_as}`"
            time = f"{r.seconds:.0f} s" if r.seconds is not None else "—"
            out.append(f"| `{r.name}` | {r.label} | {exp} | ±{r.tolerance:g} | {'yes' if r.fast else 'no'} | {time} "
                       f"| {r.measured or 'not yet'} |")
        out += ["", "<details><summary>commands</summary>", "", "```bash"]
        for step in dict.fromkeys(s for r in rows for s in r.needs(matrix.steps)):
            out.append(f"# step {step} (output: {{{step}}}, shared by the rows that name it)")
            out += [f"dense-ext-{c}" for c in matrix.steps[step].commands]
        for r in rows:
            out.append(f"# {r.name}")
            out += [f"dense-ext-{c}" for c in r.commands] or [f"# scores {r.run_file}"]
        out += ["```", "", "</details>", ""]
        sources = {r.notes["source"] for r in rows if "source" in r.notes}
        if sources:
            out += ["Expected values measured by: " + "; ".join(sorted(sources)) + ".", ""]
    if matrix.bench:
        out += ["## Speed", "", "`repro/bench.yaml`, run by `python -m pyserini_dense_ext.repro --bench [NAME...]`: "
                "each script measures ours and Pyserini's own path (or bare FAISS / numpy) in the same run and "
                "writes a JSON result; the ratio is read from it. Rows marked detail are figures of the docs' "
                "tables (`{bench: NAME}` cells), left out of README's summary table.", "",
                bench_table(list(matrix.bench.values()), every=matrix.bench, mark_detail=True), ""]
    return "\n".join(out)


def render_marked(text: str, matrix: Matrix) -> str:
    """``text`` with every marked table regenerated (``bench``: the speed matrix); an unknown name raises."""
    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name == "bench":
            summary = [b for b in matrix.bench.values() if not b.detail]
            return m.group(1) + bench_table(summary, every=matrix.bench) + "\n" + m.group(4)
        if name not in matrix.tables:
            raise ValueError(f"<!-- repro:table {name} --> names no table of repro/*.yaml")
        return m.group(1) + markdown_table(matrix.tables[name], matrix) + m.group(4)

    return MARKED.sub(fill, text)


def docs_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def generated(matrix: Matrix, root: Path = ROOT) -> dict[Path, str]:
    """Every file the matrix writes, with the content it should have."""
    out = {root / "docs" / PAGE.name: page(matrix)}
    for path in docs_files(root):
        if path.name == PAGE.name:
            continue
        text = path.read_text(encoding="utf-8")
        new = render_marked(text, matrix)
        if new != text:
            out[path] = new
    return out


def write_docs(matrix: Matrix, root: Path = ROOT) -> list[Path]:
    """Write ``docs/reproductions.md`` and regenerate the marked tables; returns the files changed."""
    from ..io.atomic import atomic_write

    changed = []
    for path, text in generated(matrix, root).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            with atomic_write(path) as f:
                f.write(text)
            changed.append(path)
    return changed
