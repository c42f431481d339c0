"""Whole-file checks on Python workers, before Spark reads the files for good.

Spark aborts a whole job on one truncated ``.jsonl.gz`` (``EOFException``) or on Parquet files whose
column types disagree (``PARQUET_COLUMN_DATA_TYPE_MISMATCH``). :func:`check_files` runs as the body
of a ``mapInPandas`` over the input's file list, one row per file: the error that makes the file
unreadable, and for Parquet the Arrow types of all its columns, from the footer alone.
Only local files (``file:`` URIs or plain paths) are checked; others pass unchecked.
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

import pandas as pd

#: Compressed JSON lines files whose every byte is decompressed once to check them.
OPENERS = {".gz": gzip.open, ".bz2": bz2.open}

# Arrow types Spark reads as one type.
_SAME = {"large_string": "string", "large_binary": "binary"}


def _local_path(uri: str) -> str | None:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("", "file") else None


def check_file(uri: str, kind: str) -> tuple[str | None, str | None]:
    """(error, types) of one file: ``error`` None when it reads; ``types`` JSON of every column's
    Arrow type (Parquet only)."""
    path = _local_path(uri)
    if path is None:
        return None, None
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            types = {c: str(schema.field(c).type) for c in schema.names}
            return None, json.dumps({c: _SAME.get(t, t) for c, t in types.items()})
        opener = next((o for suffix, o in OPENERS.items() if path.endswith(suffix)), None)
        if opener is not None:
            with opener(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
        return None, None
    except Exception as err:  # whatever makes the file unreadable is the record's error
        return f"{type(err).__name__}: {err}", None


def check_files(batches: Iterator[pd.DataFrame], kind: str) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: ``uri`` → ``uri, error, types``."""
    for frame in batches:
        checked = [check_file(uri, kind) for uri in frame["uri"]]
        yield pd.DataFrame(
            {"uri": frame["uri"], "error": [e for e, _ in checked], "types": [t for _, t in checked]}
        )
