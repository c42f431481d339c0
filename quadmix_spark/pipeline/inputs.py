"""Driver-side input files named in the config (θ files, mixture files, run tables, run lists).

Mixtures are named by source (``natural``, ``entropy:se``, a file, ...): :func:`resolve_mixture`
resolves one through the sources' registry (:mod:`quadmix_spark.mixing.sources`).

Each is a local path or a URI (``file://``, ``hdfs://``, ``s3a://``, ...), read through
:mod:`quadmix_spark.spark.files` like the outputs beside the tables, so a job on a cluster can
read what an earlier job wrote there. A missing file is a :class:`ConfigError` naming its key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from quadmix_spark import core
from quadmix_spark.config import ConfigError, PipelineConfig
from quadmix_spark.core.params import ParamsError, read_structured
from quadmix_spark.mixing import sources
from quadmix_spark.spark import files


def require_file(path: str, key: str, what: str = "file") -> None:
    """Fail with a ConfigError naming ``key`` unless ``path`` is a file."""
    if not files.is_file(path):
        raise ConfigError(f"{key}: {what} not found: {path}")


def read_params(path: str, key: str) -> core.QuadMixParams:
    """The θ file at ``path`` (YAML or JSON); errors name ``key``."""
    require_file(path, key, "params file")
    try:
        with files.local_copy(path) as local:
            return core.QuadMixParams.from_dict(read_structured(local), source=path)
    except ParamsError as err:
        raise ConfigError(f"{key} ({path}): {err}") from err


def read_mixture(path: str, key: str) -> core.Mixture:
    """The mixture file at ``path`` (YAML or JSON); errors name ``key``."""
    require_file(path, key, "mixture file")
    try:
        with files.local_copy(path) as local:
            return core.Mixture.from_file(local)
    except core.MixtureError as err:
        raise ConfigError(f"{key}: {err}".replace(str(local), path)) from err


def mixture_context(
    config: PipelineConfig,
    key: str,
    domains: Sequence[str] | None = None,
    tokens: Callable[[], Mapping[str, float]] | None = None,
    **provenance: Any,
) -> sources.SourceContext:
    """What a mixture source named at ``key`` resolves against: files through spark/files, the
    pool's ``tokens`` per domain (read when a source asks; ``provenance`` says where from)."""
    return sources.SourceContext(
        config=config,
        key=key,
        read_mixture=read_mixture,
        is_file=files.is_file,
        join=files.join,
        domains=None if domains is None else tuple(domains),
        tokens=tokens,
        tokens_provenance=provenance,
    )


def resolve_mixture(
    config: PipelineConfig,
    name: str,
    key: str,
    domains: Sequence[str] | None = None,
    tokens: Callable[[], Mapping[str, float]] | None = None,
    **provenance: Any,
) -> core.Mixture:
    """The mixture a source name at ``key`` stands for (:func:`quadmix_spark.mixing.sources.resolve`)."""
    return sources.resolve(name, mixture_context(config, key, domains, tokens, **provenance))


def mixture_file(config: PipelineConfig, name: str | None, key: str) -> str | None:
    """The file a mixture source reads (a mixture file, another job's output); None for a computed
    source (``natural``, ``uniform``) or no name."""
    return None if name is None else sources.parse(name, key).file(mixture_context(config, key))


def mixture_needs(config: PipelineConfig, names: Sequence[str], key: str) -> tuple[list[str], bool]:
    """What resolving ``names`` reads, known before a SparkSession starts: the files, and whether
    the stats table (then Spark) is needed."""
    parsed = [sources.parse(name, key) for name in names]
    read = [mixture_file(config, name, key) for name in names]
    return [f for f in read if f is not None], any(s.needs_tokens for s in parsed)


def read_lines(path: str, key: str) -> list[str]:
    """The non-blank lines of the text file at ``path``, stripped."""
    require_file(path, key)
    return [line.strip() for line in files.read_text(path).splitlines() if line.strip()]


def read_table(path: str, key: str, fmt: str) -> pd.DataFrame:
    """A ``csv`` or ``parquet`` file as a pandas frame.

    A local Parquet path may also be a folder of part files; a URI must name one file.
    """
    if not (fmt == "parquet" and files.is_local_path(path) and files.exists(path)):
        require_file(path, key)
    with files.local_copy(path) as local:
        return pd.read_csv(local) if fmt == "csv" else pd.read_parquet(local)
