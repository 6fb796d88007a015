"""Dense index dirs in Pyserini's layout, built and read safely."""
from .faiss_dir import (DOCID_FILE, INDEX_FILE, INDEX_TYPES, META_FILE, IndexMeta, build_faiss_index, read_index_dir,
                        reuse_problems, write_index_dir)

__all__ = ["DOCID_FILE", "INDEX_FILE", "INDEX_TYPES", "META_FILE", "IndexMeta", "build_faiss_index",
           "read_index_dir", "reuse_problems", "write_index_dir"]
