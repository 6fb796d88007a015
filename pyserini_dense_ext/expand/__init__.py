"""docTTTTTquery document expansion: predicted queries for every document from a local seq2seq model.

docTTTTTquery (Nogueira and Lin, 2019) samples queries a document might answer with a T5 trained
on MS MARCO (query, passage) pairs and appends them to the document before BM25 indexing. Its
settings (castorini/docTTTTTquery README: ``sampling_keep_top_k = 10``, temperature 1.0,
``sequence_length = {'inputs': 512, 'targets': 64}``; 40 samples per passage appended in Anserini's
regressions, 80 released) are the defaults of :class:`Sampling`. Any ``AutoModelForSeq2SeqLM`` dir
works (``castorini/doc2query-t5-base-msmarco``, ``doc2query/msmarco-t5-base-v1``, ...).

Reproducible sampling, whatever the batching: Hugging Face's sampler draws from one global random
stream, so a document's queries would depend on which documents shared its batch, its shard, and
whether the run was resumed. Here every document gets its own random stream, seeded from (seed,
docid), and top-k sampling is done as the Gumbel-max trick under greedy decoding: the top-k
filtered, temperature-scaled scores plus Gumbel noise from that stream, arg-maxed. That draws each
token from exactly the distribution ``do_sample=True, top_k=k`` draws from, and a document's
predictions depend only on the model, the settings, the seed and the document (tested across
batch sizes, shard splits and a resume after a kill).

The corpus is processed in durable chunks (resumable after a kill) by this process or by Ray
workers, with the same machinery as ``encode`` (:mod:`pyserini_dense_ext.index.chunks`,
:mod:`pyserini_dense_ext.index.distributed`). The output is JSONL, one line per document:
``{"id": ..., "predicted_queries": [...]}`` (:mod:`pyserini_dense_ext.io.expansions` reads it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..index.chunks import chunk_paths, read_docids, start_job, write_durable
from ..index.distributed import RayOptions, run_chunks
from ..io.atomic import atomic_write
from ..io.corpus import Doc, DocSource, as_source
from ..io.lock import output_lock
from ..progress import progress_bar

CHUNK_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Sampling:
    """docTTTTTquery's decoding settings (its README and T5 gin parameters), plus the seed."""

    num_samples: int = 40  # queries per document (the README appends the first 40 of the 80 released)
    top_k: int = 10  # Unitransformer.sample_autoregressive.sampling_keep_top_k
    temperature: float = 1.0  # Bitransformer.decode.temperature
    max_new_tokens: int = 64  # sequence_length targets / max_decode_length
    max_input_length: int = 512  # sequence_length inputs: longer documents are truncated
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_samples", "top_k", "max_new_tokens", "max_input_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def document_seed(seed: int, docid: str) -> int:
    """A 63-bit seed for one document's random stream, from the run's seed and the docid only."""
    digest = hashlib.sha256(f"{seed}\x00{docid}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)


class DocumentSampler:
    """A logits processor: top-k sampling at ``temperature`` as arg-max of scores plus per-document Gumbel noise.

    Rows are ``num_samples`` per document in batch order (each document's encoder states repeated,
    as Hugging Face's ``num_return_sequences`` lays them out). Gumbel-max: the arg-max of the
    candidates' temperature-scaled scores plus independent Gumbel(0, 1) noise is a draw from their
    softmax; the candidates are the top k (with Hugging Face's ``TopKLogitsWarper``, a token tied
    with the k-th score is one too). At each step document i draws one uniform per candidate of
    each of its rows from its own generator, whatever else is in the batch (finished rows draw too),
    so a row's tokens depend on its document only. The chosen token keeps score 0 and every other
    -inf, so greedy decoding takes it.
    """

    def __init__(self, seeds: Sequence[int], sampling: Sampling, device: Any):
        import torch

        self.sampling = sampling
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def _gumbel(self, generator: Any, shape: tuple[int, int], device: Any) -> Any:
        import torch

        uniform = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
        tiny = torch.finfo(torch.float32).tiny
        return -torch.log((-torch.log(uniform.clamp(min=tiny))).clamp(min=tiny))  # -log(-log U): Gumbel(0, 1)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        n, k = self.sampling.num_samples, self.sampling.top_k
        scores = scores.float() / self.sampling.temperature
        vocab = scores.shape[-1]
        chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        # the top k + 1: the (k+1)-th equal to the k-th means a tie at the cut, where the candidates are more than k
        top = torch.topk(scores, min(k + 1, vocab), dim=-1) if k < vocab else None
        for i, generator in enumerate(self.generators):
            rows = slice(i * n, (i + 1) * n)
            if top is not None and not (top.values[rows, k] == top.values[rows, k - 1]).any():
                noisy = top.values[rows, :k] + self._gumbel(generator, (n, k), scores.device)
                chosen[rows] = top.indices[rows, :k].gather(1, noisy.argmax(-1, keepdim=True)).squeeze(1)
                continue
            candidates = scores[rows]  # all tokens, or a tie at the cut: noise over the whole vocabulary
            if top is not None:
                candidates = candidates.masked_fill(candidates < top.values[rows, k - 1:k], float("-inf"))
            chosen[rows] = (candidates + self._gumbel(generator, (n, vocab), scores.device)).argmax(-1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen.unsqueeze(1), 0.0)
        return out


class QueryGenerator:
    """A local seq2seq checkpoint that turns documents into predicted queries (:class:`Sampling` settings)."""

    def __init__(self, model_dir: str | Path, sampling: Sampling = Sampling(), device: str = "cpu",
                 batch_size: int = 8):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

        from ..encoders.loading import check_model_dir, resolve_device
        from ..io.errors import InputError

        if batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {batch_size}")
        path = check_model_dir(model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise InputError(path, f"has no usable tokenizer: {e}", field="tokenizer") from None
        try:
            self.model = AutoModelForSeq2SeqLM.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as e:
            raise InputError(path, f"is not a sequence-to-sequence model (AutoModelForSeq2SeqLM): {e}") from None
        self.model = self.model.to(resolve_device(device)).eval()
        own = self.model.generation_config
        if own.decoder_start_token_id is None or own.eos_token_id is None:
            raise InputError(path, "its generation config names no decoder start or end-of-sequence token",
                             field="generation_config")
        # Greedy over Gumbel-perturbed scores is the sampler (DocumentSampler); nothing else from the dir's config.
        self.generation = GenerationConfig(
            do_sample=False, num_beams=1,
            max_new_tokens=sampling.max_new_tokens, decoder_start_token_id=own.decoder_start_token_id,
            eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id if own.pad_token_id is not None
            else self.tokenizer.pad_token_id)
        self.sampling, self.batch_size = sampling, batch_size

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def predict(self, docs: Sequence[Doc], progress: bool = False) -> list[dict[str, Any]]:
        """``[{"id": docid, "predicted_queries": [...]}, ...]`` in input order."""
        import torch
        from transformers import LogitsProcessorList
        from transformers.modeling_outputs import BaseModelOutput

        texts = [d.contents for d in docs]
        ids = self.tokenizer(texts, max_length=self.sampling.max_input_length, truncation=True)["input_ids"]
        order = sorted(range(len(docs)), key=lambda i: -len(ids[i]))  # similar lengths together: less padding
        out: list[dict[str, Any]] = [{}] * len(docs)
        pad = self.tokenizer.pad_token_id
        with progress_bar(len(docs), "generating queries", "doc", progress, leave=False) as bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                width = max(len(ids[i]) for i in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    input_ids[r, :len(ids[i])] = torch.tensor(ids[i])
                    mask[r, :len(ids[i])] = 1
                sampler = DocumentSampler([document_seed(self.sampling.seed, docs[i].docid) for i in rows],
                                          self.sampling, self.device)
                n = self.sampling.num_samples
                with torch.inference_mode():
                    # the encoder runs once per document; its states are repeated for the n samples
                    encoded = self.model.get_encoder()(input_ids=input_ids.to(self.device),
                                                       attention_mask=mask.to(self.device))
                    states = BaseModelOutput(last_hidden_state=encoded.last_hidden_state.repeat_interleave(n, 0))
                    generated = self.model.generate(encoder_outputs=states,
                                                    attention_mask=mask.to(self.device).repeat_interleave(n, 0),
                                                    generation_config=self.generation,
                                                    logits_processor=LogitsProcessorList([sampler]))
                queries = [q.strip() for q in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
                for r, i in enumerate(rows):
                    out[i] = {"id": docs[i].docid, "predicted_queries": queries[r * n:(r + 1) * n]}
                bar.update(len(rows))
        return out


@dataclass(frozen=True)
class GeneratorLoader:
    """What each Ray worker loads: the generator at ``model_dir`` with the driver's settings (picklable)."""

    model_dir: str
    sampling: Sampling
    batch_size: int = 8

    def __call__(self, device: str) -> Callable[[list[Doc]], list[dict[str, Any]]]:
        return QueryGenerator(self.model_dir, self.sampling, device, self.batch_size).predict


def save_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    write_durable(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def iter_predictions(paths: Sequence[Path], docids: Iterator[str], chunk_size: int) -> Iterator[str]:
    """Every chunk's JSONL lines in order, one chunk in memory at a time, each chunk checked against the docids
    it should hold (``docids``: all of them, in order)."""
    for path in paths:
        rows = path.read_bytes().decode("utf-8").splitlines()
        want = list(itertools.islice(docids, chunk_size))
        try:
            got = [json.loads(r)["id"] for r in rows]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a chunk of predictions ({e}); delete the partial dir to start over") \
                from None
        if got != want:
            raise ValueError(f"{path} holds predictions for other documents than its chunk; delete the partial dir "
                             "to start over")
        yield from rows


def expand_corpus(docs: Sequence[Doc] | DocSource, generator: QueryGenerator | None, output: str | Path,
                  job_id: dict[str, Any], chunk_size: int = 256, overwrite: bool = False, progress: bool = True,
                  ray: RayOptions | None = None, ray_loader: GeneratorLoader | None = None) -> Path:
    """Predicted queries for ``docs`` into the JSONL file ``output`` (written atomically at the end).

    ``docs`` is a list or a :class:`~pyserini_dense_ext.io.corpus.DocSource` (a
    :class:`~pyserini_dense_ext.io.corpus.CorpusStream`, read chunk by chunk, so memory does not
    grow with the corpus). Chunks of predictions are kept in ``.<name>.partial`` beside ``output``
    until then, so a killed run re-run with the same arguments resumes; ``job_id`` (model and
    :class:`Sampling`) must match. With ``ray``, Ray workers each load a generator with
    ``ray_loader`` (``generator`` is unused).
    """
    source = as_source(docs)
    out = Path(output)
    with output_lock(out):
        work = start_job(out, source, overwrite, "expand")
        names = chunk_paths(source, work, job_id, chunk_size, CHUNK_SUFFIX)
        process = None if generator is None else (lambda chunk: generator.predict(chunk, progress))
        run_chunks(source, names, chunk_size, save_predictions, "expanding corpus", progress, process, ray,
                   ray_loader)
        with atomic_write(out) as f:
            f.writelines(line + "\n" for line in iter_predictions(names, read_docids(work), chunk_size))
        shutil.rmtree(work, ignore_errors=True)
    return out
