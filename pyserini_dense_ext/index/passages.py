"""Long documents as overlapping passages (``docid#k``), so each can be ranked by its best passage (MaxP).

An encoder sees at most its window (256 or 512 tokens): a longer document is silently cut. ME-BERT's
document experiments (Luan et al., 2021) and Pyserini's MS MARCO document runs instead index each
document as passages, the title prepended to each, and score a document by its best passage
(Dai and Callan's MaxP; Pyserini's ``--max-passage``, :mod:`pyserini_dense_ext.search.maxp`).

A passage here is a run of whole words (whitespace-separated) holding at most ``length`` tokens,
and consecutive passages share at most ``stride`` tokens (``stride`` is the overlap, as in Hugging
Face's ``stride``). What a token is depends on who reads the passage: the dense encoder's own
tokenizer (so a window of 64 is 64 word pieces the model sees), or, for a BM25 index with no model,
one word per token. Cutting at word boundaries keeps each passage a substring of the document that
reads the same whoever tokenises it, so a BM25 index split with the encoder's tokenizer
(``index.lucene --passages ... --tokenizer MODEL``) holds exactly the dense index's passages.
Passage k of document ``d`` gets the id ``d#k`` (0-based, Pyserini's MS MARCO segment ids).

Splitting streams: :class:`PassageStream` splits a corpus batch by batch as it is read, so
``encode --passages`` runs in constant memory like a whole-document encode; :func:`split_corpus`
returns the passages as a list (BM25 indexing, tests).
"""
from __future__ import annotations

import bisect
import re
from array import array
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..io.corpus import Doc, DocSource, as_source, docid_hash, hashes_fingerprint
from ..io.fingerprint import docs_fingerprint
from ..progress import progress_bar

SEPARATOR = "#"  # Pyserini's --max-passage-delimiter default
WORDS = "words"  # a token is a whitespace-separated word (BM25 with no model to count for)
_WORD = re.compile(r"\S+")

# texts -> per text, the number of tokens of each of its words (``_WORD`` matches, in order)
WordTokenCounter = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class PassageSpec:
    """How documents were split; recorded in the index so a search knows its rows are passages."""

    length: int  # most tokens per passage (the title, when prefixed, not counted)
    stride: int  # most tokens two consecutive passages share
    title_prefix: bool = False  # each passage is "title + window of the text" (else the title starts passage 0)
    tokens: str = WORDS  # what a token is: "words", or the tokenizer (model dir) that counted them
    separator: str = SEPARATOR

    def __post_init__(self) -> None:
        if self.length < 1 or self.stride < 0:
            raise ValueError(f"--passages LEN STRIDE: need LEN >= 1 and STRIDE >= 0, got {self.length} {self.stride}")
        if self.stride >= self.length:
            raise ValueError(f"--passages LEN STRIDE: the stride (the tokens two passages share) must be smaller than "
                             f"the window, got window {self.length}, stride {self.stride}")
        if not self.separator or any(c.isspace() for c in self.separator):
            raise ValueError(f"the passage separator must be non-empty with no whitespace, got {self.separator!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PassageSpec":
        return cls(**data)


def passage_id(docid: str, k: int, separator: str = SEPARATOR) -> str:
    return f"{docid}{separator}{k}"


def word_windows(counts: Sequence[int], length: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` of the passages: at most ``length`` tokens each, at most ``stride`` shared.

    A passage starts at the first word from which the rest of the previous passage holds at most
    ``stride`` tokens and the next uncovered word still fits. A word longer than the window alone
    is a passage of its own (the encoder truncates it). Every word is in some passage, each passage
    starts and ends after the previous one. No words: one empty passage, so every document keeps a row.
    """
    n = len(counts)
    if n == 0:
        return [(0, 0)]
    ends = [0]
    for c in counts:
        ends.append(ends[-1] + c)  # ends[i] = tokens before word i
    windows, start = [], 0
    while True:
        # the longest run of words from ``start`` within ``length`` tokens (at least one word)
        end = max(start + 1, bisect.bisect_right(ends, ends[start] + length) - 1)
        windows.append((start, end))
        if end >= n:
            return windows
        # the next passage starts at the first word from which the rest of this one holds at most ``stride``
        # tokens and the first word not yet in a passage still fits within ``length``
        nxt = bisect.bisect_left(ends, max(ends[end] - stride, ends[end + 1] - length), lo=start + 1)
        start = min(nxt, end)


def count_words(texts: list[str]) -> list[list[int]]:
    """One token per word: the counter for BM25 passages with no model."""
    return [[1] * len(_WORD.findall(t)) for t in texts]


def tokenizer_counter(tokenizer: Any) -> WordTokenCounter:
    """Tokens per word as ``tokenizer`` cuts them (a fast tokenizer: its offsets map pieces to words)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"--passages with a model needs a fast (Rust) tokenizer to map tokens to words; "
                         f"{type(tokenizer).__name__} is not one")

    def count(texts: list[str]) -> list[list[int]]:
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False,
                            return_attention_mask=False, return_token_type_ids=False)
        out = []
        for text, offsets in zip(texts, encoded["offset_mapping"]):
            starts = [m.start() for m in _WORD.finditer(text)]
            counts = [0] * len(starts)
            for begin, end in offsets:
                if end > begin and starts:
                    counts[max(0, bisect.bisect_right(starts, begin) - 1)] += 1
            out.append(counts)
        return out

    return count


def split_document(doc: Doc, spec: PassageSpec, counts: Sequence[int]) -> list[Doc]:
    """``doc`` as passages ``docid#k``; ``counts`` are the tokens of each word of the text being split."""
    text = doc.text if spec.title_prefix else doc.contents
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    title = doc.title if spec.title_prefix else ""
    out = []
    for k, (first, last) in enumerate(word_windows(counts, spec.length, spec.stride)):
        body = text[spans[first][0]:spans[last - 1][1]] if last > first else ""
        out.append(Doc(passage_id(doc.docid, k, spec.separator), body, title))
    return out


def check_docids(docs: Iterable[Doc], separator: str) -> Iterator[Doc]:
    """``docs``, each checked as it passes: passage ids are ``docid<separator>k``, so a docid already holding
    the separator would be cut wrongly."""
    for d in docs:
        if separator in d.docid:
            raise ValueError(f"docid {d.docid!r} contains the passage separator {separator!r}; passages are named "
                             f"docid{separator}k and MaxP cuts at the first {separator!r}")
        yield d


def iter_passages(docs: Iterable[Doc], spec: PassageSpec, counter: WordTokenCounter = count_words,
                  batch_size: int = 256, bar: Any = None) -> Iterator[Doc]:
    """Every document as passages, in corpus order (document i's passages before document i+1's), split
    ``batch_size`` documents at a time as they are read: memory holds one batch, whatever the corpus."""
    batch: list[Doc] = []

    def split(batch: list[Doc]) -> Iterator[Doc]:
        counts = counter([d.text if spec.title_prefix else d.contents for d in batch])
        for doc, doc_counts in zip(batch, counts):
            yield from split_document(doc, spec, doc_counts)
        if bar is not None:
            bar.update(len(batch))

    for doc in check_docids(docs, spec.separator):
        batch.append(doc)
        if len(batch) == batch_size:
            yield from split(batch)
            batch = []
    if batch:
        yield from split(batch)


def split_corpus(docs: Sequence[Doc], spec: PassageSpec, counter: WordTokenCounter = count_words,
                 batch_size: int = 256, progress: bool = True) -> list[Doc]:
    """Every document as passages, in corpus order, in memory (:class:`PassageStream` streams them)."""
    with progress_bar(len(docs), "splitting into passages", "doc", progress) as bar:
        return list(iter_passages(docs, spec, counter, batch_size, bar))


class PassageStream:
    """The passages of a :class:`~pyserini_dense_ext.io.corpus.DocSource`'s documents, as a ``DocSource``
    itself, in constant memory: the documents are split as they are read, a batch at a time.

    A first pass splits every document to count the passages, keep a 64-bit hash of each passage id
    (8 bytes a passage, as :class:`~pyserini_dense_ext.io.corpus.CorpusStream` keeps of a document)
    and fingerprint the passages' texts; every later pass (:meth:`docs`) splits again and checks each
    passage id against its hash. ``title_room`` (tokens, with ``title_counter``): count in
    :attr:`long_titles` the passages whose prefixed title is longer.
    """

    def __init__(self, source: DocSource, spec: PassageSpec, counter: WordTokenCounter = count_words,
                 batch_size: int = 256, progress: bool = True, title_room: int | None = None):
        self.source, self.spec, self.counter, self.batch_size = source, spec, counter, batch_size
        self.documents = len(source)
        self.long_titles = 0
        hashes = array("Q")

        def counted(passages: Iterable[Doc]) -> Iterator[Doc]:
            long: dict[str, bool] = {}  # this batch's titles (reset with each new document batch)
            for p in passages:
                hashes.append(docid_hash(p.docid))
                if title_room is not None and p.title:
                    if p.title not in long:
                        if len(long) > batch_size:
                            long.clear()
                        long[p.title] = sum(counter([p.title])[0]) > title_room
                    self.long_titles += long[p.title]
                yield p

        with progress_bar(len(source), "splitting into passages", "doc", progress) as bar:
            self._corpus_fingerprint = docs_fingerprint(counted(iter_passages(source.docs(), spec, counter,
                                                                              batch_size, bar)))
        self.hashes = np.array(hashes, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.hashes)

    def fingerprint(self) -> str:
        return hashes_fingerprint(self.hashes)

    def corpus_fingerprint(self) -> str:
        """:func:`~pyserini_dense_ext.io.fingerprint.docs_fingerprint` of the passages (not of the documents:
        that is ``source.corpus_fingerprint()``)."""
        return self._corpus_fingerprint

    def docs(self) -> Iterator[Doc]:
        for position, p in enumerate(iter_passages(self.source.docs(), self.spec, self.counter, self.batch_size)):
            if position >= len(self.hashes) or docid_hash(p.docid) != self.hashes[position]:
                raise ValueError(f"passage {position + 1} is now {p.docid!r}: the documents or their split changed "
                                 "while being encoded")
            yield p


def check_window(spec: PassageSpec, added: int, max_length: int, where: str) -> None:
    """A window the encoder would truncate defeats the split: LEN plus the tokens the family adds must fit."""
    if spec.length + added > max_length:
        raise ValueError(f"--passages {spec.length} {spec.stride}: a window of {spec.length} tokens plus the "
                         f"{added} the encoder adds ({where}) is longer than its maximum of {max_length} tokens; "
                         f"use a window of at most {max_length - added}")


def split_for_encoder(docs: Sequence[Doc] | DocSource, spec: PassageSpec, model: Any,
                      progress: bool = True) -> PassageStream:
    """Passages whose windows are counted in ``model``'s tokens and fit its document length, streamed.

    ``docs`` is a list or a :class:`~pyserini_dense_ext.io.corpus.DocSource` (a
    :class:`~pyserini_dense_ext.io.corpus.CorpusStream`): the passages are a :class:`PassageStream`,
    so splitting a corpus holds no more of it than encoding it whole. ``model`` is an
    :class:`~pyserini_dense_ext.encoders.Encoder` with a ``tokenizer`` (torch or ONNX). A prefixed
    title longer than the room left beside the window is cut by the encoder at the passage's end;
    how many passages that hits is logged.
    """
    import logging

    from ..encoders.registry import FAMILIES

    tokenizer, config = getattr(model, "tokenizer", None), model.config
    if tokenizer is None:
        raise ValueError(f"--passages needs the encoder's tokenizer; {type(model).__name__} has none")
    family = FAMILIES[config.family].model
    added = len(family.tokenize(tokenizer, config, [""], "document")["input_ids"][0])
    check_window(spec, added, config.doc_max_length, f"{config.family} formatting")
    room = config.doc_max_length - added - spec.length
    passages = PassageStream(as_source(docs), spec, tokenizer_counter(tokenizer), progress=progress,
                             title_room=room if spec.title_prefix else None)
    if passages.long_titles:
        logging.getLogger(__name__).warning(
            f"--title-prefix: {passages.long_titles} of {len(passages)} passages have a title longer than the {room} "
            f"tokens left beside a {spec.length}-token window within doc_max_length {config.doc_max_length}; the "
            "encoder cuts their ends")
    return passages
