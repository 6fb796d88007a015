"""Content fingerprints: what decides whether a built index or cache may be reused.

A path says nothing about what is behind it: ``quickstart-output/bm25-index`` may hold another
corpus, and one model reached through two paths (a symlinked venv) is still one model. So every
reuse is keyed on content: a SHA-256 of the documents as they are indexed (docid and text,
after ``--empty`` and sharding), of the model's files (config, weights, tokenizer; an
ONNX export with its tokenizer dir), and the options that shape what was built. A reuse check
compares such keys field by field and names the fields that differ.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .atomic import atomic_write

if TYPE_CHECKING:  # (corpus computes its fingerprint with this module)
    from .corpus import Doc

_BLOCK = 1 << 20
_MODULUS = 1 << 256


def docs_fingerprint(docs: Iterable[Doc]) -> str:
    """The documents as indexed (docid and contents): the sum modulo 2^256 of each one's SHA-256.

    A sum, so shards combine (:func:`combine_fingerprints`) into exactly the fingerprint of the
    whole corpus, and a merged index can be matched against a Lucene index built in one go.
    """
    total = 0
    for d in docs:
        digest = hashlib.sha256(d.docid.encode("utf-8", "surrogatepass") + b"\x00" +
                                d.contents.encode("utf-8", "surrogatepass")).digest()
        total += int.from_bytes(digest, "big")
    return f"{total % _MODULUS:064x}"


def combine_fingerprints(fingerprints: Sequence[str]) -> str:
    """The fingerprint of the union of disjoint document sets (shards)."""
    return f"{sum(int(f, 16) for f in fingerprints) % _MODULUS:064x}"


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """One file's SHA-256; cached per (path, size, mtime), so a process hashes a model's weights once."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    st = os.stat(path)
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _dir_files(directory: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """A dir's own non-hidden files (what ``from_pretrained`` reads), by name."""
    return [(prefix + f.name, f) for f in sorted(directory.iterdir()) if f.is_file() and not f.name.startswith(".")]


def _model_files(path: Path) -> list[tuple[str, Path]]:
    if path.is_dir():
        return _dir_files(path)
    tokenizer = path.with_name(path.stem + ".tokenizer")  # an ONNX export keeps its tokenizer beside it
    return [(path.name, path)] + (_dir_files(tokenizer, "tokenizer/") if tokenizer.is_dir() else [])


def model_fingerprint(path: str | Path) -> str:
    """SHA-256 over a model dir's files (name and content; hidden files and subdirs left out), or over an
    ONNX export and its tokenizer dir. The same model reached through any path gives the same value."""
    h = hashlib.sha256()
    for name, file in _model_files(Path(path)):
        h.update(f"{name}\x00{file_digest(file)}\n".encode())
    return h.hexdigest()


def encoder_fingerprint(model_path: str | Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """What made a set of vectors: the model's content and every option of its text-to-vector mapping."""
    return {"model_sha256": model_fingerprint(model_path), **config}


def differences(recorded: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> list[str]:
    """The fields of ``wanted`` that ``recorded`` lacks or holds with another value (all of them if no record)."""
    if recorded is None:
        return sorted(wanted)
    return sorted(k for k, v in wanted.items() if recorded.get(k) != v)


# A cache file (``.npy``, ``.onnx``) carries its key in ``<file>.key.json``, written after the file.
def key_path(path: str | Path) -> Path:
    return Path(str(path) + ".key.json")


def read_key(path: str | Path) -> dict[str, Any] | None:
    """The key recorded for a cache file, or None when the file or its key is missing or unreadable."""
    if not Path(path).exists():
        return None
    try:
        key = json.loads(key_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return key if isinstance(key, dict) else None


def write_key(path: str | Path, key: Mapping[str, Any]) -> None:
    with atomic_write(key_path(path)) as f:
        f.write(json.dumps(dict(key), indent=2, sort_keys=True) + "\n")
