"""Encoder families: input format, pooling, configs and parity with Pyserini's TCT-ColBERT classes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyserini_dense_ext.encoders import CONFIG_NAME, EncoderConfig, load_model, resolve_config
from pyserini_dense_ext.io.errors import InputError

TEXTS = ["protein expression in human cells", "a", "the effect of treatment on cells in mice with cancer risk",
         "hello world"]


def reference_vectors(model, texts, side):
    """Brute force: one unpadded forward pass per text, pooled by hand."""
    out = []
    feats = model.features(texts, side)
    for ids, types in zip(feats["input_ids"], feats["token_type_ids"]):
        ids_t = torch.tensor([ids])
        with torch.no_grad():
            hidden = model.backbone(input_ids=ids_t, token_type_ids=torch.tensor([types]),
                                    attention_mask=torch.ones_like(ids_t)).last_hidden_state[0]
        out.append(hidden)
    return out


def test_repbert_format_segments_and_mean_pooling(tiny_bert):
    model = load_model(tiny_bert, family="repbert")
    tok = model.tokenizer
    q = model.features(TEXTS, "query")
    d = model.features(TEXTS, "document")
    for ids in q["input_ids"] + d["input_ids"]:
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert all(set(t) == {0} for t in q["token_type_ids"])  # queries: segment 0
    assert all(set(t) == {1} for t in d["token_type_ids"])  # documents: segment 1 (the paper's default)
    long = " ".join(["protein"] * 400)
    assert len(model.features([long], "query")["input_ids"][0]) == 20
    assert len(model.features([long], "document")["input_ids"][0]) == 256
    # batched, padded, length-sorted encoding equals one unpadded pass per text, mean-pooled by hand
    for side in ("query", "document"):
        expected = np.stack([h.mean(0).numpy() for h in reference_vectors(model, TEXTS, side)])
        np.testing.assert_allclose(model.encode(TEXTS, side, batch_size=3), expected, atol=1e-5)


def test_repbert_segment_id_is_configurable_and_matters(tiny_bert):
    seg1 = load_model(tiny_bert, family="repbert").encode(TEXTS, "document")
    seg0 = load_model(tiny_bert, family="repbert", doc_segment_id=0).encode(TEXTS, "document")
    query = load_model(tiny_bert, family="repbert").encode(TEXTS, "query")
    np.testing.assert_allclose(seg0, query, atol=1e-5)  # same text, same segment -> same vector
    assert np.abs(seg1 - seg0).max() > 1e-3


def test_l2_norm_and_cls_pooling(tiny_bert):
    model = load_model(tiny_bert, family="repbert", pooling="cls", l2_norm=True)
    vectors = model.encode(TEXTS, "query")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cls = np.stack([h[0].numpy() for h in reference_vectors(model, TEXTS, "query")])
    np.testing.assert_allclose(vectors, cls / np.linalg.norm(cls, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("titles", [None, ["t one", "", "wing", "x"]])
def test_tct_colbert_matches_pyserini(tiny_bert, titles):
    from pyserini.encode import TctColBertDocumentEncoder as PyDoc
    from pyserini.encode import TctColBertQueryEncoder as PyQuery

    from pyserini_dense_ext.encoders import TctColBertDocumentEncoder, TctColBertQueryEncoder

    ours_q = TctColBertQueryEncoder(str(tiny_bert))
    theirs_q = PyQuery(encoder_dir=str(tiny_bert), device="cpu")
    batch = ours_q.encode_batch(TEXTS)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(batch[i], theirs_q.encode(text), atol=1e-5)
        np.testing.assert_allclose(ours_q.encode(text), theirs_q.encode(text), atol=1e-5)
    ours_d = TctColBertDocumentEncoder(str(tiny_bert), batch_size=3)
    theirs_d = PyDoc(str(tiny_bert), device="cpu")
    with torch.no_grad():
        expected = theirs_d.encode(TEXTS, titles=titles)
    np.testing.assert_allclose(ours_d.encode(TEXTS, titles=titles), expected, atol=1e-5)


def test_tct_colbert_query_is_mask_padded_to_36(tiny_bert):
    model = load_model(tiny_bert, family="tct_colbert")
    ids = model.features(["protein", " ".join(["cells"] * 100)], "query")["input_ids"]
    mask_id = model.tokenizer.mask_token_id
    assert [len(x) for x in ids] == [36, 36]
    assert ids[0][0] == model.tokenizer.cls_token_id and ids[0][-1] == mask_id
    assert mask_id not in ids[1]  # a long query is truncated before any [MASK]


def test_mebert_first_m_vectors_projection_and_short_docs(tiny_family_dirs):
    model = load_model(tiny_family_dirs["mebert"])
    assert model.config.num_vectors == 3 and model.dim == 16
    docs = model.encode(TEXTS, "document")
    queries = model.encode(TEXTS, "query")
    assert docs.shape == (len(TEXTS), 3, 16) and queries.shape == (len(TEXTS), 16)
    hidden = reference_vectors(model, TEXTS, "document")
    with torch.no_grad():
        for i, h in enumerate(hidden):
            first = h[:3] if len(h) >= 3 else torch.cat([h, h[:1].expand(3 - len(h), -1)])
            np.testing.assert_allclose(docs[i], model.projection(first).numpy(), atol=1e-5)
            np.testing.assert_allclose(queries[i], model.projection(reference_vectors(model, [TEXTS[i]], "query")[0][0]).numpy(),
                                       atol=1e-5)
    # "a" is [CLS] a [SEP]: 3 tokens, so all three slots are real; a 1-token text would repeat [CLS].
    short = model.encode(["", "a"], "document")
    np.testing.assert_allclose(short[0][2], short[0][0], atol=1e-6)  # "" -> [CLS] [SEP]: slot 3 repeats [CLS]


def test_mebert_m1_is_debert_and_save_load_round_trip(tiny_bert, tiny_family_dirs, tmp_path):
    m1 = load_model(tiny_bert, family="mebert", num_vectors=1)
    assert m1.encode(TEXTS, "document").shape == (len(TEXTS), 1, 32)
    original = load_model(tiny_family_dirs["mebert"])
    original.save(tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    np.testing.assert_allclose(again.encode(TEXTS, "document"), original.encode(TEXTS, "document"), atol=1e-6)


def test_mebert_missing_projection_is_an_error(tiny_family_dirs, tmp_path):
    import shutil

    broken = shutil.copytree(tiny_family_dirs["mebert"], tmp_path / "broken")
    (broken / "projection.safetensors").unlink()
    with pytest.raises(InputError, match="projection"):
        load_model(broken)


def test_config_file_picks_family_and_flags_override(tiny_family_dirs, tiny_bert):
    saved = json.loads((tiny_family_dirs["tct_colbert"] / CONFIG_NAME).read_text())
    assert saved["family"] == "tct_colbert" and saved["query_max_length"] == 36
    assert resolve_config(tiny_family_dirs["tct_colbert"]).family == "tct_colbert"
    assert resolve_config(tiny_family_dirs["tct_colbert"], l2_norm=True).l2_norm is True
    assert resolve_config(tiny_family_dirs["tct_colbert"], family="repbert").family == "repbert"
    with pytest.raises(InputError, match="family"):
        resolve_config(tiny_bert)  # plain HF dir: the family must be named


@pytest.mark.parametrize("content, field", [("{not json", None), ('{"pooling": "mean"}', "family"),
                                            ('{"family": "repbert", "colour": 1}', "colour"),
                                            ('{"family": "repbert", "pooling": "max"}', "pooling"),
                                            ('{"family": "nope"}', "family")])
def test_bad_config_file_names_file_and_field(tiny_bert, tmp_path, content, field):
    import shutil

    d = shutil.copytree(tiny_bert, tmp_path / "m")
    (d / CONFIG_NAME).write_text(content)
    with pytest.raises(InputError) as err:
        resolve_config(d)
    assert CONFIG_NAME in str(err.value)
    if field:
        assert f"'{field}'" in str(err.value)


def test_model_dir_that_is_not_a_model(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing", family="repbert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_model(tmp_path / "empty", family="repbert")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="model.safetensors"):
        load_model(tmp_path / "empty", family="repbert")


def test_cuda_request_without_gpu_is_an_error(tiny_bert):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="CUDA"):
        load_model(tiny_bert, family="repbert", device="cuda")


def test_family_defaults_follow_the_papers():
    rep = EncoderConfig.for_family("repbert")
    assert (rep.query_max_length, rep.doc_max_length, rep.query_segment_id, rep.doc_segment_id) == (20, 256, 0, 1)
    assert EncoderConfig.for_family("tct_colbert").query_max_length == 36
    assert EncoderConfig.for_family("mebert").num_vectors == 3


def test_one_registry_feeds_config_validation_pyserini_classes_and_every_cli():
    """Each family module's FAMILY record is the only place a family is declared."""
    import argparse
    import dataclasses

    from pyserini_dense_ext import encoders
    from pyserini_dense_ext.cli import add_encoder_options, encoder_overrides
    from pyserini_dense_ext.encoders import ENCODER_CLASSES, FAMILIES
    from pyserini_dense_ext.onnx.export import build_parser as export_parser

    assert sorted(FAMILIES) == ["colbert", "mebert", "repbert", "tct_colbert"]
    for name, family in FAMILIES.items():
        assert family.model.family == name
        assert EncoderConfig.for_family(name).to_dict() == {**EncoderConfig(family=name).to_dict(), **family.defaults}
        if family.late_interaction:  # ColBERT: token matrices, no vector for Pyserini's classes
            assert f"dense_ext.{name}" not in ENCODER_CLASSES and not hasattr(encoders, f"{family.class_prefix}QueryEncoder")
            continue
        query_cls, doc_cls = ENCODER_CLASSES[f"dense_ext.{name}"]
        assert (query_cls.family, doc_cls.family) == (name, name)
        assert getattr(encoders, f"{family.class_prefix}QueryEncoder") is query_cls  # the README's public names
        assert getattr(encoders, f"{family.class_prefix}DocumentEncoder") is doc_cls
    with pytest.raises(InputError, match="must exceed the 4 prefix tokens"):  # tct_colbert's own check
        EncoderConfig.for_family("tct_colbert", query_max_length=4)
    with pytest.raises(InputError, match="unknown family 'nope'"):
        EncoderConfig(family="nope").validate()

    # Every command's flags come from the dataclass: one flag per field with option metadata, the same in
    # the search-style commands and in ONNX export, and parsing them gives the fields back.
    search = argparse.ArgumentParser()
    add_encoder_options(search)
    flagged = [f.name for f in dataclasses.fields(EncoderConfig) if "cli" in f.metadata]
    assert flagged == [f.name for f in dataclasses.fields(EncoderConfig) if f.name != "extra"]
    for parser in (search, export_parser()):
        dests = {a.dest: a for a in parser._actions}
        assert set(flagged) <= set(dests)
        assert sorted(dests["family"].choices) == sorted(FAMILIES)
    args = search.parse_args(["--encoder", "m", "--family", "mebert", "--pooling", "cls", "--no-l2-norm",
                              "--max-length", "64", "--query-segment-id", "1", "--num-vectors", "2",
                              "--projection-dim", "8"])
    overrides = encoder_overrides(args)
    assert overrides == dict(pooling="cls", l2_norm=False, doc_max_length=64, query_segment_id=1, num_vectors=2,
                             projection_dim=8)
    assert EncoderConfig.for_family(args.family, **overrides).doc_max_length == 64
    assert encoder_overrides(search.parse_args(["--encoder", "m"])) == {}  # unset flags leave the files in charge


def test_load_encoder_picks_the_backend_from_the_files(tiny_family_dirs, tmp_path):
    from pyserini_dense_ext.encoders import DenseModel, Encoder, backend_for, describe, load_encoder

    model = load_encoder(tiny_family_dirs["mebert"])
    assert isinstance(model, DenseModel) and isinstance(model, Encoder)
    assert model.sides == ("query", "document") and model.vectors_per_text("document") == 3
    assert describe(tiny_family_dirs["mebert"]).config == model.config
    with pytest.raises(InputError, match="does not exist"):
        backend_for(tmp_path / "nothing")
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="neither a model dir nor an ONNX export"):
        load_encoder(tmp_path / "weights.bin")
