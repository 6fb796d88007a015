"""Export one side of a family model to ONNX: ``python -m pyserini_dense_ext.onnx.export --help``.

The graph is the torch family model itself (backbone, the family's pooling, optional L2 norm),
traced with dynamic batch and sequence axes, so no pooling is written twice. The backbone is
switched to eager attention before tracing: a default export with SDPA attention gives a graph
in which onnxruntime's BERT optimiser fuses only BiasGelu and SkipLayerNormalization, while
the eager graph fuses every layer's attention into one ``Attention`` node. The file's metadata
records family, side, config and precision, and the tokenizer is saved beside it, so loading
needs no flags.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..cli import add_config_options, encoder_overrides, run_cli
from ..encoders.base import INPUT_NAMES, DenseModel, collate
from ..encoders.interface import SIDES, Side, check_side
from ..encoders.loading import load_model, resolve_config
from ..io.errors import InputError
from ..io.lock import output_lock
from .cache import export_path
from .encoder import META_KEY, OUTPUT_NAME, ExportMeta, load_onnx
from .quantize import int8_recipe, quantize_int8

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
MIN_OPSET = 17  # LayerNormalization is an ONNX op from 17 on; older opsets spell it out in 9 ops
FUSED_ATTENTION_OPS = ("Attention", "MultiHeadAttention")
FP32_TOLERANCE = 1e-4
# Traced with two texts of different lengths, so the graph sees padding (a mask with zeros).
SAMPLE_TEXTS = ("dense retrieval of scientific claims with a small bert encoder exported to onnx",
                "protein expression")


class SideModule(torch.nn.Module):
    """Fixes the side, so the graph has exactly the three tensor inputs and one output."""

    def __init__(self, model: DenseModel, side: Side):
        super().__init__()
        self.model, self.side = model, side

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask, token_type_ids, side=self.side)


def tokenizer_dir(onnx_path: Path) -> Path:
    """``x.onnx`` keeps its tokenizer in ``x.tokenizer/`` beside it."""
    return onnx_path.with_name(onnx_path.stem + ".tokenizer")


def use_eager_attention(model: DenseModel) -> None:
    """Trace attention as plain MatMul/Softmax ops, the pattern onnxruntime's optimiser fuses."""
    backbone = model.backbone
    if hasattr(backbone, "set_attn_implementation"):
        backbone.set_attn_implementation("eager")
    else:
        backbone.config._attn_implementation = "eager"


def sample_batch(model: DenseModel, side: Side) -> dict[str, np.ndarray]:
    """Two example rows of different lengths; the longer one has more than m tokens (ME-BERT documents), so the
    pooling traces its general case, not the one for batches shorter than m."""
    repeats = 1 + min_sequence_length(model, side) // 8
    texts = [" ".join([SAMPLE_TEXTS[0]] * repeats), SAMPLE_TEXTS[1]]
    return collate(model.features(texts, side), range(len(texts)), model.tokenizer.pad_token_id)


def min_sequence_length(model: DenseModel, side: Side) -> int:
    """Shortest input the traced graph handles: ME-BERT slices the first m positions."""
    return model.vectors_per_text(side)


def trace(model: DenseModel, side: Side, path: Path, opset: int) -> None:
    batch = {k: torch.from_numpy(v) for k, v in sample_batch(model, side).items()}
    if batch["input_ids"].shape[1] < min_sequence_length(model, side):
        raise ValueError(f"doc_max_length {model.config.doc_max_length} is below num_vectors "
                         f"{model.config.num_vectors}: ME-BERT needs at least m tokens per document")
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[OUTPUT_NAME] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks in transformers
        torch.onnx.export(SideModule(model, side).eval(), tuple(batch[n] for n in INPUT_NAMES), str(path),
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def optimize(model: DenseModel, source: Path, precision: str):
    """onnxruntime's transformer optimiser (python fusions only, so the file runs on any provider)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.backbone.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(str(source), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size), opt_level=0, use_gpu=precision == "fp16")
    if precision == "fp16":
        optimized.convert_float_to_float16(keep_io_types=True)  # fp32 ids in, fp32 vectors out
    return optimized


def fusion_counts(onnx_path: Path) -> dict[str, int]:
    """Node counts by op type, to check what the optimiser fused."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def set_metadata(path: Path, meta: ExportMeta) -> None:
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    for key, value in kept + [(META_KEY, meta.to_json())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "pyserini_dense_ext"
    onnx.save(model, str(path))


def compare(model: DenseModel, onnx_path: Path, side: Side, texts: Sequence[str]) -> dict[str, float]:
    """Max abs difference and min cosine of the export's vectors against the torch model's."""
    reference = model.encode(list(texts), side, batch_size=4)
    exported = load_onnx(onnx_path, side=side, threads=1).encode(list(texts), side, batch_size=4)
    a, b = reference.reshape(-1, reference.shape[-1]), exported.reshape(-1, exported.shape[-1])
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"max_abs_diff": float(np.abs(a - b).max()), "min_cosine": float(cosine.min())}


def export_onnx(model_dir: str | Path, side: str, output: str | Path | None = None, *, family: str | None = None,
                precision: str = "fp32", optimize_graph: bool = True, opset: int = MIN_OPSET, check: bool = True,
                overwrite: bool = False, **overrides: Any) -> ExportMeta:
    """Write ``output`` (.onnx) and its ``.tokenizer`` dir; returns the metadata written into the file, plus
    ``extra["check"]`` (max abs diff and min cosine against torch) when ``check`` is set.

    ``overrides`` are :class:`EncoderConfig` fields (pooling, l2_norm, max lengths...) for a dir
    without ``dense_ext.json``; the export bakes them in. Without ``output`` the export goes to the
    export cache (:mod:`.cache`), where the search commands find it.
    """
    side = check_side(side)
    if output is None:
        output = export_path(model_dir, resolve_config(model_dir, family, **overrides), side, precision)
    output = Path(output)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "fp32" and not optimize_graph:
        raise ValueError(f"{precision} is applied to the optimised graph; drop --no-optimize")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"{output}: the output file name must end in .onnx")
    with output_lock(output):
        return _export(model_dir, side, output, family, precision, optimize_graph, opset, check, overwrite, overrides)


def _export(model_dir: str | Path, side: Side, output: Path, family: str | None, precision: str,
            optimize_graph: bool, opset: int, check: bool, overwrite: bool, overrides: dict[str, Any]) -> ExportMeta:
    tok_dir = tokenizer_dir(output)
    if not overwrite and (output.exists() or tok_dir.exists()):
        raise FileExistsError(f"{output} or {tok_dir} already exists; pass --overwrite to replace them")

    model = load_model(model_dir, family=family, **overrides)
    use_eager_attention(model)
    layers = int(model.backbone.config.num_hidden_layers)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        raw = work / "raw.onnx"
        trace(model, side, raw, opset)
        final = raw
        fused: dict[str, int] = {}
        if optimize_graph:
            optimized = optimize(model, raw, precision)
            fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
            final = work / "optimized.onnx"
            optimized.save_model_to_file(str(final))
            attention = sum(fused.get(op, 0) for op in FUSED_ATTENTION_OPS)
            if attention < layers:
                log.warning("only %d of %d attention layers were fused (fused ops: %s); the export is correct but "
                            "slower", attention, layers, fused)
        if precision == "int8":
            quantized = work / "int8.onnx"
            fp32_nodes = quantize_int8(final, quantized)
            final = quantized
        extra: dict[str, Any] = {"opset": opset, "optimized": optimize_graph, "fused_ops": fused,
                                 "num_layers": layers, "source": str(Path(model_dir).resolve()),
                                 "versions": _versions()}
        if precision == "int8":
            extra["int8"] = int8_recipe(fp32_nodes)
        meta = ExportMeta(family=model.config.family, side=side, config=model.config, dim=model.dim,
                          vectors_per_text=model.vectors_per_text(side), precision=precision,
                          tokenizer=tok_dir.name, min_sequence_length=min_sequence_length(model, side), extra=extra)
        set_metadata(final, meta)
        work_tok = work / tok_dir.name
        model.tokenizer.save_pretrained(str(work_tok))
        if tok_dir.exists():
            shutil.rmtree(tok_dir)
        os.replace(work_tok, tok_dir)
        os.replace(final, output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta.extra["path"] = str(output)
    if check:
        texts = list(SAMPLE_TEXTS) + ["a", "the effect of heat flow on the boundary layer of a wing"]
        result = compare(model, output, side, texts)
        meta.extra["check"] = result
        if precision == "fp32" and result["max_abs_diff"] > FP32_TOLERANCE:
            log.warning("fp32 export differs from torch by %.2e (> %.0e)", result["max_abs_diff"], FP32_TOLERANCE)
    return meta


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


EXAMPLE = """examples (a plain Hugging Face dir, so the family and options are named once, here):
  # into the export cache: searches given the model dir then run this export instead of torch
  python -m pyserini_dense_ext.onnx.export --model all-MiniLM-L6-v2 --side query \\
    --family repbert --pooling mean --l2-norm --doc-segment-id 0 --query-max-length 256
  python -m pyserini_dense_ext.search --index IDX --encoder all-MiniLM-L6-v2 --topics T --output run.trec
  # a named file, int8
  python -m pyserini_dense_ext.onnx.export --model all-MiniLM-L6-v2 --side query --output exports/minilm-q.onnx \\
    --family repbert --pooling mean --l2-norm --doc-segment-id 0 --query-max-length 256 --precision int8
  python -m pyserini_dense_ext.search --index IDX --encoder exports/minilm-q.onnx --topics T --output run.trec
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pyserini_dense_ext.onnx.export", epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export the query or document side of a dense encoder (RepBERT, TCT-ColBERT, ME-BERT) to ONNX: "
                    "dynamic batch and sequence axes, the family's pooling and L2 norm inside the graph, attention "
                    "fused by onnxruntime's optimiser, optional fp16 (GPU) or int8 (CPU). The file records family, "
                    "side and options, and the tokenizer is saved to OUTPUT's stem + '.tokenizer/', so "
                    "'--encoder OUTPUT' in the search and encode commands needs no other flag.")
    parser.add_argument("--model", required=True, help="local model dir (with dense_ext.json, or name --family)")
    parser.add_argument("--side", required=True, choices=SIDES, help="which encoder to export")
    parser.add_argument("--output", default=None,
                        help="the .onnx file to write (default: the export cache, $DENSE_EXT_ONNX_CACHE or "
                             "~/.cache/pyserini-dense-ext/onnx, where search commands given the model dir find a "
                             "query export and use it instead of torch)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default); fp16 for the CUDA provider; int8 (per-channel dynamic) for CPU")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset, >= {MIN_OPSET} (default)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip onnxruntime's transformer fusions (fp32 only; for debugging)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip comparing the export's vectors with the torch model's")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    add_config_options(parser.add_argument_group("encoder config (only for a dir without dense_ext.json, or to "
                                                 "override it)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyserini_dense_ext").setLevel(logging.INFO)
    overrides = encoder_overrides(args)
    try:
        meta = export_onnx(args.model, args.side, args.output, family=args.family, precision=args.precision,
                           optimize_graph=args.optimize, opset=args.opset, check=args.check,
                           overwrite=args.overwrite, **overrides)
    except (InputError, ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fused = meta.extra.get("fused_ops", {})
    attention = sum(fused.get(op, 0) for op in FUSED_ATTENTION_OPS)
    print(f"wrote {meta.extra['path']} ({meta.family}, {meta.side}, {meta.precision}, dim {meta.dim}) "
          f"and {tokenizer_dir(Path(meta.extra['path']))}/")
    if meta.extra.get("optimized"):
        print(f"fused: {attention} of {meta.extra['num_layers']} attention layers; all fused ops {fused}")
    if "check" in meta.extra:
        check = meta.extra["check"]
        print(f"check against torch: max abs diff {check['max_abs_diff']:.2e}, min cosine {check['min_cosine']:.5f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
