"""The old name of ``python -m pyserini_dense_ext.fusion`` (fusing run files); kept so existing scripts run."""
import pyserini_dense_ext  # noqa: F401  (Java/offline set-up before Pyserini loads)

from .cli import run_cli
from .fusion.__main__ import main

if __name__ == "__main__":
    run_cli(main)
