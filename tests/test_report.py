"""The selection report: real PNGs, and the same per-domain numbers in Markdown and HTML."""

from __future__ import annotations

import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from quadmix_spark.core.params import QuadMixParams
from quadmix_spark.report import FIGURES, ReportData, _curve, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DOMAINS = ("News", "Science", "Sports")


def make_params() -> QuadMixParams:
    return QuadMixParams(
        DOMAINS,
        ("fineweb_edu", "dclm"),
        np.array([[0.5, 0.5], [0.2, 0.8], [1.0, 0.0]]),
        lam=np.array([100.0, 10.0, 500.0]),
        omega=np.array([0.1, 0.3, 0.05]),
        eta=np.array([1.0, 0.5, 0.8]),
        eps=np.array([1e-3, 5e-4, 0.0]),
    )


def make_data(params: QuadMixParams | None = None) -> ReportData:
    rng = np.random.default_rng(0)
    return ReportData(
        title="selection 3f2a9c (seed 0)",
        params=params,
        selector="quadmix" if params else "uniform",
        docs_before={"News": 1000, "Science": 400, "Sports": 600},
        tokens_before={"News": 1_000_000, "Science": 500_000, "Sports": 500_000},
        docs_after={"News": 120, "Science": 200, "Sports": 30},
        tokens_after={"News": 125_000, "Science": 250_000, "Sports": 25_000},
        tokens_requested={"News": 124_500.4, "Science": 251_000.0, "Sports": 24_999.6},
        score_samples={"fineweb_edu": rng.normal(2.5, 0.7, 500), "dclm": rng.beta(2, 5, 500)},
        rank_samples={d: rng.uniform(1e-3, 1.0, 300) for d in DOMAINS},
        manifest={"params_hash": "3f2a9c0011223344", "seed": 0, "input_versions": {"annotated": 7}},
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def md_row(md: str, first: str, width: int = 10) -> list[str]:
    """The one Markdown table row starting with ``first`` that has ``width`` cells."""
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines() if ln.startswith("| ")]
    (row,) = [r for r in rows if r[0] == first and len(r) == width]
    return row


def html_row(page: str, first: str, width: int = 10) -> list[str]:
    rows = [re.findall(r"<td>(.*?)</td>", ln) for ln in page.splitlines() if ln.startswith("<tr><td>")]
    (row,) = [r for r in rows if r[0] == first and len(r) == width]
    return row


def test_full_report_writes_real_pngs_and_consistent_tables(tmp_path):
    out = tmp_path / "report"  # created by write_report
    paths = write_report(out, make_data(make_params()))
    assert [p.name for p in paths] == [*FIGURES, "report.md", "report.html"]
    for p in paths[:4]:
        w, h = png_size(p)
        assert p.stat().st_size > 10_000 and w >= 400 and h >= 250, p.name
    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert md.startswith("# selection 3f2a9c (seed 0)\n")

    # domain, docs before, after, keep (docs), tokens before, requested, after, keep (tokens), shares
    expected = """
        News    1,000 120 12.00% 1,000,000 124,500 125,000 12.50% 50.00%  31.25%
        Science 400   200 50.00% 500,000   251,000 250,000 50.00% 25.00%  62.50%
        Sports  600   30  5.00%  500,000   25,000  25,000  5.00%  25.00%  6.25%
        total   2,000 350 17.50% 2,000,000 400,500 400,000 20.00% 100.00% 100.00%
    """
    for cells in (line.split() for line in expected.strip().splitlines()):
        name = cells[0]
        assert md_row(md, name) == cells
        assert html_row(page, name) == cells

    # Key facts (nested manifest flattened), β table, images by relative path in both documents.
    assert md_row(md, "params_hash", 2) == ["params_hash", "3f2a9c0011223344"]
    assert md_row(md, "input_versions.annotated", 2) == ["input_versions.annotated", "7"]
    assert html_row(page, "seed", 2) == ["seed", "0"]
    # Parameters table: domain, λ, ω, η, ε, α per scorer.
    assert md_row(md, "Science", 7) == ["Science", "10", "0.3", "0.5", "0.0005", "0.2", "0.8"]
    assert html_row(page, "Sports", 7) == ["Sports", "500", "0.05", "0.8", "0", "1", "0"]
    for name in FIGURES:
        assert f"]({name})" in md and f'<img src="{name}"' in page
    assert "Selected 400,000 of 2,000,000 pool tokens (20.00%)" in md
    assert "<!DOCTYPE html>" in page and "http" not in page  # standalone: no external assets
    assert "nan" not in md.lower() and "nan" not in page.lower()


def test_params_none_has_no_sampling_curves_and_removes_a_stale_one(tmp_path):
    (tmp_path / "sampling_curves.png").write_bytes(b"stale")
    paths = write_report(tmp_path, make_data(None))
    names = [p.name for p in paths]
    assert names == ["tokens_by_domain.png", "scores.png", "ranks.png", "report.md", "report.html"]
    assert not (tmp_path / "sampling_curves.png").exists()
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "sampling_curves" not in md and "## Parameters" not in md
    assert md_row(md, "News")[7] == "12.50%"


def test_empty_domain_missing_counts_and_no_samples(tmp_path):
    data = replace(
        make_data(make_params()),
        docs_before={"News": 10, "Science": 0, "Sports": 5},
        tokens_before={"News": 1000, "Science": 0, "Sports": 1000},
        docs_after={"News": 2},  # nothing selected elsewhere: the group is simply absent
        tokens_after={"News": 300},
        tokens_requested={"News": float("nan"), "Sports": 0.0},
        rank_samples={},
        score_samples={"fineweb_edu": np.array([np.nan, np.nan]), "dclm": np.array([])},
    )
    paths = write_report(tmp_path, data)
    assert [p.name for p in paths] == [
        "tokens_by_domain.png",
        "scores.png",
        "sampling_curves.png",
        "report.md",
        "report.html",
    ]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    science = ["Science", "0", "0", "–", "0", "–", "0", "–", "0.00%", "0.00%"]
    assert md_row(md, "Science") == science and html_row(page, "Science") == science
    assert md_row(md, "News") == [
        "News",
        "10",
        "2",
        "20.00%",
        "1,000",
        "–",
        "300",
        "30.00%",
        "50.00%",
        "100.00%",
    ]
    assert md_row(md, "Sports")[5:8] == ["0", "0", "0.00%"]
    assert md_row(md, "total")[5] == "0"  # NaN is dropped; the finite request (0) remains
    assert "No rank samples" in md and "nan" not in md.lower()


def test_nothing_at_all(tmp_path):
    data = ReportData("empty run", None, "uniform", {}, {}, {}, {}, {}, {}, {}, {})
    paths = write_report(tmp_path, data)
    assert [p.name for p in paths] == ["report.md", "report.html"]
    md = paths[0].read_text(encoding="utf-8")
    assert md_row(md, "total") == ["total", "0", "0", "–", "0", "–", "0", "–", "–", "–"]
    assert md_row(md, "–", 2) == ["–", "–"]  # empty manifest


def test_curve_keeps_the_jump_at_omega():
    params = make_params()
    r, s = _curve(params, 0)  # ω = 0.1, ε = 0.001
    assert r[0] > 0 and r[-1] == 1.0 and np.all(np.diff(r) > 0) and r.size >= 2001
    k = int(np.searchsorted(r, 0.1))
    assert r[k] == 0.1 and s[k] == pytest.approx(1.001) and s[k + 1] == pytest.approx(0.001)
    assert s[0] == pytest.approx(2 / (1 + np.exp(-100 * (0.1 - r[0]))) + 0.001)
