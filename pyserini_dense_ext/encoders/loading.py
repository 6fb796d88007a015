"""The torch backend: a family model from a local HF dir, its ``dense_ext.json`` or a family named by the caller."""
from __future__ import annotations

import pickle  # only for its error type: nothing here unpickles
from pathlib import Path
from typing import Any

import torch

from ..io.errors import InputError
from .backends import Backend, Description, register_backend
from .base import DenseModel
from .config import CONFIG_NAME, EncoderConfig
from .interface import SIDES, Side
from .registry import FAMILIES


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA without one is an error, not a silent CPU run."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    return dev


def resolve_config(model_dir: str | Path, family: str | None = None, **overrides: Any) -> EncoderConfig:
    """The dir's config; an explicit ``family`` other than the dir's starts from that family's defaults."""
    config = EncoderConfig.load(model_dir)
    if family is not None and (config is None or config.family != family):
        config = EncoderConfig.for_family(family)
    if config is None:
        raise InputError(model_dir, f"has no {CONFIG_NAME}, so its family is unknown: pass a family "
                                    f"(--family {{{','.join(FAMILIES)}}})", field="family")
    return config.with_overrides(**overrides)


def build_model(backbone: torch.nn.Module, tokenizer, config: EncoderConfig) -> DenseModel:
    return FAMILIES[config.family].model(backbone, tokenizer, config)


def check_model_dir(model_dir: str | Path) -> Path:
    """Fail clearly on a dir that is not a Hugging Face checkpoint (before transformers does, vaguely)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise InputError(path, "model directory does not exist (models load from local dirs only)")
    if not (path / "config.json").is_file():
        raise InputError(path, f"is not a model directory: it has no config.json (nor is it one with {CONFIG_NAME})",
                         field="config.json")
    weights = [p for p in path.iterdir() if p.name.endswith((".safetensors", ".bin")) and "model" in p.name]
    if not weights:
        raise InputError(path, "is not a model directory: it holds no model.safetensors or pytorch_model.bin",
                         field="weights")
    return path


def load_model(model_dir: str | Path, family: str | None = None, device: str = "cpu", strict: bool = True,
               **overrides: Any) -> DenseModel:
    """Load a local HF BERT-family dir as a family model, in eval mode, on ``device``.

    ``strict=False`` lets a training recipe start from a dir without the family's extra weights.
    """
    from transformers import AutoModel, AutoTokenizer

    path = check_model_dir(model_dir)
    config = resolve_config(path, family, **overrides)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise InputError(path, f"has no usable tokenizer: {e}", field="tokenizer") from None
    try:
        backbone = AutoModel.from_pretrained(str(path))
    except pickle.UnpicklingError as e:  # transformers loads .bin files with torch.load(weights_only=True)
        raise InputError(path, "holds a pickled checkpoint with more than tensors in it, which is not loaded (it "
                               f"could run code): {str(e).splitlines()[0]} Convert it to model.safetensors.",
                         field="weights") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(path, f"could not be loaded as a model: {e}") from None
    model = build_model(backbone, tokenizer, config)
    model.load_extra(path, strict)
    return model.to(resolve_device(device)).eval()


def _load(path: Path, family: str | None = None, side: Side | None = None, device: str = "cpu",
          **overrides: Any) -> DenseModel:
    return load_model(path, family=family, device=device, **overrides)  # a torch model encodes either side


def _describe(path: Path) -> Description:
    return Description(EncoderConfig.load(path), SIDES)


register_backend(Backend("torch", claims=Path.is_dir, describe=_describe, load=_load, pyserini_key="dense_ext"))
