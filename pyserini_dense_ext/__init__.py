"""pyserini-dense-ext: RepBERT, ME-BERT, TCT-ColBERT and CODER dense retrieval as a Pyserini plugin.

Importing the package prepares the environment Pyserini needs (see ``_env``), so import it
before ``pyserini.search.lucene`` or anything else that starts the JVM.
"""
from ._env import bootstrap

bootstrap()

__version__ = "0.1.0"
