"""Corpus encoding spread over Ray workers: ``python -m pyserini_dense_ext.encode ... encoder ... --ray [ADDRESS]``.

Ray does the scheduling; we only cut the corpus into the chunks the single-process path uses.
Each worker is a Ray actor that loads the model once (the same dir and options as the driver)
and encodes whole chunks with the model's own ``encode``, so a vector is made by the same code
either way. Workers return vectors; the driver writes each chunk durably into the same
``.<name>.partial`` dir, so the output dir needs no shared file system, a killed run resumes with
or without Ray, and the index equals a single-process build. A dead worker is restarted by Ray
and its chunk retried.

Ray is optional (extra ``ray``): ``pip install 'pyserini-dense-ext[ray]'``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._env import keep_signal_handlers
from ..io.corpus import DocSource
from ..progress import progress_bar
from .chunks import chunk_paths, pending_chunks, save_chunk

LOCAL = "local"  # --ray with no address: start a Ray instance on this machine (or join $RAY_ADDRESS)


@dataclass(frozen=True)
class RayOptions:
    """How to reach Ray and what each worker loads."""

    model_dir: str
    family: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # encoder options, as on the command line
    device: str = "cpu"  # per worker; "cuda" gives each worker one GPU of its own
    address: str = LOCAL  # "local", "auto" (the cluster this machine belongs to) or "ray://head:10001"
    workers: int | None = None  # default: one per GPU (cuda) or one per cpus_per_worker CPUs
    cpus_per_worker: int = 1


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                        help="spread chunks over Ray workers; no ADDRESS starts Ray on this machine, 'auto' joins "
                             "the cluster this machine is part of, ray://HEAD:10001 a remote one (needs the "
                             "'ray' extra)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="Ray workers, each loading the model once (default: one per GPU with --device cuda, "
                             "else one per --ray-cpus-per-worker CPUs of the cluster)")
    parser.add_argument("--ray-cpus-per-worker", type=int, default=1, metavar="N",
                        help="CPUs (and torch threads) per Ray worker (default 1)")


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The encoder group's Ray flags as :class:`RayOptions`, or None without ``--ray``."""
    from ..cli import encoder_overrides

    if args.ray is None:
        return None
    if args.ray_workers is not None and args.ray_workers < 1:
        raise ValueError(f"--ray-workers must be positive, got {args.ray_workers}")
    if args.ray_cpus_per_worker < 1:
        raise ValueError(f"--ray-cpus-per-worker must be positive, got {args.ray_cpus_per_worker}")
    return RayOptions(model_dir=str(args.encoder), family=args.family, overrides=encoder_overrides(args),
                      device=args.device, address=args.ray, workers=args.ray_workers,
                      cpus_per_worker=args.ray_cpus_per_worker)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray, which is not installed: pip install 'pyserini-dense-ext[ray]' "
                         "(or pip install ray)") from None
    return ray


class ChunkEncoder:
    """A Ray actor's body: one model per worker process, many chunks."""

    def __init__(self, options: RayOptions, batch_size: int):
        import torch

        import pyserini_dense_ext  # noqa: F401  (offline and Java settings in the worker process too)
        from ..encoders import load_document_encoder

        torch.set_num_threads(options.cpus_per_worker)
        device = "cuda" if options.device.startswith("cuda") else options.device  # Ray hands each worker its GPU
        encoder = load_document_encoder(options.model_dir, family=options.family, device=device,
                                        batch_size=batch_size, **options.overrides)
        self.model, self.batch_size = encoder.model, batch_size

    def encode(self, chunk: int, texts: list[str]) -> tuple[int, np.ndarray]:
        return chunk, self.model.encode(texts, "document", batch_size=self.batch_size)


def encode_chunks_ray(docs: DocSource, options: RayOptions, work: Path, encoder_id: dict[str, Any],
                      chunk_size: int = 1024, batch_size: int = 32, progress: bool = True) -> list[Path]:
    """:func:`~.encode.encode_chunks` with chunks encoded by Ray actors; returns the chunk files in order.

    Chunks are read as actors become free, so at most one chunk of texts per actor is in flight.
    """
    names = chunk_paths(docs, work, encoder_id, chunk_size)
    todo = [c for c, path in enumerate(names) if not path.is_file()]
    pending = pending_chunks(docs, names, chunk_size, work)
    if not todo:
        for _ in pending:  # nothing to encode: the pass only writes the docid file
            pass
        return names
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        with keep_signal_handlers():  # Pyserini's JVM in this process needs its own SIGSEGV handler
            ray.init(address=None if options.address == LOCAL else options.address, include_dashboard=False,
                     logging_level="WARNING")
    try:
        _run_actors(ray, pending, len(docs), options, names, todo, chunk_size, batch_size, progress)
    finally:
        if started_here:
            with keep_signal_handlers():
                ray.shutdown()
    return names


def _run_actors(ray: Any, pending: Iterator[tuple[int, list[str]]], n_docs: int, options: RayOptions,
                names: list[Path], todo: list[int], chunk_size: int, batch_size: int, progress: bool) -> None:
    from ray.util import ActorPool

    gpus = 1 if options.device.startswith("cuda") else 0
    workers = options.workers or _default_workers(ray, options, gpus)
    actor_cls = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=2,
                           max_task_retries=2)(ChunkEncoder)
    actors = [actor_cls.remote(options, batch_size) for _ in range(min(workers, len(todo)))]
    pool = ActorPool(actors)
    done_docs = n_docs - sum(min(chunk_size, n_docs - c * chunk_size) for c in todo)
    try:
        with progress_bar(n_docs, f"encoding corpus on {len(actors)} Ray workers", "doc", progress,
                          initial=done_docs) as bar:
            def collect() -> None:
                chunk, vectors = pool.get_next_unordered()
                save_chunk(names[chunk], vectors)
                bar.update(len(vectors))

            for chunk, texts in pending:
                while not pool.has_free():
                    collect()
                pool.submit(lambda actor, job: actor.encode.remote(*job), (chunk, texts))
            while pool.has_next():
                collect()
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, ValueError):  # our InputError and friends: say it as the single-process run would
            raise cause from None
        raise ValueError(f"a Ray worker failed: {_last_line(e)}") from None
    except ray.exceptions.RayActorError as e:
        raise ValueError(f"a Ray worker could not start or died: {_last_line(e)}") from None
    finally:
        for actor in actors:
            ray.kill(actor)


def _default_workers(ray: Any, options: RayOptions, gpus: int) -> int:
    resources = ray.cluster_resources()
    if gpus:
        n = int(resources.get("GPU", 0))
        if n == 0:
            raise ValueError(f"--device {options.device} with --ray, but the Ray cluster has no GPUs")
        return n
    return max(1, int(resources.get("CPU", 1)) // options.cpus_per_worker)


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
