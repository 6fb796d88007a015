"""Pre-encoded queries without pickle: ``embedding.npy`` (float32 ``(n, d)``) + ``text.json`` (n strings).

Pyserini keeps encoded queries as ``embedding.pkl`` and reads them with ``pandas.read_pickle``,
which runs whatever code the file carries; such files travel between users, so we never open
them. Our query encoders read this format instead (``encoded_query_dir=``).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.errors import InputError
from ..io.atomic import atomic_write

VECTORS_FILE, TEXTS_FILE, PICKLE_FILE = "embedding.npy", "text.json", "embedding.pkl"


def save_encoded_queries(directory: str | Path, texts: Sequence[str], vectors: np.ndarray) -> Path:
    """Write query texts and their vectors (row i is text i), each file atomically."""
    directory = Path(directory)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"need one vector row per text: {len(texts)} texts, vectors of shape {vectors.shape}")
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_write(directory / VECTORS_FILE, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    with atomic_write(directory / TEXTS_FILE) as f:
        json.dump(list(texts), f, ensure_ascii=False)
    return directory


def load_encoded_queries(directory: str | Path) -> dict[str, np.ndarray]:
    """``{query text: float32 (d,) vector}``, as Pyserini's ``QueryEncoder.embedding`` holds them."""
    directory = Path(directory)
    vectors_path, texts_path = directory / VECTORS_FILE, directory / TEXTS_FILE
    if not vectors_path.is_file() and (directory / PICKLE_FILE).is_file():
        raise InputError(directory / PICKLE_FILE, "is a pickle, which can run arbitrary code when loaded, so it is "
                                                  f"not read; store the queries as {VECTORS_FILE} + {TEXTS_FILE} "
                                                  "(encoders.encoded_queries.save_encoded_queries)")
    for path in (vectors_path, texts_path):
        if not path.is_file():
            raise InputError(path, "is missing: an encoded-query dir holds embedding.npy and text.json")
    try:
        vectors = np.load(vectors_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(vectors_path, f"is not a plain .npy array: {e}") from None
    try:
        texts = json.loads(texts_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(texts_path, f"is not valid UTF-8 JSON: {e}") from None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InputError(texts_path, "must be a JSON list of query strings")
    if len(set(texts)) != len(texts):
        duplicate = next(t for t, n in Counter(texts).items() if n > 1)
        raise InputError(texts_path, f"lists the query {duplicate[:80]!r} twice: which vector is it?")
    if vectors.ndim != 2 or len(vectors) != len(texts) or not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(vectors_path, f"holds {vectors.dtype} {vectors.shape}, expected float ({len(texts)}, d): "
                                       f"one row per text in {TEXTS_FILE}")
    if not np.isfinite(vectors).all():
        raise InputError(vectors_path, "holds NaN or infinite values")
    return dict(zip(texts, vectors.astype(np.float32)))
