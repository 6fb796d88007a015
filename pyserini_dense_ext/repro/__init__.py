"""The reproduction matrix: every published number as a row of ``repro/*.yaml`` that anyone re-runs.

``matrix`` reads and checks the YAML, ``runner`` runs rows (shared steps once, commands in-process,
our eval module), ``report`` prints expected vs measured and generates ``docs/reproductions.md``
and the docs' marked tables, ``bench`` reads the speed matrix. Slow tests take their expected
values from here (:func:`expected`), so a re-measured number changes in one place.
"""
from .matrix import Bench, Line, Matrix, Row, Step, Table, expected, load

__all__ = ["Bench", "Line", "Matrix", "Row", "Step", "Table", "expected", "load"]
