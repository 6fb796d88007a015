"""Read topics: Pyserini TSV (``qid<TAB>text``) or BEIR ``queries.jsonl`` (``_id``, ``text``)."""
from __future__ import annotations

from pathlib import Path

from .corpus import check_unicode, read_jsonl
from .errors import InputError
from .lines import iter_lines


def read_topics(path: str | Path, qids: set[str] | None = None) -> dict[str, str]:
    """Ordered ``{qid: text}``; ``qids`` keeps only those queries (a BEIR split's qrels, say)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "topics file does not exist")
    topics: dict[str, str] = {}
    if path.suffix in (".jsonl", ".json"):
        for lineno, obj in read_jsonl(path):
            qid = obj.get("_id", obj.get("id", obj.get("qid")))
            if qid is None:
                raise InputError(path, "is missing", lineno, "_id")
            if isinstance(qid, bool) or not isinstance(qid, (str, int)):
                raise InputError(path, f"must be a string or an integer, got {type(qid).__name__}", lineno, "_id")
            text = obj.get("text", obj.get("title"))
            if not isinstance(text, str):
                raise InputError(path, "is missing or not a string", lineno, "text")
            check_unicode(text, path, lineno, "text")
            _add(topics, check_unicode(str(qid), path, lineno, "_id").strip(), text, path, lineno)
    else:
        for lineno, line in iter_lines(path, "topics file"):
            if not line.strip():
                continue
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise InputError(path, "expected 'qid<TAB>query text'", lineno, "text")
            _add(topics, parts[0].strip(), parts[1], path, lineno)
    if qids is not None:
        missing = sorted(qids - topics.keys())
        if missing:
            raise InputError(path, f"lacks {len(missing)} queries named in the qrels, e.g. {missing[:3]}")
        topics = {q: t for q, t in topics.items() if q in qids}
    if not topics:
        raise InputError(path, "holds no queries")
    return topics


def _add(topics: dict[str, str], qid: str, text: str, path: Path, lineno: int) -> None:
    if not qid:
        raise InputError(path, "query id is empty", lineno, "_id")
    if qid in topics:
        raise InputError(path, f"duplicate query id {qid!r}", lineno, "_id")
    if not text.strip():
        raise InputError(path, f"query {qid!r} has empty text", lineno, "text")
    topics[qid] = text.strip()
