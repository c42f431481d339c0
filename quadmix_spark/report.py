"""Human-readable report of one selection run: PNG figures + report.md + report.html.

The select job gathers small driver-side aggregates into :class:`ReportData` and renders them
with :func:`render_report` (file name → bytes, written wherever the selection lives);
:func:`write_report` writes them into a local folder. Both documents are rendered from one list
of blocks (heading, paragraph, table, image), so Markdown and HTML always show the same numbers.

Table conventions: counts are integers with thousands separators; shares and keep rates
are percentages with 2 decimals ("<0.01%" for tiny non-zero values); anything undefined
(0/0, missing requested tokens, NaN) is "–". Keep rate = after / before, so copies can
push it above 100%. A domain missing from an ``*_after`` dict had nothing selected (0);
a domain missing from ``tokens_requested`` was not estimated ("–", e.g. baselines).
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from quadmix_spark.core.params import QuadMixParams
from quadmix_spark.core.sampling import sampling_function

__all__ = ["FIGURES", "ReportData", "render_report", "write_report"]

DASH = "–"
FIGURES = ("tokens_by_domain.png", "scores.png", "ranks.png", "sampling_curves.png")
_DPI = 100


@dataclass(frozen=True)
class ReportData:
    """Driver-side aggregates of one selection run (all small; dicts keyed by name)."""

    title: str
    params: QuadMixParams | None  # None for baseline selectors: no S curves, no ω shading
    selector: str  # "quadmix", "uniform", "topk:<scorer>", "union_topk"
    docs_before: dict[str, int]  # per domain, documents in the annotated pool
    tokens_before: dict[str, int]  # per domain, tokens in the pool
    docs_after: dict[str, int]  # per domain, selected documents counting copies
    tokens_after: dict[str, int]  # per domain, selected tokens counting copies
    tokens_requested: dict[str, float]  # per domain, expected tokens Σ tokens·S
    score_samples: dict[str, np.ndarray]  # per scorer, raw scores of a sample, shape (n,)
    rank_samples: dict[str, np.ndarray]  # per domain, r̄ in (0, 1] of a sample, shape (n,)
    manifest: dict  # the run's manifest; nested dicts are flattened one level
    # Per domain, pool documents whose domain probability is below ``low_confidence_below`` (from
    # the stats run); empty: no column in the table.
    low_confidence: dict[str, int] = field(default_factory=dict)
    low_confidence_below: float | None = None


# -- formatting ---------------------------------------------------------------------------
def _num(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _int(v: float | None) -> str:
    v = _num(v)
    return DASH if v is None else f"{round(v):,}"


def _pct(num: float | None, den: float | None) -> str:
    num, den = _num(num), _num(den)
    if num is None or den is None or den <= 0:
        return DASH
    p = 100.0 * num / den
    return "<0.01%" if 0 < p < 0.005 else f"{p:.2f}%"


def _si(x: float, _pos: Any = None) -> str:
    """Axis ticks in tokens: 1.5M rather than 1500000."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _short(v: Any, limit: int = 100) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flatten(d: Mapping, prefix: str = "") -> Iterator[tuple[str, str]]:
    # One level of nesting (e.g. input_versions.annotated) reads well; deeper is JSON.
    for k, v in d.items():
        if isinstance(v, Mapping) and v and not prefix:
            yield from _flatten(v, f"{k}.")
        else:
            yield f"{prefix}{k}", _short(v)


# -- figures ------------------------------------------------------------------------------
def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend switch
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _grid(n: int, title: str, ncols: int = 4) -> tuple[Figure, list[Any]]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    # Constrained layout (every figure) keeps suptitle, titles and outside legends apart.
    fig = Figure(figsize=(3.4 * ncols, 2.7 * nrows + 0.4), layout="constrained")
    fig.suptitle(title)
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]


class _Row(NamedTuple):
    """Per-domain counts; ``requested`` is None when not estimated."""

    domain: str
    docs_before: int
    docs_after: int
    tokens_before: int
    tokens_after: int
    requested: float | None


def _tokens_figure(data: ReportData, rows: list[_Row]) -> Figure | None:
    if not rows:
        return None
    names = [r.domain for r in rows]
    x, w = np.arange(len(rows)), 0.4
    before = np.array([r.tokens_before for r in rows], dtype=float)
    after = np.array([r.tokens_after for r in rows], dtype=float)
    many = len(rows) > 10  # e.g. the 26 NeMo domains: tilt names, turn the keep-rate labels
    fig = Figure(figsize=(max(9.0, 0.5 * len(rows) + 3), 8.0), layout="constrained")
    ax, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    ax.bar(x - w / 2, before, w, label="pool (before)", color="0.65")
    ax.bar(x + w / 2, after, w, label="selected (after, with copies)", color="tab:blue")
    req = [(x[i] + w / 2, r.requested) for i, r in enumerate(rows) if r.requested is not None]
    if req:
        ax.plot(*zip(*req, strict=True), "kD", ls="none", ms=5, label="requested (Σ tokens·S)")
    for i, r in enumerate(rows):  # keep rate above each group: small "after" bars stay legible
        label = " " + _pct(r.tokens_after, r.tokens_before)
        ax.text(x[i], max(before[i], after[i]), label, ha="center", va="bottom", rotation=90 if many else 0)
    ax.yaxis.set_major_formatter(FuncFormatter(_si))
    ax.set(ylabel="tokens", title="Tokens per domain (label: keep rate = after / before)")
    top = max(before.max(), after.max(), *(v for _, v in req), 1.0)
    ax.set_ylim(0, top * (1.35 if many else 1.15))  # head-room for the keep-rate labels
    tb, ta = before.sum(), after.sum()
    ax2.bar(x - w / 2, 100 * before / tb if tb > 0 else before * 0, w, color="0.65")
    ax2.bar(x + w / 2, 100 * after / ta if ta > 0 else after * 0, w, color="tab:blue")
    ax2.set(ylabel="share of all tokens (%)", title="Domain mix: share of tokens before vs after")
    tilt = len(rows) > 6  # long domain names overlap otherwise
    for a in (ax, ax2):
        a.set_xticks(x, names, rotation=35 if tilt else 0, ha="right" if tilt else "center")
        a.set_xlabel("domain")
    # One legend for both panels (same colours), above them: never on top of bars or labels.
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=3, frameon=False)
    return fig


def _scores_figure(data: ReportData, rows: list[_Row]) -> Figure | None:
    if not data.score_samples:
        return None
    fig, axes = _grid(len(data.score_samples), "Raw quality scores (sample of documents)")
    for ax, (name, values) in zip(axes, data.score_samples.items(), strict=True):
        v = np.asarray(values, dtype=float).ravel()
        ok = v[np.isfinite(v)]  # NaN = document without this score
        if ok.size:
            ax.hist(ok, bins=50, color="tab:purple")
        ax.set_title(f"{name}\nn={ok.size:,}, missing {v.size - ok.size:,}", fontsize=9)
        ax.set(xlabel="raw score (scorer units)", ylabel="documents")
    return fig


def _ranks_figure(data: ReportData, rows: list[_Row]) -> Figure | None:
    if not data.rank_samples:
        return None
    p = data.params
    note = "; shaded: selected region r̄ ≤ ω" if p else ""
    fig, axes = _grid(len(data.rank_samples), f"Within-domain rank r̄ (small = better){note}")
    omega = dict(zip(p.domains, p.omega, strict=True)) if p else {}
    for ax, (name, values) in zip(axes, data.rank_samples.items(), strict=True):
        v = np.asarray(values, dtype=float).ravel()
        v = v[np.isfinite(v)]
        ax.hist(v, bins=np.linspace(0, 1, 51), color="tab:green", alpha=0.8)
        title = f"{name}\nn={v.size:,}"
        if name in omega:
            om = float(omega[name])
            ax.axvspan(0, min(om, 1.0), color="tab:orange", alpha=0.35, lw=0)
            title += f", {_pct(np.count_nonzero(v <= om), v.size)} ≤ ω={om:.3g}"
        ax.set_title(title, fontsize=9)
        ax.set(xlabel="r̄ (token-weighted percentile)", ylabel="documents", xlim=(0, 1))
    return fig


def _curve(params: QuadMixParams, i: int, n: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """(r̄, S(r̄)) of domain ``i`` on an ``n``-point grid over (0, 1], shape (≤ n + 1,) each.

    ω and the next float above it are inserted so the line drops vertically at ω
    instead of sloping across one grid cell.
    """
    om = float(params.omega[i])
    r = np.concatenate([np.linspace(0, 1, n), [om, np.nextafter(om, np.inf)]])
    r = np.unique(r[(r > 0) & (r <= 1)])
    return r, sampling_function(r, params.lam[i], params.omega[i], params.eta[i], params.eps[i])


def _curves_figure(data: ReportData, rows: list[_Row]) -> Figure | None:
    p = data.params
    if p is None:
        return None
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    full, zoom, tail = (fig.add_subplot(1, 3, k) for k in (1, 2, 3))
    cmap = colormaps["tab10" if p.n_domains <= 10 else "tab20"]
    for i, d in enumerate(p.domains):
        r, s = _curve(p, i)
        style = ("-", "--", ":")[(i // cmap.N) % 3]  # colours repeat past 20 domains: vary the dash
        label = f"{d}: λ={p.lam[i]:.3g} ω={p.omega[i]:.3g} η={p.eta[i]:.3g} ε={p.eps[i]:.2g}"
        for ax in (full, zoom, tail):
            ax.plot(r, s, style, color=cmap(i % cmap.N), lw=1.3, label=label if ax is full else None)
    max_om, max_eps = float(p.omega.max()), float(p.eps.max())
    full.set(title="S(r̄) over the whole domain", xlim=(0, 1))
    # The paper's ω ≤ 0.1 squeezes the ramp into the left edge: zoom on the cutoffs.
    zoom.set(title="zoom on the cutoffs ω", xlim=(0, min(1.0, 1.25 * max_om) if max_om > 0 else 0.05))
    # ε (~0.001) is invisible next to S ≈ 1..2 on a linear axis: give it its own panel.
    tail.set(title="past ω: S = ε (rest of the domain)", xlim=(0, 1), ylim=(0, 1.5 * max_eps or 1e-3))
    for ax in (full, zoom, tail):
        ax.set(xlabel="r̄ (fraction of domain tokens, small = better)", ylabel="expected copies S")
        ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    fig.suptitle("Sampling function S(r̄) per domain (Eq.3)")
    return fig


_MAKERS = dict(zip(FIGURES, (_tokens_figure, _scores_figure, _ranks_figure, _curves_figure), strict=True))


# -- document model: one block list, rendered twice ------------------------------------------
Block = tuple  # ("h1" | "h2" | "p", text) | ("table", headers, rows of str) | ("img", file, alt)
_HEADERS = ["domain", "docs before", "docs after", "keep (docs)", "tokens before", "tokens requested"]
_HEADERS += ["tokens after", "keep (tokens)", "share before", "share after"]


def _rows(data: ReportData) -> list[_Row]:
    """Params order first (stable across runs), then any other domain in first-seen order."""
    names = dict.fromkeys(data.params.domains if data.params else ())
    for counts in (data.tokens_before, data.docs_before, data.tokens_after, data.docs_after):
        names.update(dict.fromkeys(counts))
    names.update(dict.fromkeys(data.tokens_requested))
    fields = ("docs_before", "docs_after", "tokens_before", "tokens_after")
    # A domain absent from a count dict (e.g. nothing selected, so no group) has count 0.
    return [
        _Row(d, *(int(getattr(data, f).get(d, 0)) for f in fields), _num(data.tokens_requested.get(d)))
        for d in names
    ]


def _cells(r: _Row, total_before: float, total_after: float) -> list[str]:
    return [
        r.domain, _int(r.docs_before), _int(r.docs_after), _pct(r.docs_after, r.docs_before),
        _int(r.tokens_before), _int(r.requested), _int(r.tokens_after), _pct(r.tokens_after, r.tokens_before),
        _pct(r.tokens_before, total_before), _pct(r.tokens_after, total_after),
    ]  # fmt: skip


def _blocks(data: ReportData, rows: list[_Row], images: list[str]) -> list[Block]:
    req = [r.requested for r in rows if r.requested is not None]
    total = _Row(
        "total", *(sum(getattr(r, f) for r in rows) for f in _Row._fields[1:5]), sum(req) if req else None
    )
    tb, ta = total.tokens_before, total.tokens_after
    summary = (
        f"Selector: {data.selector}. Selected {_int(ta)} of {_int(tb)} pool tokens ({_pct(ta, tb)}) "
        f"from {len(rows)} domain(s); counts after selection include copies."
    )
    facts = [[k, v] for k, v in _flatten(data.manifest)] or [[DASH, DASH]]
    blocks: list[Block] = [("h1", data.title), ("p", summary), ("h2", "Key facts")]
    blocks.append(("table", ["key", "value"], facts))
    headers, cells = _HEADERS, [_cells(r, tb, ta) for r in [*rows, total]]
    if low := data.low_confidence:
        headers = [*headers, f"low-confidence docs (p < {data.low_confidence_below:g})"]
        counts = [low.get(r.domain, 0) for r in rows] + [sum(low.get(r.domain, 0) for r in rows)]
        cells = [[*c, _int(n)] for c, n in zip(cells, counts, strict=True)]
    blocks += [("h2", "Per domain"), ("table", headers, cells)]
    if (p := data.params) is not None:
        headers = ["domain", "λ", "ω", "η", "ε", *(f"α {s}" for s in p.scorers)]
        body = [[d, *(f"{v:.4g}" for v in (*p.beta[i], *p.alpha[i]))] for i, d in enumerate(p.domains)]
        blocks += [("h2", "Parameters"), ("table", headers, body)]
    blocks.append(("h2", "Figures"))
    blocks += [("img", name, name.removesuffix(".png").replace("_", " ")) for name in images]
    if not data.rank_samples:
        blocks.append(("p", "No rank samples were collected, so there is no r̄ histogram."))
    return blocks


def _to_markdown(blocks: list[Block]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    out: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append("#" * int(kind[1]) + " " + rest[0])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            # Right-align every column but the first (names / keys): they hold numbers.
            out += [line(rest[0]), "|---|" + "---:|" * (len(rest[0]) - 1), *map(line, rest[1])]
        else:
            out.append(f"![{rest[1]}]({rest[0]})")
        out.append("")
    return "\n".join(out)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px}"
    "td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}"
)


def _to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    out = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>']
    out.append(f"<style>{_CSS}</style></head><body>")
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "table":  # one <tr> per line: easy to diff and to grep
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in rest[0]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rest[1]]
            out.append("</table>")
        else:
            out.append(f'<p><img src="{e(rest[0])}" alt="{e(rest[1])}"></p>')
    return "\n".join([*out, "</body></html>", ""])


def render_report(data: ReportData) -> dict[str, bytes | None]:
    """The report's files by name: PNGs in :data:`FIGURES` order, then report.md, report.html.

    A figure without data (no domains, no score or rank samples, ``params`` None for the S
    curves) maps to None: a copy of it from an earlier run must be removed, so the folder never
    shows a figure the report does not describe.
    """
    rows = _rows(data)
    out: dict[str, bytes | None] = {}
    for name, make in _MAKERS.items():
        fig = make(data, rows)
        out[name] = None if fig is None else _png(fig)
    blocks = _blocks(data, rows, [name for name, png in out.items() if png is not None])
    out["report.md"] = _to_markdown(blocks).encode("utf-8")
    out["report.html"] = _to_html(blocks, data.title).encode("utf-8")
    return out


def write_report(out_dir: str | Path, data: ReportData) -> list[Path]:
    """Write :func:`render_report`'s files into the local folder ``out_dir`` (created if needed).

    Returns the written paths: PNGs in :data:`FIGURES` order, then report.md, report.html.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_report(data).items():
        if content is None:
            (out / name).unlink(missing_ok=True)
        else:
            (out / name).write_bytes(content)
            written.append(out / name)
    return written
