"""Run an ONNX export through onnxruntime behind the same surface as the torch :class:`DenseModel`.

Texts become token ids through the family's own ``tokenize`` and are batched by the shared
``encode_texts`` loop, so an ONNX encoder differs from the torch one only in who runs the
graph. Everything loading needs (family, side, config, tokenizer) is in the file's metadata,
written by :mod:`pyserini_dense_ext.onnx.export`, so no flag has to repeat it.

Threads on the CPU: a batch of one text runs on onnxruntime's own thread pool (``threads``
intra-op threads). A batch of several texts is cut into ``threads`` slices of whole rows, each
run on its own thread by a second, single-threaded session: a query is ~20 tokens, so each
operator's work is too small to share between threads without their hand-offs costing more
than they save (at batch 32, slices ran 1.3-1.9x faster than intra-op threads; ``bench/onnx_latency.py``,
docs/onnx.md). A row's fp32 vector does not depend on the other rows of its batch (the padding is
masked), so slicing changes no result (tested). An int8 export quantises its activations with one
scale per batch, so there a row depends on its batch: int8 batches are not sliced, and give what
the batch size asked for gives (docs/onnx.md's int8 table).
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..encoders.base import INPUT_NAMES, Batch, encode_texts
from ..encoders.config import EncoderConfig
from ..encoders.interface import Side, check_side
from ..encoders.pyserini_api import DenseDocumentEncoder, DenseQueryEncoder
from ..encoders.registry import FAMILIES
from ..io.errors import InputError

log = logging.getLogger(__name__)

META_KEY = "dense_ext"  # key of our JSON in the ONNX file's metadata_props
FORMAT_VERSION = 1
OUTPUT_NAME = "embeddings"
# Options that only change tokenisation; all others (pooling, norm, m, projection) are baked into the graph.
TOKENIZER_OPTIONS = ("query_max_length", "doc_max_length")


@dataclass(frozen=True)
class ExportMeta:
    """What :mod:`.export` records in the file so that loading needs no flags."""

    family: str
    side: Side
    config: EncoderConfig
    dim: int
    vectors_per_text: int
    precision: str
    tokenizer: str  # dir name, relative to the .onnx file's dir
    min_sequence_length: int
    extra: dict[str, Any]

    def to_json(self) -> str:
        data = dict(self.extra, format_version=FORMAT_VERSION, family=self.family, side=self.side,
                    config=self.config.to_dict(), dim=self.dim, vectors_per_text=self.vectors_per_text,
                    precision=self.precision, tokenizer=self.tokenizer, min_sequence_length=self.min_sequence_length)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, path: Path, text: str) -> "ExportMeta":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(path, f"metadata is not valid JSON: {e}", field=META_KEY) from None
        if not isinstance(data, dict):
            raise InputError(path, "metadata is not a JSON object", field=META_KEY)
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise InputError(path, f"was exported in format version {version!r}; this version reads "
                                   f"{FORMAT_VERSION}: export it again", field="format_version")
        fields = ("family", "side", "config", "dim", "vectors_per_text", "precision", "tokenizer",
                  "min_sequence_length")
        for name in fields:
            if name not in data:
                raise InputError(path, "is missing from the metadata", field=name)
        config_data = data["config"]
        if not isinstance(config_data, dict):
            raise InputError(path, "must be a JSON object", field="config")
        try:
            config = EncoderConfig(**config_data)
        except TypeError as e:
            raise InputError(path, f"metadata config: {e}", field="config") from None
        config.validate(f"{path} (metadata config)")
        if data["side"] not in ("query", "document"):
            raise InputError(path, f"must be 'query' or 'document', got {data['side']!r}", field="side")
        if data["family"] != config.family:
            raise InputError(path, f"says {data['family']!r} but its config says {config.family!r}", field="family")
        extra = {k: v for k, v in data.items() if k not in fields and k != "format_version"}
        return cls(family=data["family"], side=data["side"], config=config, dim=int(data["dim"]),
                   vectors_per_text=int(data["vectors_per_text"]), precision=str(data["precision"]),
                   tokenizer=str(data["tokenizer"]), min_sequence_length=int(data["min_sequence_length"]),
                   extra=extra)


def resolve_providers(device: str) -> tuple[list, str, int]:
    """onnxruntime providers for ``cpu``, ``cuda`` or ``cuda:N``; CUDA that is missing is an error, never a CPU run."""
    import onnxruntime as ort

    kind, _, index = str(device).partition(":")
    if kind == "cpu" and not index:
        return ["CPUExecutionProvider"], "cpu", 0
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise ValueError(f"device {device!r} asked for, but this onnxruntime ({ort.__version__}) has no CUDA provider "
                         f"(available: {', '.join(available)}); install onnxruntime-gpu on a GPU machine, "
                         f"or use --device cpu")
    device_id = int(index or 0)
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"], "cuda", device_id


def _session(path: Path, device: str, threads: int | None):
    import onnxruntime as ort

    providers, device_type, device_id = resolve_providers(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime's own warnings about unused initializers are noise here
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(path, f"is not a loadable ONNX model: {first}") from None
    chosen = session.get_providers()[0]
    if device_type == "cuda" and chosen != "CUDAExecutionProvider":
        raise ValueError(f"{path}: the CUDA provider failed to start (onnxruntime fell back to {chosen}); "
                         "check the CUDA/cuDNN libraries, or use --device cpu")
    return session, device_type, device_id


class OnnxModel:
    """An exported encoder: the :class:`~pyserini_dense_ext.encoders.Encoder` interface, like :class:`DenseModel`."""

    def __init__(self, path: str | Path, side: Side | None = None, device: str = "cpu", threads: int | None = None,
                 io_binding: bool | None = None, **overrides: Any):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "ONNX file does not exist" if not self.path.exists() else "is not a file")
        self.threads = threads or len(os.sched_getaffinity(0))
        self.session, self.device_type, self.device_id = _session(self.path, device, self.threads)
        self._sliced: tuple[Any, ThreadPoolExecutor] | None = None  # the single-threaded session and its workers
        self.provider = self.session.get_providers()[0]
        custom = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise InputError(self.path, "has no dense_ext metadata: it was not written by "
                                        "'python -m pyserini_dense_ext.onnx.export'", field=META_KEY)
        self.meta = ExportMeta.from_json(self.path, custom[META_KEY])
        if side is not None and check_side(side) != self.meta.side:
            raise self._side_error(side)
        self.config = self._apply_overrides(self.meta.config, overrides)
        self.input_names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in self.input_names if n not in INPUT_NAMES]
        outputs = [o.name for o in self.session.get_outputs()]
        if missing or OUTPUT_NAME not in outputs:
            raise InputError(self.path, f"graph inputs {self.input_names} / outputs {outputs} are not those of an "
                                        f"export ({list(INPUT_NAMES)} -> {OUTPUT_NAME!r})")
        self.tokenizer = self._load_tokenizer()
        # IO binding keeps outputs on the GPU until one copy back; on CPU it only adds bookkeeping.
        self.io_binding = self.device_type == "cuda" if io_binding is None else io_binding
        log.info("ONNX %s encoder %s (%s, %s) on %s", self.meta.side, self.path, self.meta.family,
                 self.meta.precision, self.provider)
        if self.meta.precision == "fp16" and self.device_type == "cpu":
            log.warning("%s is an fp16 export, meant for the CUDA provider; on CPU it is slower than fp32 "
                        "(use an fp32 or int8 export)", self.path)

    def _side_error(self, side: str) -> InputError:
        other = "document" if self.meta.side == "query" else "query"
        plural = "queries" if side == "query" else "documents"
        return InputError(self.path, f"was exported for the {self.meta.side} side and cannot encode {plural}; "
                                     f"export the model again with --side {other}", field="side")

    def _apply_overrides(self, config: EncoderConfig, overrides: dict[str, Any]) -> EncoderConfig:
        """Lengths may change at load time; anything else is compiled into the graph and must match."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        for name, value in overrides.items():
            if name not in TOKENIZER_OPTIONS and getattr(config, name, value) != value:
                raise InputError(self.path, f"was exported with {name}={getattr(config, name)!r}, which is fixed in "
                                            f"the graph; export again to use {name}={value!r}", field=name)
        return config.with_overrides(**{k: v for k, v in overrides.items() if k in TOKENIZER_OPTIONS})

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        directory = self.path.parent / self.meta.tokenizer
        if not directory.is_dir():
            raise InputError(directory, f"tokenizer directory of {self.path.name} is missing (the export writes it "
                                        "next to the .onnx file; copy both together)", field="tokenizer")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        except (OSError, ValueError) as e:
            raise InputError(directory, f"is not a usable tokenizer: {e}", field="tokenizer") from None
        if tokenizer.pad_token_id is None:
            raise InputError(directory, "tokenizer has no padding token", field="tokenizer")
        return tokenizer

    # ----- DenseModel surface -------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.meta.family

    @property
    def side(self) -> Side:
        return self.meta.side

    @property
    def sides(self) -> tuple[Side, ...]:
        return (self.meta.side,)

    @property
    def precision(self) -> str:
        return self.meta.precision

    @property
    def dim(self) -> int:
        """Dimension of the output vectors (the index's dimension)."""
        return self.meta.dim

    def vectors_per_text(self, side: Side) -> int:
        if check_side(side) != self.meta.side:
            raise self._side_error(side)
        return self.meta.vectors_per_text

    def encode(self, texts: Sequence[str], side: Side, batch_size: int = 32, progress: bool = False,
               max_length: int | None = None) -> np.ndarray:
        """Texts to float32 vectors in input order; ``(n, d)`` or ``(n, m, d)`` (ME-BERT documents)."""
        if check_side(side) != self.meta.side:
            raise self._side_error(side)
        config = self.config
        if max_length is not None:
            config = config.with_overrides(**{"query_max_length" if side == "query" else "doc_max_length": max_length})
        family = FAMILIES[config.family].model
        return encode_texts(texts, lambda t: family.tokenize(self.tokenizer, config, t, side), self._infer,
                            self.tokenizer.pad_token_id, batch_size, progress, desc=f"encoding {side}s (onnx)")

    def _infer(self, batch: Batch) -> np.ndarray:
        width = batch["input_ids"].shape[1]
        if width < self.meta.min_sequence_length:
            # ME-BERT's graph was traced with at least m positions; masked padding changes no vector.
            extra = self.meta.min_sequence_length - width
            pads = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
            batch = {k: np.pad(v, ((0, 0), (0, extra)), constant_values=pads[k]) for k, v in batch.items()}
        feeds = {name: np.ascontiguousarray(batch[name]) for name in self.input_names}
        rows = len(feeds["input_ids"])
        if (not self.io_binding and self.device_type == "cpu" and self.threads > 1 and rows > 1
                and self.meta.precision != "int8"):
            return self._run_sliced(feeds, min(self.threads, rows))
        if not self.io_binding:
            return self.session.run([OUTPUT_NAME], feeds)[0]
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.device_type,
                                                                               self.device_id))
        binding.bind_output(OUTPUT_NAME, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


    def _run_sliced(self, feeds: dict[str, np.ndarray], slices: int) -> np.ndarray:
        """The batch cut into ``slices`` runs of whole rows, each on its own thread (see the module docstring)."""
        if self._sliced is None:
            session = _session(self.path, "cpu", 1)[0]
            self._sliced = (session, ThreadPoolExecutor(self.threads, thread_name_prefix="dense-ext-onnx"))
        session, pool = self._sliced
        bounds = np.linspace(0, len(feeds["input_ids"]), slices + 1).astype(int)
        parts = [{name: value[a:b] for name, value in feeds.items()} for a, b in zip(bounds[:-1], bounds[1:])]
        return np.concatenate(list(pool.map(lambda part: session.run([OUTPUT_NAME], part)[0], parts)))


def load_onnx(path: str | Path, side: Side | None = None, device: str = "cpu", threads: int | None = None,
              **overrides: Any) -> OnnxModel:
    """Open an export; ``side`` (if given) must be the exported side, ``device`` is ``cpu`` or ``cuda[:N]``."""
    return OnnxModel(path, side=side, device=device, threads=threads, **overrides)


class OnnxQueryEncoder(DenseQueryEncoder):
    """Pyserini ``QueryEncoder`` over an ONNX query export (``FaissSearcher(index, OnnxQueryEncoder(path))``);
    takes ``threads=`` for onnxruntime."""

    backend = "onnx"


class OnnxDocumentEncoder(DenseDocumentEncoder):
    """Pyserini ``DocumentEncoder`` over an ONNX document export (``pyserini.encode`` after ``register()``)."""

    backend = "onnx"
