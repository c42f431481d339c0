"""``quadmix init``: a project folder for the user's own corpus.

It writes ``quadmix.yaml`` (a commented starter config: the keys a first run needs, pointing at the
corpus), an empty ``models/`` and a short README. Every path in the config is relative to the
folder, and the commands find ``./quadmix.yaml`` when no ``--config`` is given, so every command
runs from there without a file of the checkout.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from quadmix_spark.config import ConfigError
from quadmix_spark.spark import files

CONFIG_NAME = "quadmix.yaml"
FORMATS = ("jsonl", "parquet", "delta")

_CONFIG = """\
# quadmix starter config, written by `quadmix init`. Every key is documented in docs/config.md
# of quadmix-spark; paths are relative to this folder (run every command from here).
# A first run:
#   quadmix train-classifier   # models/domain.bin from the labels in {label!r}
#   quadmix annotate           # warehouse/annotated + warehouse/quarantine
#   quadmix stats              # warehouse/stats
#   quadmix params-template    # params.yaml: θ for your domains with the defaults (edit it)
#   quadmix select             # warehouse/selected + selections/<selection_id>/
warehouse: warehouse           # tables resolve under this folder (a URI works too)

spark:
  app_name: quadmix
  master: local[2]             # ignored under spark-submit
  shuffle_partitions: 8

# The domain classifier, trained on your corpus's labels. Documents without a label are left out
# of training; a model trained elsewhere can be used instead: put it at models/domain.bin and
# skip train-classifier.
classifiers:
  domain:
    input: {{path: {corpus}, format: {fmt}, id_column: id, text_column: text}}
    label_column: {label}
    output_model: models/domain.bin

annotate:
  input:
    path: {corpus}
    format: {fmt}
    id_column: id              # null: the id is a hash of the text
    text_column: text
    keep_columns: []           # input columns carried into the annotated table
    skip_hidden_files: true    # files named _* or .* are skipped and counted, not read
  annotators:
    - {{kind: fasttext_domain, name: domain, column: domain, model: models/domain.bin}}
    - {{kind: language_id, name: language, column: language}}
    - {{kind: heuristics, name: heuristics}}
    - {{kind: tokens, name: tokens, column: n_tokens, tokenizer: cl100k_base}}
    # A quality classifier (train it like `domain`, from a label column of good/bad text):
    # - {{kind: fasttext_quality, name: quality, column: q_fasttext, model: models/quality.bin,
    #    label: high}}

domain_column: domain
token_column: n_tokens
# The quality scorers θ weighs (annotated columns) and their direction; add q_fasttext with a
# quality model.
scorers:
  frac_lines_end_punct: higher_is_better
  dup_5gram_char_frac: lower_is_better

select:
  params: params.yaml          # written by `quadmix params-template`
  output_dir: selections
  token_budget: null           # tokens to select (counting copies); null: θ decides
"""

_README = """\
# {name}

A quadmix-spark project. `quadmix.yaml` is its config (commented; every key is in quadmix-spark's
docs/config.md); run every command from this folder, in this order the first time:

```bash
quadmix train-classifier   # models/domain.bin
quadmix annotate           # warehouse/annotated, warehouse/quarantine
quadmix stats              # warehouse/stats
quadmix params-template    # params.yaml (θ with the defaults: edit it)
quadmix select             # warehouse/selected, selections/<selection_id>/
```

Any key can be changed for one run with `--set section.key=value`.
"""


@dataclass(frozen=True)
class InitResult:
    """What ``init`` wrote."""

    config: Path
    models: Path
    readme: Path | None


def guess_format(corpus: str) -> str:
    """The input format a corpus path suggests: a Delta log, Parquet files, else JSON lines."""
    path = Path(corpus)
    if (path / "_delta_log").is_dir():
        return "delta"
    if path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
        return "parquet"
    return "jsonl"


def _relative(corpus: str, folder: Path) -> str:
    """``corpus`` as the config in ``folder`` names it: relative to the folder where it can be."""
    if "://" in corpus:
        return corpus
    target = Path(corpus).resolve()
    try:
        return os.path.relpath(target, folder.resolve())
    except ValueError:  # another drive on Windows
        return str(target)


def starter_config(corpus: str, fmt: str, label: str) -> str:
    """The text of the starter ``quadmix.yaml``."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return _CONFIG.format(corpus=_yaml_scalar(corpus), fmt=fmt, label=label)


def _yaml_scalar(text: str) -> str:
    # A path with spaces, ':' or '#' must be quoted to stay one YAML string (JSON's quoting is YAML's).
    return text if re.fullmatch(r"[\w./-]+", text) else json.dumps(text)


def init_project(
    folder: str | Path,
    corpus: str | None = None,
    fmt: str | None = None,
    label: str = "domain",
    force: bool = False,
) -> InitResult:
    """Write the starter config, ``models/`` and a README stub into ``folder``.

    ``corpus`` is a path as the user typed it (relative to the working directory) or a URI; without
    one the config names ``data/corpus`` in the folder, to be edited. An existing ``quadmix.yaml``
    is kept unless ``force``; an existing README is never replaced.
    """
    folder = Path(folder)
    config = folder / CONFIG_NAME
    if config.exists() and not force:
        raise ConfigError(f"{config} exists: edit it, or run `quadmix init --force` to replace it")
    named = "data/corpus" if corpus is None else _relative(corpus, folder)
    text = starter_config(named, fmt or (guess_format(corpus) if corpus else "jsonl"), label)
    files.makedirs(folder / "models")
    files.write_text(config, text)
    readme = folder / "README.md"
    if files.exists(readme):
        return InitResult(config, folder / "models", None)
    files.write_text(readme, _README.format(name=folder.resolve().name))
    return InitResult(config, folder / "models", readme)
