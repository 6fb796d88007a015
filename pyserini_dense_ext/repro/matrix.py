"""The reproduction matrix: ``repro/*.yaml`` read into rows, steps, tables and benchmarks, validated.

One YAML file per collection (Pyserini's two-click reproductions keep one per condition family):

    collection: cranfield          # "cranfield" = the embedded copy; else a BEIR-layout dir (relative: to the repo)
    split: test                    # qrels/<split>.tsv scores every row
    fast: true                     # default of the rows: part of ``--run all --check --fast`` (CI)
    tolerance: 0.0005              # default |measured - expected| allowed per metric
    steps:                         # builds that rows share: run once, reused while their command is unchanged
      quickstart: quickstart --data {data} --output {out}
    rows:
      - name: cranfield-bm25
        label: BM25
        run_file: "{quickstart}/runs/bm25.trec"       # or run: COMMAND(S) writing {run}
        expected: {ndcg@10: 0.4322, recall@100: 0.7633}
        measured: 2026-12-02                          # when the expected values were last measured

A command is a console script's name without ``dense-ext-`` (``encode``, ``search``, ``hybrid``,
``fuse``, ``eval``, ``tune``, ``quickstart``, ``onnx-export``, ...) and its flags. Placeholders:
``{data}``, ``{corpus}``, ``{topics}``, ``{qrels}`` (the row's split), ``{scratch}``, ``{minilm}``
(the demo extra's MiniLM dir), ``{run}`` (the row's run file), ``{out}`` (a step's output) and
``{STEP}`` (the output dir of step STEP, which the row then needs). ``same_as: ROW`` also checks
that the two rows' run files rank every query identically.

``tables`` generate the docs' tables (``report.py``). A plain table lists ``rows`` with ``columns``
(header -> an expected metric, a note, ``label`` or ``row``). A grid table (``lines``) types each
line's label and one cell per column: ``ROW`` (the table's ``metric``), ``ROW:METRIC``, ``ROW:NOTE``
(a note, e.g. a dev-split figure no qrels split can check; ``ROW:row``: the command re-running it),
several of those in a list (joined by " / "), ``{bench: NAME}`` (a bench row's last figure, written
by its ``format`` or the cell's own ``format``) or ``{text: ...}``. Text cells, labels and a bench
row's ``what`` and ``baseline`` may hold ``{bench:NAME}``, replaced by that figure. ``align`` (one
of ``l r c -`` per column) aligns the columns. A bench row marked ``detail: true`` is a figure for
such tables: docs/reproductions.md lists it, the ``bench`` summary table does not.
"""
from __future__ import annotations

import datetime
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..eval.metrics import parse_metric
from ..io.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
MATRIX_DIR = ROOT / "repro"
BENCH_FILE = "bench.yaml"
EMBEDDED = {"cranfield": Path(__file__).resolve().parents[1] / "data" / "cranfield"}
BUILTIN_PLACEHOLDERS = {"data", "corpus", "topics", "qrels", "scratch", "minilm", "run", "out"}
BENCH_REF = re.compile(r"\{bench:([\w.-]+)\}")  # a bench row's figure inside text
ALIGN = {"-": "---", "l": ":---", "r": "---:", "c": ":---:"}


def placeholders(template: str) -> set[str]:
    """The ``{name}`` fields of a command template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True)
class Row:
    """One reproduced condition: commands that write a run file, the metrics it should score."""

    name: str
    label: str
    source: Path  # the YAML file
    collection: str
    split: str
    commands: tuple[str, ...]
    run_file: str
    expected: dict[str, float]
    tolerance: float
    fast: bool
    seconds: float | None
    measured: str | None
    same_as: str | None
    notes: dict[str, str] = field(default_factory=dict)

    def needs(self, steps: dict[str, "Step"]) -> list[str]:
        """Steps this row's commands or run file name, with the steps those need, in build order."""
        return needed(set().union(*(placeholders(t) for t in (*self.commands, self.run_file))), steps)

    def cell(self, key: str) -> str:
        """A table cell: an expected metric (4 decimals), a note, the label or (``row``) the command re-running it."""
        if key == "label":
            return self.label
        if key == "row":
            return f"`dense-ext-repro --run {self.name}`"
        if key in self.expected:
            return f"{self.expected[key]:.4f}"
        return self.notes.get(key, "—")


@dataclass(frozen=True)
class Step:
    """A build several rows share (an index, an export, a trained model): its output dir and commands."""

    name: str
    collection: str
    commands: tuple[str, ...]


def needed(names: set[str], steps: dict[str, Step]) -> list[str]:
    """The steps among ``names`` and, first, every step their commands name (a trained model's runs, an
    index's model): the order to build them in. A step naming itself, directly or not, is an error."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"steps name each other in a cycle: {' -> '.join((*path, name))}")
        if name in order:
            return
        for dep in sorted(set().union(*(placeholders(c) for c in steps[name].commands)) & set(steps)):
            visit(dep, (*path, name))
        order.append(name)

    for name in [s for s in steps if s in names]:
        visit(name, ())
    return order


@dataclass(frozen=True)
class BenchCell:
    """A grid cell showing a bench row's last figure, written by the row's format or the cell's own."""

    name: str
    format: str | None = None


def cell_key(ref: str, metric: str | None) -> tuple[str, str, bool]:
    """A grid cell's row reference -> (row, key, is a metric): ``ROW`` is the table's metric, ``ROW:KEY`` another
    metric when KEY is one (``ROW:recall@100``), else the row's :meth:`Row.cell` KEY: a note (``ROW:dev``),
    ``label`` or ``row``."""
    row, colon, key = ref.partition(":")
    if not colon:
        return row, str(metric), True
    try:
        return row, parse_metric(key).name, True
    except ValueError:
        return row, key, False


@dataclass(frozen=True)
class Line:
    """One line of a grid table: a label, then per column row names (several joined by " / "), a bench figure
    or literal text."""

    label: str
    cells: tuple[tuple[str, ...] | str | BenchCell, ...]  # ROW, ROW:METRIC or ROW:NOTE names; text; a bench row
    bold: bool = False  # the numbers in bold
    mean: str | None = None  # text for the mean column (a line whose cells are not all rows)


@dataclass(frozen=True)
class Table:
    """A table generated into the docs: rows by name, columns as header -> row cell key.

    A grid table (``lines``) instead puts one metric of rows from any matrix side by side, e.g. one
    fusion method per line and one collection per column, with an optional mean over the columns."""

    name: str
    rows: tuple[str, ...]
    columns: dict[str, str]
    lines: tuple[Line, ...] = ()
    metric: str | None = None
    mean: str | None = None  # header of the mean column, when asked
    label: str | None = None  # header of a grid's label column (default: the metric)
    align: str | None = None  # per column (the label column first): l, r, c or - (markdown's default)

    def cell_refs(self) -> list[tuple[str, str, bool]]:
        """(row, key, is a metric) of every grid cell that names a row (:func:`cell_key`)."""
        return [cell_key(n, self.metric) for line in self.lines for c in line.cells if isinstance(c, tuple)
                for n in c]

    def row_names(self) -> list[str]:
        return [*self.rows, *(name for name, _, _ in self.cell_refs())]

    def bench_names(self) -> list[str]:
        """Bench rows the table shows: ``{bench: NAME}`` cells and ``{bench:NAME}`` inside text and labels."""
        texts = [t for line in self.lines for t in (line.label, line.mean or "", *line.cells) if isinstance(t, str)]
        return [*(c.name for line in self.lines for c in line.cells if isinstance(c, BenchCell)),
                *(m.group(1) for t in texts for m in BENCH_REF.finditer(t))]


@dataclass(frozen=True)
class Bench:
    """A speed benchmark: the script, where its JSON result keeps the ratio, the target and the last value."""

    name: str
    what: str
    script: str
    args: str
    json: str
    value: tuple[str, ...]  # keys into the JSON result ("k=v,k2=v2" picks the element of a list with those fields)
    target: float | None
    last: float | None
    measured: str | None
    baseline: str
    over: tuple[str, ...] = ()  # when given, the figure is value / over (two numbers the script writes)
    better: str = "higher"  # "lower": the target is a ceiling (an overhead, a time, a memory growth)
    format: str = "{:.2f}x"  # how the figure and the target are written
    detail: bool = False  # a figure for a docs table ({bench: NAME}), not a line of the summary table

    def show(self, value: float) -> str:
        return self.format.format(value)

    def show_target(self) -> str:
        return f"{'≤' if self.better == 'lower' else '≥'} " + (
            f"{self.target:g}x" if self.format == "{:.2f}x" else self.format.format(self.target))

    def missed(self, value: float | None) -> bool:
        if self.target is None or value is None:
            return False
        return value > self.target if self.better == "lower" else value < self.target


@dataclass
class Matrix:
    """Every row, step, table and benchmark of a matrix directory."""

    rows: dict[str, Row] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    bench: dict[str, Bench] = field(default_factory=dict)
    files: dict[Path, dict[str, Any]] = field(default_factory=dict)  # each YAML's top-level settings

    def select(self, names: list[str], fast: bool = False) -> list[Row]:
        """Rows by name (``all``: every row), with the rows their ``same_as`` checks compare against."""
        unknown = [n for n in names if n != "all" and n not in self.rows]
        if unknown:
            raise ValueError(f"unknown row(s) {unknown}; --list shows them")
        chosen = list(self.rows) if "all" in names else list(dict.fromkeys(names))
        rows = [self.rows[n] for n in chosen if self.rows[n].fast or not fast]
        names = [r.name for r in rows]
        extra = [r.same_as for r in rows if r.same_as and r.same_as not in names]
        return rows + [self.rows[n] for n in dict.fromkeys(extra)]


def _commands(value: Any, path: Path, where: str) -> tuple[str, ...]:
    commands = (value,) if isinstance(value, str) else value
    if not isinstance(commands, (list, tuple)) or not all(isinstance(c, str) and c.strip() for c in commands):
        raise InputError(path, "must be a command or a list of commands", field=where)
    return tuple(" ".join(c.split()) for c in commands)


def _date(value: Any, path: Path, where: str) -> str | None:
    if value is None or isinstance(value, datetime.date):
        return value and value.isoformat()
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return value
    raise InputError(path, f"{value!r} is not a date (YYYY-MM-DD)", field=where)


def _number(value: Any, path: Path, where: str, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, f"{value!r} is not a number", field=where)
    return float(value)


def _mapping(value: Any, path: Path, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(path, "must be a mapping", field=where)
    return value


ROW_KEYS = {"name", "label", "run", "run_file", "expected", "tolerance", "fast", "seconds", "measured", "same_as",
            "notes", "split"}
TABLE_KEYS = {"rows", "columns", "lines", "metric", "mean", "label", "align"}
BENCH_KEYS = {"name", "what", "script", "args", "json", "value", "target", "last", "measured", "baseline", "over",
              "better", "format", "detail"}
FILE_KEYS = {"title", "collection", "split", "fast", "tolerance", "steps", "rows", "tables", "bench", "about"}


def _cell(value: Any, path: Path, where: str) -> tuple[str, ...] | str | BenchCell:
    """One grid cell as typed: row names (a name or a list), ``{text: ...}`` or ``{bench: NAME}``."""
    if isinstance(value, dict):
        if set(value) == {"text"}:
            return str(value["text"])
        if "bench" in value and set(value) <= {"bench", "format"}:
            return BenchCell(str(value["bench"]), str(value["format"]) if "format" in value else None)
        raise InputError(path, "a cell is ROW[:KEY], a list of them, {text: ...} or {bench: NAME[, format: ...]}, "
                               f"not {value!r}", field=where)
    return tuple(map(str, value if isinstance(value, list) else [value]))


def read_file(path: Path, matrix: Matrix) -> None:
    """Add one YAML file's steps, rows, tables and benchmarks to ``matrix`` (names are global)."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(path, f"not valid YAML: {getattr(e, 'problem', e)}",
                         mark.line + 1 if mark else None) from None
    spec = _mapping(spec, path, "(top level)")
    if set(spec) - FILE_KEYS:
        raise InputError(path, f"unknown key(s) {sorted(set(spec) - FILE_KEYS)}; known: {sorted(FILE_KEYS)}")
    matrix.files[path] = {k: v for k, v in spec.items() if k not in ("steps", "rows", "tables", "bench")}
    collection = str(spec.get("collection", "cranfield"))
    split = str(spec.get("split", "test"))
    for name, value in _mapping(spec.get("steps", {}), path, "steps").items():
        if name in matrix.steps or name in BUILTIN_PLACEHOLDERS:
            raise InputError(path, f"step name {name!r} is taken", field=f"steps.{name}")
        matrix.steps[name] = Step(name, collection, _commands(value, path, f"steps.{name}"))
    for i, row in enumerate(spec.get("rows", []) or []):
        row = _mapping(row, path, f"rows[{i}]")
        name = row.get("name")
        where = f"rows[{i}]" if not name else f"rows.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name):
            raise InputError(path, "needs a name of lower-case letters, digits, '.' and '-'", field=where)
        if name in matrix.rows:
            raise InputError(path, f"row {name!r} also in {matrix.rows[name].source.name}", field=where)
        if set(row) - ROW_KEYS:
            raise InputError(path, f"unknown key(s) {sorted(set(row) - ROW_KEYS)}; known: {sorted(ROW_KEYS)}",
                             field=where)
        if "run" not in row and "run_file" not in row:
            raise InputError(path, "needs 'run' (commands writing {run}) or 'run_file'", field=where)
        expected = {}
        for metric, value in _mapping(row.get("expected", {}), path, f"{where}.expected").items():
            try:
                canonical = parse_metric(str(metric)).name
            except ValueError as e:
                raise InputError(path, str(e), field=f"{where}.expected") from None
            expected[canonical] = _number(value, path, f"{where}.expected.{metric}", optional=False)
        matrix.rows[name] = Row(
            name=name, label=str(row.get("label", name)), source=path, collection=collection,
            split=str(row.get("split", split)),
            commands=_commands(row["run"], path, f"{where}.run") if "run" in row else (),
            run_file=str(row.get("run_file", "{run}")), expected=expected,
            tolerance=_number(row.get("tolerance", spec.get("tolerance", 0.0005)), path, f"{where}.tolerance"),
            fast=bool(row.get("fast", spec.get("fast", False))),
            seconds=_number(row.get("seconds"), path, f"{where}.seconds"),
            measured=_date(row.get("measured"), path, f"{where}.measured"), same_as=row.get("same_as"),
            notes={str(k): str(v) for k, v in _mapping(row.get("notes", {}), path, f"{where}.notes").items()})
    for name, table in _mapping(spec.get("tables", {}), path, "tables").items():
        table = _mapping(table, path, f"tables.{name}")
        if set(table) - TABLE_KEYS:
            raise InputError(path, f"unknown key(s) {sorted(set(table) - TABLE_KEYS)}; known: {sorted(TABLE_KEYS)}",
                             field=f"tables.{name}")
        columns = table.get("columns", {})
        lines = []
        if "lines" in table:  # a grid: columns is a list of headers, each line a label and one cell per column
            if not isinstance(columns, list):
                raise InputError(path, "a table with lines needs 'columns' as a list of headers",
                                 field=f"tables.{name}")
            for i, line in enumerate(table["lines"] or []):
                line = _mapping(line, path, f"tables.{name}.lines[{i}]")
                cells = line.get("cells", [])
                if not isinstance(cells, list) or len(cells) != len(columns):
                    raise InputError(path, f"needs {len(columns)} cells, one per column",
                                     field=f"tables.{name}.lines[{i}]")
                lines.append(Line(str(line.get("label", "")),
                                  tuple(_cell(c, path, f"tables.{name}.lines[{i}]") for c in cells),
                                  bool(line.get("bold")),
                                  str(line["mean"]["text"]) if isinstance(line.get("mean"), dict) else None))
            bare = [n for line in lines for c in line.cells if isinstance(c, tuple) for n in c if ":" not in n]
            if bare and "metric" not in table:
                raise InputError(path, f"cell {bare[0]!r} names a row without a metric: give the table a 'metric' "
                                       "or write ROW:METRIC", field=f"tables.{name}")
            columns = {str(c): str(c) for c in columns}
        align = str(table["align"]) if "align" in table else None
        width = len(columns) + ("lines" in table) + bool(table.get("mean"))
        if align is not None and (len(align) != width or set(align) - set(ALIGN)):
            raise InputError(path, f"align: one of {' '.join(ALIGN)} per column ({width})", field=f"tables.{name}")
        matrix.tables[name] = Table(name, tuple(table.get("rows", ())),
                                    {str(k): str(v) for k, v in _mapping(columns, path,
                                                                         f"tables.{name}.columns").items()},
                                    tuple(lines), str(parse_metric(str(table["metric"])).name)
                                    if "metric" in table else None,
                                    str(table["mean"]) if table.get("mean") else None,
                                    str(table["label"]) if "label" in table else None, align)
    for i, b in enumerate(spec.get("bench", []) or []):
        b = _mapping(b, path, f"bench[{i}]")
        where = f"bench.{b.get('name', i)}"
        missing = {"name", "script", "json", "value", "what"} - set(b)
        if missing:
            raise InputError(path, f"missing {sorted(missing)}", field=where)
        if set(b) - BENCH_KEYS:
            raise InputError(path, f"unknown key(s) {sorted(set(b) - BENCH_KEYS)}; known: {sorted(BENCH_KEYS)}",
                             field=where)
        if b["name"] in matrix.bench:
            raise InputError(path, f"bench row {b['name']!r} is named twice", field=where)
        value = b["value"] if isinstance(b["value"], list) else [b["value"]]
        over = b.get("over", [])
        over = over if isinstance(over, list) else [over]
        if b.get("better", "higher") not in ("higher", "lower"):
            raise InputError(path, "better: higher or lower", field=where)
        matrix.bench[b["name"]] = Bench(
            name=b["name"], what=str(b["what"]), script=str(b["script"]), args=str(b.get("args", "")),
            json=str(b["json"]), value=tuple(map(str, value)), target=_number(b.get("target"), path, f"{where}.target"),
            last=_number(b.get("last"), path, f"{where}.last"), measured=_date(b.get("measured"), path,
                                                                                f"{where}.measured"),
            baseline=str(b.get("baseline", "")), over=tuple(map(str, over)), better=str(b.get("better", "higher")),
            format=str(b.get("format", "{:.2f}x")), detail=bool(b.get("detail", False)))


def check(matrix: Matrix) -> None:
    """Cross-file checks: placeholders name steps, ``same_as`` and table rows exist."""
    known = BUILTIN_PLACEHOLDERS | set(matrix.steps)
    for step in matrix.steps.values():
        for command in step.commands:
            bad = placeholders(command) - known - {"run"}
            if bad:
                raise ValueError(f"step {step.name!r}: unknown placeholder(s) {sorted(bad)}")
    needed(set(matrix.steps), matrix.steps)  # no cycles
    for row in matrix.rows.values():
        for template in (*row.commands, row.run_file):
            bad = placeholders(template) - known - {"out"}
            if bad:
                raise InputError(row.source, f"unknown placeholder(s) {sorted(bad)}; steps: {sorted(matrix.steps)}",
                                 field=f"rows.{row.name}")
        if row.same_as and row.same_as not in matrix.rows:
            raise InputError(row.source, f"same_as names no row {row.same_as!r}", field=f"rows.{row.name}")
    for table in matrix.tables.values():
        for name in table.row_names():
            if name not in matrix.rows:
                raise ValueError(f"table {table.name!r} names no row {name!r}")
        for name, key, is_metric in table.cell_refs():
            row = matrix.rows[name]
            if key not in (row.expected if is_metric else (*row.notes, "label", "row")):
                raise ValueError(f"table {table.name!r}: row {name!r} has no "
                                 + (f"expected {key}" if is_metric else f"expected metric or note {key!r}"))
        for name in table.bench_names():
            if name not in matrix.bench:
                raise ValueError(f"table {table.name!r} names no bench row {name!r}")
    for bench in matrix.bench.values():
        for m in BENCH_REF.finditer(bench.what + " " + bench.baseline):
            if m.group(1) not in matrix.bench or m.group(1) == bench.name:
                raise ValueError(f"bench row {bench.name!r} names no other bench row {m.group(1)!r}")


def load(directory: str | Path = MATRIX_DIR) -> Matrix:
    """Every ``*.yaml`` of ``directory``, checked."""
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise InputError(directory, "holds no *.yaml matrix files")
    matrix = Matrix()
    for path in files:
        read_file(path, matrix)
    check(matrix)
    return matrix


def expected(name: str, metric: str, directory: str | Path = MATRIX_DIR) -> tuple[float, float]:
    """(expected value, tolerance) of row ``name``'s ``metric``: what slow tests assert, typed once."""
    row = load(directory).rows[name]
    return row.expected[parse_metric(metric).name], row.tolerance
