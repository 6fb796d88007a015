"""Corpus jobs spread over Ray workers: ``encode ... encoder ... --ray [ADDRESS]``, ``expand ... --ray``.

Ray does the scheduling; we only cut the corpus into the chunks the single-process path uses
(:mod:`.chunks`). Each worker is a Ray actor that loads its model once, through a picklable
loader the command supplies (the same dir and options as the driver), and processes whole
chunks with the same function the single-process path calls, so a result is made by the same
code either way. Workers return results; the driver writes each chunk durably into the same
``.<name>.partial`` dir, so the output needs no shared file system, a killed run resumes with or
without Ray, and the output equals a single-process run. A dead worker is restarted by Ray and
its chunk retried.

Ray is optional (extra ``ray``): ``pip install 'pyserini-dense-ext[ray]'``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .._env import keep_signal_handlers
from ..io.corpus import Doc, DocSource
from ..progress import progress_bar
from .chunks import pending_chunks, process_chunks

LOCAL = "local"  # --ray with no address: start a Ray instance on this machine (or join $RAY_ADDRESS)

# Run once in each Ray worker with the device it should use; returns what processes one chunk of documents.
WorkerLoader = Callable[[str], Callable[[list[Doc]], Any]]


@dataclass(frozen=True)
class RayOptions:
    """How to reach Ray and how many workers to start."""

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
    """The Ray flags (and ``--device``) as :class:`RayOptions`, or None without ``--ray``."""
    if args.ray is None:
        return None
    if args.ray_workers is not None and args.ray_workers < 1:
        raise ValueError(f"--ray-workers must be positive, got {args.ray_workers}")
    if args.ray_cpus_per_worker < 1:
        raise ValueError(f"--ray-cpus-per-worker must be positive, got {args.ray_cpus_per_worker}")
    return RayOptions(device=args.device, address=args.ray, workers=args.ray_workers,
                      cpus_per_worker=args.ray_cpus_per_worker)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray, which is not installed: pip install 'pyserini-dense-ext[ray]' "
                         "(or pip install ray)") from None
    return ray


class ChunkWorker:
    """A Ray actor's body: one model per worker process (loaded by ``load``), many chunks."""

    def __init__(self, load: WorkerLoader, device: str, cpus: int):
        import torch

        import pyserini_dense_ext  # noqa: F401  (offline and Java settings in the worker process too)

        torch.set_num_threads(cpus)
        self.process = load("cuda" if device.startswith("cuda") else device)  # Ray hands each worker its GPU

    def run(self, chunk: int, docs: list[Doc]) -> tuple[int, Any]:
        return chunk, self.process(docs)


def run_chunks(docs: DocSource, names: Sequence[Path], chunk_size: int, save: Callable[[Path, Any], None],
               desc: str, progress: bool = True, process: Callable[[list[Doc]], Any] | None = None,
               ray: RayOptions | None = None, ray_loader: WorkerLoader | None = None) -> None:
    """Every unfinished chunk through ``process`` here, or, with ``ray``, through what ``ray_loader`` loads in
    each Ray worker; each result saved to its chunk file by ``save``.

    The one dispatcher of chunk jobs (``encode``, ``expand``). Either way the documents are read
    once, chunk by chunk (:func:`~.chunks.pending_chunks`, which also writes the partial dir's
    docid file), so memory does not grow with the corpus.
    """
    if ray is not None:
        if ray_loader is None:
            raise ValueError("a run on Ray needs ray_loader: what each worker loads")
        process_chunks_ray(docs, names, chunk_size, ray, ray_loader, save, desc, progress)
    elif process is None:
        raise ValueError("nothing to process the chunks with: give a model, or Ray options and a loader")
    else:
        process_chunks(docs, names, chunk_size, process, save, desc, progress)


def process_chunks_ray(docs: DocSource, names: Sequence[Path], chunk_size: int, options: RayOptions,
                       load: WorkerLoader, save: Callable[[Path, Any], None], desc: str,
                       progress: bool = True) -> None:
    """:func:`~.chunks.process_chunks` with the unfinished chunks processed by Ray actors.

    Chunks are read as actors become free, so at most one chunk of documents per actor is in flight.
    """
    todo = [c for c, path in enumerate(names) if not path.is_file()]
    pending = pending_chunks(docs, names, chunk_size)
    if not todo:
        for _ in pending:  # nothing to process: the pass only writes the docid file
            pass
        return
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        with keep_signal_handlers():  # Pyserini's JVM in this process needs its own SIGSEGV handler
            ray.init(address=None if options.address == LOCAL else options.address, include_dashboard=False,
                     logging_level="WARNING")
    try:
        _run_actors(ray, pending, len(docs), names, todo, chunk_size, options, load, save, desc, progress)
    finally:
        if started_here:
            with keep_signal_handlers():
                ray.shutdown()


def _run_actors(ray: Any, pending: Iterator[tuple[int, list[Doc]]], n_docs: int, names: Sequence[Path],
                todo: list[int], chunk_size: int, options: RayOptions, load: WorkerLoader,
                save: Callable[[Path, Any], None], desc: str, progress: bool) -> None:
    from ray.util import ActorPool

    gpus = 1 if options.device.startswith("cuda") else 0
    workers = options.workers or _default_workers(ray, options, gpus)
    actor_cls = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=2,
                           max_task_retries=2)(ChunkWorker)
    actors = [actor_cls.remote(load, options.device, options.cpus_per_worker) for _ in range(min(workers, len(todo)))]
    pool = ActorPool(actors)
    done_docs = n_docs - sum(min(chunk_size, n_docs - c * chunk_size) for c in todo)
    try:
        with progress_bar(n_docs, f"{desc} on {len(actors)} Ray workers", "doc", progress,
                          initial=done_docs) as bar:
            def collect() -> None:
                chunk, result = pool.get_next_unordered()
                save(names[chunk], result)
                bar.update(min(chunk_size, n_docs - chunk * chunk_size))

            for chunk, batch in pending:
                while not pool.has_free():
                    collect()
                pool.submit(lambda actor, job: actor.run.remote(*job), (chunk, batch))
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
