"""Validated readers and atomic writers for corpora, topics, qrels and runs."""
from .atomic import atomic_dir, atomic_write
from .corpus import Doc, read_corpus
from .errors import InputError
from .qrels import Qrels, read_qrels
from .runs import Ranking, Run, read_run, write_run
from .topics import read_topics

__all__ = ["Doc", "InputError", "Qrels", "Ranking", "Run", "atomic_dir", "atomic_write", "read_corpus", "read_qrels",
           "read_run", "read_topics", "write_run"]
