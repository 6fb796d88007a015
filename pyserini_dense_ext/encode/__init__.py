"""``python -m pyserini_dense_ext.encode input ... encoder ... output ...``, named after ``pyserini.encode``.

Only the command lives here; corpus-to-index code is :mod:`pyserini_dense_ext.index.encode`.
"""
