"""Identity keys of runs, selections and configs.

A key is a short hex digest of a value's canonical JSON, so the same inputs give the same key
on every machine and rerun (selection ids, experiment keys, annotator hashes, θ hashes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["content_key"]


def content_key(value: Any, length: int = 16) -> str:
    """The first ``length`` hex characters of sha256 of ``value``'s canonical JSON.

    Canonical: keys sorted, no spaces, NaN rejected; values JSON cannot hold (paths, dates) are
    written with ``str``.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
