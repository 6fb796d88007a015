"""ONNX export and onnxruntime encoders on tiny random models: parity with torch, metadata, bad input, Pyserini."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import onnxruntime as ort
import pytest

from pyserini_dense_ext.encoders import load_model
from pyserini_dense_ext.io.errors import InputError
from pyserini_dense_ext.onnx import OnnxDocumentEncoder, OnnxQueryEncoder, export_onnx, is_onnx, load_onnx, register
from pyserini_dense_ext.onnx.export import fusion_counts, main, tokenizer_dir

FAMILIES = ("repbert", "tct_colbert", "mebert")
SIDES = ("query", "document")
TEXTS = ["protein expression in human cells", "a", "heat flow in a boundary layer of the wing at mach number two",
         "cancer risk", "increased risk of cancer in patients with the gene and reduced effect of treatment"]


@pytest.fixture(scope="module")
def exports(tiny_family_dirs, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """fp32 export of every family and side (no export-time check: the tests below compare)."""
    out = tmp_path_factory.mktemp("onnx")
    paths = {}
    for family in FAMILIES:
        for side in SIDES:
            paths[family, side] = out / f"{family}-{side}.onnx"
            export_onnx(tiny_family_dirs[family], side, paths[family, side], check=False)
    return paths


def copy_export(src: Path, dst_dir: Path) -> Path:
    """The .onnx and its tokenizer dir in a fresh place, for tests that damage them."""
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    shutil.copytree(tokenizer_dir(src), tokenizer_dir(dst))
    return dst


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_matches_torch(family, side, exports, tiny_family_dirs):
    torch_model = load_model(tiny_family_dirs[family])
    onnx_model = load_onnx(exports[family, side], side=side, threads=1)
    # Batches of 2 over texts of different lengths: padding and the length sort are exercised.
    expected = torch_model.encode(TEXTS, side, batch_size=2)
    got = onnx_model.encode(TEXTS, side, batch_size=2)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_matches_torch_when_all_texts_are_shorter_than_m(family, exports, tiny_family_dirs):
    """max_length below ME-BERT's m=3 makes every row too short for the traced slice of m positions."""
    side, max_length = "document", 2 if family != "tct_colbert" else 6
    expected = load_model(tiny_family_dirs[family]).encode(TEXTS, side, batch_size=2, max_length=max_length)
    got = load_onnx(exports[family, side]).encode(TEXTS, side, batch_size=2, max_length=max_length)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_is_fused_into_one_node_per_layer(family, exports, tiny_family_dirs):
    layers = json.loads((tiny_family_dirs[family] / "config.json").read_text())["num_hidden_layers"]
    counts = fusion_counts(exports[family, "query"])
    assert counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) == layers
    assert "Softmax" not in counts  # no unfused attention left over


@pytest.mark.parametrize("family", FAMILIES)
def test_metadata_round_trip(family, exports, tiny_family_dirs):
    torch_model = load_model(tiny_family_dirs[family])
    for side in SIDES:
        model = load_onnx(exports[family, side])
        assert (model.family, model.side, model.precision) == (family, side, "fp32")
        assert model.config == torch_model.config
        assert model.dim == torch_model.dim
        assert model.vectors_per_text(side) == torch_model.vectors_per_text(side)
        assert model.provider == "CPUExecutionProvider"


def test_export_needs_no_flags_to_load_a_plain_hf_dir(tiny_bert, tmp_path):
    """A dir without dense_ext.json: the options given at export are the ones loading uses."""
    out = tmp_path / "q.onnx"
    export_onnx(tiny_bert, "query", out, family="repbert", pooling="cls", l2_norm=True, query_max_length=8,
                check=False)
    model = load_onnx(out)
    assert (model.config.pooling, model.config.l2_norm, model.config.query_max_length) == ("cls", True, 8)
    expected = load_model(tiny_bert, family="repbert", pooling="cls", l2_norm=True, query_max_length=8)
    assert np.abs(model.encode(TEXTS, "query") - expected.encode(TEXTS, "query")).max() <= 1e-4
    assert np.allclose(np.linalg.norm(model.encode(TEXTS, "query"), axis=1), 1.0, atol=1e-5)


def test_int8_and_fp16_exports_stay_close_to_torch(tiny_family_dirs, tmp_path):
    torch_vectors = load_model(tiny_family_dirs["repbert"]).encode(TEXTS, "query")
    for precision, quantized_op in (("int8", "DynamicQuantizeMatMul"), ("fp16", None)):
        path = tmp_path / f"q-{precision}.onnx"
        export_onnx(tiny_family_dirs["repbert"], "query", path, precision=precision, check=False)
        counts = fusion_counts(path)
        if quantized_op:  # the recipe: layers after the first in int8, the first layer in fp32
            assert counts.get(quantized_op, 0) + counts.get("MatMulInteger", 0) > 0
            assert counts.get("QAttention", 0) == 1 and counts.get("Attention", 0) == 1
        vectors = load_onnx(path).encode(TEXTS, "query")
        cosine = (vectors * torch_vectors).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(torch_vectors,
                                                                                                      axis=1)
        assert load_onnx(path).precision == precision
        assert cosine.min() > 0.99


def test_int8_recipe_keeps_exactly_the_first_layer_in_fp32(exports):
    import onnx

    from pyserini_dense_ext.onnx.quantize import first_layer_nodes

    graph = onnx.load(str(exports["repbert", "query"]))
    by_name = {n.name: n for n in graph.graph.node}
    names = first_layer_nodes(graph)
    # One fused attention (its QKV weights) plus the attention output and the two feed-forward MatMuls.
    assert sorted(by_name[n].op_type for n in names) == ["Attention", "MatMul", "MatMul", "MatMul"]
    assert all("/layer.0/" in n for n in names if by_name[n].op_type == "MatMul")


def test_io_binding_gives_the_same_vectors(exports):
    path = exports["mebert", "document"]
    plain = load_onnx(path).encode(TEXTS, "document", batch_size=2)
    bound = load_onnx(path, io_binding=True)
    assert bound.io_binding
    np.testing.assert_array_equal(bound.encode(TEXTS, "document", batch_size=2), plain)


def test_is_onnx_reads_the_files_own_metadata_not_its_name(exports, tiny_family_dirs, tmp_path):
    import onnx

    from pyserini_dense_ext.encoders import backend_for, load_encoder
    from pyserini_dense_ext.onnx.metadata import read_metadata_props

    renamed = tmp_path / "model.bin"  # an export under any name is still an export
    shutil.copy(exports["repbert", "query"], renamed)
    original = tokenizer_dir(exports["repbert", "query"])
    shutil.copytree(original, tmp_path / original.name)  # the metadata names its tokenizer dir
    assert is_onnx(exports["repbert", "query"]) and is_onnx(renamed)
    assert backend_for(renamed).name == "onnx" and load_encoder(renamed).sides == ("query",)
    # the metadata as the reader sees it equals onnx's own parse of the file
    model = onnx.load(str(renamed))
    assert read_metadata_props(renamed) == {p.key: p.value for p in model.metadata_props}
    foreign = tmp_path / "foreign.onnx"  # a real ONNX model, not written by our exporter
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    assert read_metadata_props(foreign) == {} and not is_onnx(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 40)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exports["repbert", "query"].read_bytes()[:5000])
    for path in (garbage, truncated, tmp_path / "missing.onnx", tiny_family_dirs["repbert"]):
        assert read_metadata_props(path) is None and not is_onnx(path)
    assert backend_for(tiny_family_dirs["repbert"]).name == "torch"
    with pytest.raises(InputError, match="no dense_ext metadata"):
        backend_for(foreign)


# ----- bad input ------------------------------------------------------------------------------

def test_corrupt_onnx_is_a_clear_error(exports, tmp_path):
    path = copy_export(exports["repbert", "query"], tmp_path)
    path.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(InputError, match="not a loadable ONNX model") as e:
        load_onnx(path)
    assert e.value.path == str(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_onnx(tmp_path / "nothing.onnx")


def test_document_export_used_for_queries_is_a_clear_error(exports):
    path = exports["repbert", "document"]
    with pytest.raises(InputError, match="exported for the document side") as e:
        load_onnx(path, side="query")
    assert e.value.field == "side"
    with pytest.raises(InputError, match="--side query"):
        OnnxQueryEncoder(str(path))
    with pytest.raises(InputError, match="cannot encode queries"):
        load_onnx(path).encode(["q"], "query")
    with pytest.raises(InputError, match="exported for the query side"):
        OnnxDocumentEncoder(str(exports["repbert", "query"]))


def test_missing_tokenizer_is_a_clear_error(exports, tmp_path):
    path = copy_export(exports["tct_colbert", "query"], tmp_path)
    shutil.rmtree(tokenizer_dir(path))
    with pytest.raises(InputError, match="tokenizer directory") as e:
        load_onnx(path)
    assert e.value.field == "tokenizer" and e.value.path == str(tokenizer_dir(path))


def test_onnx_without_our_metadata_is_a_clear_error(exports, tmp_path):
    import onnx

    path = copy_export(exports["repbert", "query"], tmp_path)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="no dense_ext metadata"):
        load_onnx(path)


def test_option_fixed_in_the_graph_cannot_be_overridden(exports):
    path = exports["repbert", "query"]
    with pytest.raises(InputError, match="pooling") as e:
        load_onnx(path, pooling="cls")
    assert e.value.field == "pooling"
    assert load_onnx(path, query_max_length=4).config.query_max_length == 4  # tokenisation may change


def test_model_dimension_differs_from_index(exports, tmp_path):
    dense = pytest.importorskip("pyserini_dense_ext.search.dense", reason="DenseSearcher not available")
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    faiss.write_index(faiss.IndexFlatIP(8), str(index_dir / "index"))  # the tiny models give 32 dims
    (index_dir / "docid").write_text("")
    with pytest.raises(InputError, match="dimension 8") as e:
        dense.DenseSearcher(index_dir, OnnxQueryEncoder(str(exports["repbert", "query"])))
    assert e.value.field == "dim"


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_where_missing_is_a_clear_error(exports):
    with pytest.raises(ValueError, match="no CUDA provider"):
        load_onnx(exports["repbert", "query"], device="cuda")
    with pytest.raises(ValueError, match="no CUDA provider"):
        OnnxQueryEncoder(str(exports["repbert", "query"]), device="cuda:0")


def test_unknown_device_is_a_clear_error(exports):
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        load_onnx(exports["repbert", "query"], device="tpu")


def test_export_refuses_bad_options(tiny_family_dirs, tmp_path):
    model_dir = tiny_family_dirs["repbert"]
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(model_dir, "query", tmp_path / "q.bin")
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_onnx(model_dir, "query", tmp_path / "q.onnx", opset=14)
    with pytest.raises(ValueError, match="side must be one of"):
        export_onnx(model_dir, "queries", tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_export_cli(tiny_family_dirs, tmp_path, capsys):
    out = tmp_path / "d.onnx"
    assert main(["--model", str(tiny_family_dirs["mebert"]), "--side", "document", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fused: 2 of 2 attention layers" in printed and "max abs diff" in printed
    assert load_onnx(out).vectors_per_text("document") == 3
    # An existing output, and a dir that is no model: one line each, exit status 2.
    assert main(["--model", str(tiny_family_dirs["mebert"]), "--side", "document", "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing"), "--side", "query", "--output", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing" in err and "Traceback" not in err


# ----- Pyserini ---------------------------------------------------------------------------

def write_flat_index(directory: Path, vectors: np.ndarray, docids: list[str]) -> Path:
    directory.mkdir()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(directory / "index"))
    (directory / "docid").write_text("".join(d + "\n" for d in docids))
    return directory


def test_pyserini_faiss_searcher_with_onnx_query_encoder(exports, tiny_family_dirs, tiny_corpus, tmp_path):
    from pyserini.search.faiss import FaissSearcher

    from pyserini_dense_ext.io.corpus import read_corpus

    docs = read_corpus(tiny_corpus)
    torch_model = load_model(tiny_family_dirs["repbert"])
    doc_vectors = torch_model.encode([d.contents for d in docs], "document")
    index_dir = write_flat_index(tmp_path / "index", doc_vectors, [d.docid for d in docs])
    searcher = FaissSearcher(str(index_dir), OnnxQueryEncoder(str(exports["repbert", "query"])))
    queries = ["cancer risk gene", "wing flow"]
    # Reference: brute-force inner product with the torch query vectors.
    ref_scores, ref_rows = faiss.knn(torch_model.encode(queries, "query"), doc_vectors, 5, metric=faiss.METRIC_INNER_PRODUCT)
    hits = searcher.search(queries[0], k=5)
    assert [h.docid for h in hits] == [docs[i].docid for i in ref_rows[0]]
    np.testing.assert_allclose([h.score for h in hits], ref_scores[0], atol=1e-4)
    batch = searcher.batch_search(queries, ["q0", "q1"], k=5)
    assert [h.docid for h in batch["q1"]] == [docs[i].docid for i in ref_rows[1]]


def test_register_makes_onnx_selectable_in_pyserini_commands(exports, tiny_family_dirs):
    from pyserini import encode as pyserini_encode
    from pyserini.encode.__main__ import init_encoder
    from pyserini.search.faiss.__main__ import init_query_encoder

    assert "dense_ext.onnx" in register()
    assert pyserini_encode.query_encoder_class_map["dense_ext.onnx"] is OnnxQueryEncoder
    query_encoder = init_query_encoder(encoder=str(exports["tct_colbert", "query"]), encoder_class="dense_ext.onnx",
                                       tokenizer_name=None, topics_name=None, encoded_queries=None, device="cpu",
                                       max_length=None, pooling="cls", l2_norm=False, prefix=None)
    assert isinstance(query_encoder, OnnxQueryEncoder)
    expected = load_model(tiny_family_dirs["tct_colbert"]).encode(["cancer risk"], "query")[0]
    assert np.abs(query_encoder.encode("cancer risk") - expected).max() <= 1e-4
    doc_encoder = init_encoder(encoder=str(exports["mebert", "document"]), encoder_class="dense_ext.onnx",
                               device="cpu", pooling="cls", l2_norm=False, prefix=None, multimodal=False,
                               explicit_truncate=False)
    assert isinstance(doc_encoder, OnnxDocumentEncoder)
    # Pyserini's document signature: titles join the texts as "title text".
    got = doc_encoder.encode(texts=["gene expression"], titles=["cancer"])
    expected = load_model(tiny_family_dirs["mebert"]).encode(["cancer gene expression"], "document")
    assert got.shape == (1, 3, 16)
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # another test imported __main__
def test_pyserinis_own_clis_run_onnx_exports(exports, tiny_family_dirs, tiny_corpus, tmp_path):
    """``python -m pyserini_dense_ext.launch {encode,search.faiss} --encoder x.onnx`` (Pyserini's CLIs)."""
    from pyserini_dense_ext.io.corpus import read_corpus
    from pyserini_dense_ext.io.runs import read_run
    from pyserini_dense_ext.launch import main as launch

    docs = read_corpus(tiny_corpus)
    torch_model = load_model(tiny_family_dirs["repbert"])
    launch(["encode", "input", "--corpus", str(tiny_corpus), "--fields", "title", "text",
            "output", "--embeddings", str(tmp_path / "index"), "--to-faiss",
            "encoder", "--encoder", str(exports["repbert", "document"]), "--fields", "title", "text",
            "--dimension", "32", "--batch-size", "4", "--device", "cpu"])
    index = faiss.read_index(str(tmp_path / "index" / "index"))
    # Pyserini strips fields and joins them as "title text" ("None text" for an empty title, its quirk).
    texts = [f"{d.title or None} {d.text}" for d in docs]
    assert np.abs(index.reconstruct_n(0, index.ntotal) - torch_model.encode(texts, "document")).max() <= 1e-4

    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tcancer risk gene\nq2\twing flow\n")
    launch(["search.faiss", "--index", str(tmp_path / "index"), "--topics", str(topics),
            "--encoder", str(exports["repbert", "query"]), "--output", str(tmp_path / "run.trec"), "--hits", "3"])
    run = read_run(tmp_path / "run.trec")
    _, rows = faiss.knn(torch_model.encode(["cancer risk gene", "wing flow"], "query"),
                        index.reconstruct_n(0, index.ntotal), 3, metric=faiss.METRIC_INNER_PRODUCT)
    docids = (tmp_path / "index" / "docid").read_text().split()
    assert [d for d, _ in run["q1"]] == [docids[i] for i in rows[0]]
    assert [d for d, _ in run["q2"]] == [docids[i] for i in rows[1]]
