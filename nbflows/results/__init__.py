"""The result store: where executed notebooks, exports and artifacts of runs live.

Files go to an fsspec URL (a local folder under the Jupyter data dir by default, an
S3-compatible bucket for teams); the database keeps only references (key, size, sha256) in the
`run_files` table. See `store.ResultStore` and `run_files`.
"""

from .store import ResultStore, StoredFile, default_result_store_url

__all__ = ["ResultStore", "StoredFile", "default_result_store_url"]
