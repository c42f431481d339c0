"""Write the key tables of docs/config.md from the declarations in quadmix_spark/config.py.

Each table sits between ``<!-- keys:NAME -->`` and ``<!-- /keys:NAME -->``; everything outside the
markers (the prose between the tables) is written by hand and kept. The tables: ``top`` (the keys
of ``PipelineConfig`` that are not sections), one per section (``spark``, ``annotate``, ...; a map
of sections such as ``classifiers`` has rows ``classifiers.<name>.*``), the keys every annotator
has (``annotate.annotators``) and the keys of each built-in annotator kind, from the annotator
registry (``annotate.annotators.kinds``). A row shows the key, its type (with its declared
constraint), its default and its meaning.

    python scripts/config_docs.py          # rewrite docs/config.md
    python scripts/config_docs.py --check  # exit status 1 when docs/config.md differs

tests/test_config.py runs the check.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from quadmix_spark import config as cfg
from udfs import annotators

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "config.md"
COMMAND = "python scripts/config_docs.py"
MARKED = re.compile(r"<!-- keys:(?P<name>[\w.]+) -->\n.*?<!-- /keys:(?P=name) -->", re.S)
HEADER = ["key", "type", "default", "meaning"]


def tables() -> dict[str, list[list[str]]]:
    """Table name → rows (cells as plain text, before escaping), in the order of the declarations."""
    out = {"top": _rows(cfg.PipelineConfig, "", flatten=False)}
    hints = typing.get_type_hints(cfg.PipelineConfig)
    for name in _section_fields(cfg.PipelineConfig):
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            out[name] = _rows(tp, f"{name}.")
        else:  # a map of named sections
            out[name] = _rows(typing.get_args(tp)[1], f"{name}.<name>.")
    out["annotate.annotators"] = _rows(cfg.AnnotatorConfig, "")
    out["annotate.annotators.kinds"] = _kind_rows()
    return out


def render(text: str) -> str:
    """``text`` (docs/config.md) with every marked table rewritten; a table without its markers, or
    markers without a table, is a ``ValueError``."""
    made = tables()
    marked = [m.group("name") for m in MARKED.finditer(text)]
    missing, unknown = sorted(set(made) - set(marked)), sorted(set(marked) - set(made))
    if missing or unknown:
        raise ValueError(f"docs/config.md: tables without markers {missing}, markers of no table {unknown}")

    def table(match: re.Match) -> str:
        name = match.group("name")
        header = ["kind", *HEADER] if name.endswith(".kinds") else HEADER
        lines = [_line(header), "|" + "---|" * len(header)]
        lines += [_line(row) for row in made[name]]
        return f"<!-- keys:{name} -->\n" + "\n".join(lines) + f"\n<!-- /keys:{name} -->"

    return MARKED.sub(table, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether docs/config.md differs")
    args = parser.parse_args(argv)
    text = DOC_PATH.read_text()
    new = render(text)
    if new == text:
        return 0
    if args.check:
        print(f"docs/config.md's key tables differ from the declarations: run {COMMAND}", file=sys.stderr)
        return 1
    DOC_PATH.write_text(new)
    print(f"wrote {DOC_PATH.relative_to(ROOT)}")
    return 0


def _rows(cls: type, prefix: str, flatten: bool = True) -> list[list[str]]:
    """A section's keys; sections inside it flattened (``flatten``), a map of sections followed by
    its sections' keys (``<prefix><key>.<name>.*``)."""
    hints = typing.get_type_hints(cls)
    sections = _section_fields(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if f.name in sections:
            rows += _rows(tp, f"{key}.") if flatten else []
        elif cfg.DOC in f.metadata:
            rows.append(
                [f"`{key}`", _type_cell(tp, f.metadata.get(cfg.CHECK)), _default(f), f.metadata[cfg.DOC]]
            )
            if typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                rows += _rows(typing.get_args(tp)[1], f"{key}.<name>.")
    return rows


def _section_fields(cls: type) -> list[str]:
    """Fields that are sections of their own (no meaning declared): a section or a map of sections."""
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if cfg.DOC not in f.metadata
        and (
            dataclasses.is_dataclass(hints[f.name])
            or (
                typing.get_origin(hints[f.name]) is dict
                and dataclasses.is_dataclass(typing.get_args(hints[f.name])[1])
            )
        )
    ]


def _kind_rows() -> list[list[str]]:
    """The keys of every built-in annotator kind (those of ``udfs.annotators``), from the registry."""
    rows = []
    for kind in annotators.kinds():
        if annotators.annotator_class(kind).__module__ != annotators.__name__:
            continue  # registered by other code (a test, a plugin): not documented here
        for name, key in annotators.config_keys(kind).items():
            default = "required" if key.required else f"`{_yaml(key.default)}`"
            rows.append([f"`{kind}`", f"`{name}`", _type(key.type), default, key.doc])
    return rows


def _type_cell(tp: Any, check: cfg.Check | None) -> str:
    shown = _type(tp) + (" section" if dataclasses.is_dataclass(tp) else "")
    return shown + (f", {check.doc()}" if check is not None else "")


def _type(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list[{_type(args[0])}]"
    if origin is dict:
        return f"map {_type(args[0])} → {_type(args[1])}"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if dataclasses.is_dataclass(
        tp
    ):  # a section: AnnotatorConfig is "annotator", TargetSetConfig "target set"
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", tp.__name__.removesuffix("Config")).lower()
    return tp.__name__


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    return "its keys' defaults" if dataclasses.is_dataclass(value) else f"`{_yaml(value)}`"


def _yaml(value: Any) -> str:
    """A default as YAML flow text: ``null``, ``false``, ``[se, je]``, ``{}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return value or '""'
    return repr(value)


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
