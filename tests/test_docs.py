"""README.md and docs/*.md: every relative link resolves, every dotted config key they name exists,
and the README stays an entry page (its two commands unchanged, at most 250 lines)."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from quadmix_spark import config as cfg
from udfs import annotators

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
#: `section.key` or `section.<name>.key` in backticks, after `--set ` and before `=value` or `: value`.
KEY = re.compile(r"`(?:--set )?((?:[a-z_]+)(?:\.(?:<name>|[a-z_0-9]+))+)(?:[=:][^`]*)?`")

#: Dotted names in backticks that start like a config section and are not keys: Spark's own
#: settings (``spark.conf`` takes them) and file names.
NOT_KEYS = re.compile(
    r"^spark\.(sql|task|executor|driver|pyspark|hadoop|databricks|local\.dir|default)\b"
    r"|\.(md|py|yaml|yml|json|jsonl|txt|bin|ftz|png|html|parquet|csv|gz|zip|whl|sh|properties|toml)$"
)


def config_keys() -> set[str]:
    """Every declared key, dotted (``classifiers.<name>.epoch``), and every section."""
    keys: set[str] = set()

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, name = hints[f.name], prefix + f.name
            if dataclasses.is_dataclass(tp):
                keys.add(name)
                walk(tp, name + ".")
            elif typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
                keys.update({name, name + ".<name>"})
                walk(typing.get_args(tp)[1], name + ".<name>.")
            elif cfg.DOC in f.metadata:
                keys.add(name)
                if typing.get_origin(tp) is dict:  # a map's entries: `reweight.params.<name>`
                    keys.add(name + ".<name>")

    walk(cfg.PipelineConfig, "")
    for kind in annotators.kinds():  # annotate.annotators[i].<kind's key>
        keys.update(f"annotate.annotators.{k}" for k in annotators.config_keys(kind))
    keys.update(f"annotate.annotators.{k}" for k in cfg.declared_keys(cfg.AnnotatorConfig))
    return keys


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of ``page``: lower case, punctuation dropped, spaces as hyphens."""
    text = CODE_BLOCK.sub("", page.read_text())
    found = set()
    for heading in re.findall(r"^#+\s+(.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(CODE_BLOCK.sub("", page.read_text())) if "://" not in t]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = anchor and file.suffix == ".md" and file.exists() and anchor not in anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(target)
    return broken


def is_module(name: str) -> bool:
    """``proxy.runs``, ``search.candidates.search_theta``: a module of the package (and a name in it)."""
    parts = name.split(".")
    package = ROOT / "quadmix_spark" / parts[0]
    if len(parts) < 2 or not package.is_dir():
        return False
    exported = re.search(rf"\b{parts[1]}\b", (package / "__init__.py").read_text())
    return (package / f"{parts[1]}.py").is_file() or exported is not None


def unknown_keys(text: str) -> list[str]:
    """The dotted names in backticks that start with a config section and are no declared key
    (a name that is a module of the package, or on the allow-list, is not a claim about the config)."""
    keys = config_keys()
    sections = {k.split(".")[0] for k in keys}
    names = {m.group(1) for m in KEY.finditer(text)} - keys
    return sorted(
        n for n in names if n.split(".")[0] in sections and not is_module(n) and not NOT_KEYS.search(n)
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_key_the_docs_name_exists(page: Path):
    assert unknown_keys(page.read_text()) == []


def test_a_made_up_key_or_a_broken_link_is_caught(tmp_path: Path):
    assert unknown_keys("set `select.token_budgett: 5` or `search.prior`") == ["select.token_budgett"]
    assert unknown_keys("`search.priors`, `proxy.runs`, `spark.sql.shuffle.partitions`") == ["search.priors"]
    assert unknown_keys("`classifiers.<name>.epoch` and `classifiers.<name>.epochs`") == [
        "classifiers.<name>.epochs"
    ]
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading: here\n")
    page.write_text("[ok](there.md#a-heading-here) [gone](missing.md) [bad](there.md#nowhere)\n")
    assert broken_links(page) == ["missing.md", "there.md#nowhere"]


def test_the_readme_is_an_entry_page_with_its_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    # CI (.ci/run) installs and tests exactly as these two say.
    assert "\nQUADMIX_EXTRAS=torch ./scripts/setup.sh && .venv/bin/quadmix demo\n" in text
    assert "\n.venv/bin/python -m pytest -q\n" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "QUADMIX_EXTRAS=torch bash scripts/setup.sh" in ci and ".venv/bin/python -m pytest -q" in ci
    for doc in ("jobs", "behaviour", "search", "mixtures", "cluster", "nightly", "benchmarks", "config"):
        assert f"](docs/{doc}.md)" in text, doc


def test_no_documented_command_builds_into_the_checkout():
    """pip builds a source folder in place (build/, *.egg-info): the docs build from a copy."""
    for page in PAGES:
        for line in page.read_text().splitlines():
            if "pip wheel" in line:
                assert not re.search(r"\s\.$", line.split("#")[0].rstrip()), (page.name, line)
