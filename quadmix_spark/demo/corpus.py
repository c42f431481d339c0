"""Deterministic multi-domain demo corpus with labelled quality defects.

Documents are built from real prose that ships with Python and the installed
packages (see ``demo_sources``), so the corpus needs no download.  Document
``i`` depends only on ``(seed, i)`` and the source pools, so any range can be
generated independently and a 1M+ corpus can be written in parallel chunks
with byte-identical results.

Ground truth per document: ``true_domain``, ``quality`` ("high" clean, "low"
defective), ``defect`` ("none" or one of ``DEFECTS``) and ``lang``.  URLs are
plausible, with topical slugs like real ones, but carry no quality signal.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import math
import multiprocessing as mp
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from quadmix_spark.demo.sources import DOMAIN_SOURCES, load_pools

DOMAINS: tuple[str, ...] = tuple(DOMAIN_SOURCES)
# Real crawls are imbalanced; a uniform mix would make domain reweighting moot.
DOMAIN_WEIGHTS: dict[str, float] = dict(
    zip(DOMAINS, (0.14, 0.06, 0.13, 0.08, 0.08, 0.07, 0.08, 0.14, 0.08, 0.07, 0.07), strict=True)
)
# fmt: off
# Share of each defect among defective docs; boilerplate dominates real crawls.
DEFECT_WEIGHTS: dict[str, float] = {
    "boilerplate": 0.22, "keyword_spam": 0.14, "repeated_lines": 0.14, "truncated": 0.14,
    "shuffled_words": 0.12, "non_english": 0.10, "very_short": 0.125, "very_long": 0.015,
}
DEFECTS: tuple[str, ...] = tuple(DEFECT_WEIGHTS)
MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json", "invalid_utf8", "null_text", "empty_text", "numeric_text", "duplicate_id",
)
# Strings that only injected boilerplate contains (licence prose does contain
# "All rights reserved", so that is deliberately not a marker).
BOILERPLATE_MARKERS: tuple[str, ...] = (
    "Home | About | Contact", "Accept all cookies", "Skip to main content",
    "Subscribe to our newsletter", "Share this article:",
)
VERY_LONG_MIN_CHARS = 102_400
FIELDS: tuple[str, ...] = ("id", "url", "text", "true_domain", "quality", "defect", "lang")

_NAV = tuple("Home | About | Contact" + tail for tail in ("", " | Blog", " | Docs", " | Careers"))
_COOKIES = (
    "We use cookies to improve your experience on our site. By continuing to browse you "
    "agree to our use of cookies. Accept all cookies | Manage preferences",
    "This website uses cookies to ensure you get the best experience. "
    "Accept all cookies | Learn more",
)
_SPAM_WORDS = ("best", "free", "cheap", "download", "online", "top", "2024", "review", "guide",
               "buy", "deal", "easy", "now")
_STUBS = ("Page not found.", "Loading...", "403 Forbidden", "Click here to continue reading.",
          "Please enable JavaScript.", "Redirecting...")
_HOST_A = ("blue", "quick", "open", "bright", "silent", "north", "pixel", "river", "iron", "maple")
_HOST_B = ("pine", "forge", "notes", "byte", "harbor", "lab", "stack", "garden", "works", "hub")
_TLDS = ("com", "org", "net", "io", "dev", "info")
# fmt: on


class _Rand:
    """Buffered uniforms from one per-document generator: numpy per-call overhead
    dominates otherwise, and the buffer keeps draws a pure function of (seed, i)."""

    __slots__ = ("rng", "_buf", "_pos")

    def __init__(self, *key: int) -> None:
        self.rng = np.random.default_rng(key)
        self._buf: list[float] = []
        self._pos = 0

    def u(self) -> float:
        if self._pos == len(self._buf):
            self._buf, self._pos = self.rng.random(64).tolist(), 0
        self._pos += 1
        return self._buf[self._pos - 1]

    def below(self, n: int) -> int:
        return min(int(self.u() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)

    def pick(self, seq: Sequence):
        return seq[self.below(len(seq))]

    def lognormal(self, median: float, sigma: float) -> float:
        z = math.sqrt(-2.0 * math.log(1.0 - self.u())) * math.cos(2.0 * math.pi * self.u())
        return median * math.exp(sigma * z)


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


@functools.cache
def _plan() -> tuple:
    """Domains, defects and languages actually available in this environment."""
    pools = load_pools()
    domains = tuple(d for d in DOMAINS if d in pools.domains)
    langs = tuple(sorted(pools.foreign))
    defects = tuple(d for d in DEFECTS if d != "non_english" or langs)
    return (
        domains,
        _cumulative([DOMAIN_WEIGHTS[d] for d in domains]),
        defects,
        _cumulative([DEFECT_WEIGHTS[d] for d in defects]),
        langs,
        _cumulative([sum(map(len, pools.foreign[lang])) for lang in langs]),
    )


@functools.cache
def _keywords() -> dict[str, tuple[str, ...]]:
    """Per domain, words far more frequent there than elsewhere: what a spammer stuffs."""
    counts = {
        d: Counter(w for p in paras for s in p for w in re.findall(r"[a-z]{5,}", s.lower()))
        for d, paras in load_pools().domains.items()
    }
    total = sum(counts.values(), Counter())
    out = {}
    for d, c in counts.items():
        scored = sorted((-(n / total[w]) * math.log(n), w) for w, n in c.items() if n >= 5)
        out[d] = tuple(w for _, w in scored[:40])
    return out


def _prose(r: _Rand, paras: Sequence[tuple[str, ...]], target: int, contiguous: bool) -> list[str]:
    """Passages (sentence windows of paragraphs) until ``target`` chars are reached.

    Windows rather than whole paragraphs make exact or near duplicate documents
    rare even when a domain pool is reused thousands of times.
    """
    out: list[str] = []
    size, p = 0, r.below(len(paras))
    while size < target or len(out) < 2:  # one passage alone recurs too often at 1M docs
        sents = paras[p]
        a, b = 0, len(sents)
        if b > 1 and r.u() < 0.65:
            a = r.below(b)
            b = r.between(a + 1, b)
        passage = " ".join(sents[a:b])
        out.append(passage)
        size += len(passage) + 2
        # Contiguous runs skip a paragraph now and then; a fixed stride would make
        # every run from the same start identical.
        p = (p + 1 + (r.u() < 0.35)) % len(paras) if contiguous else r.below(len(paras))
    return out


def _boilerplate(r: _Rand, paras, body_target: int) -> str:
    site = f"{r.pick(_HOST_A).title()}{r.pick(_HOST_B).title()}"
    parts = ["Skip to main content"] if r.u() < 0.6 else []
    parts += [r.pick(_NAV), f"{site} | Search | Login | Register"]
    if r.u() < 0.7:
        parts.append(r.pick(_COOKIES))
    parts += _prose(r, paras, body_target, contiguous=True)
    if r.u() < 0.6:
        parts.append("Share this article: Facebook | Twitter | LinkedIn | Email")
    if r.u() < 0.6:
        titles = [" ".join(r.pick(paras)[0].split()[:6]).rstrip(".,:") for _ in range(r.between(3, 6))]
        parts.append("Related posts:\n" + "\n".join(f"» {t}…" for t in titles))
    if r.u() < 0.5:
        parts.append("Subscribe to our newsletter and never miss an update! Enter your email: [Subscribe]")
    parts.append(
        f"© {r.between(2012, 2024)} {site}. All rights reserved. Privacy Policy | Terms of Use | Sitemap"
    )
    return "\n\n".join(parts)


def _keyword_spam(r: _Rand, domain: str, paras) -> str:
    kws = [r.pick(_keywords()[domain]) for _ in range(r.between(3, 6))]
    title = f"{kws[0]} {kws[1]} - best {kws[0]} free {kws[-1]} download {r.between(2015, 2024)}"
    spam = " ".join(r.pick(kws) if r.u() < 0.75 else r.pick(_SPAM_WORDS) for _ in range(r.between(60, 400)))
    parts = [title] + (_prose(r, paras, r.between(100, 600), True) if r.u() < 0.6 else []) + [spam]
    parts.append("Tags: " + ", ".join(f"{k} {r.pick(_SPAM_WORDS)}" for k in kws * 3))
    return "\n\n".join(parts)


def _repeated_lines(r: _Rand, paras, target: int) -> str:
    body = _prose(r, paras, target, contiguous=True)
    if r.u() < 0.5:  # a scraper looping on one line
        line = r.pick(r.pick(paras))
        body.insert(r.below(len(body) + 1), "\n".join([line] * r.between(8, 40)))
        return "\n\n".join(body)
    return "\n\n".join(p for p in body for _ in range(r.between(3, 6)))  # duplicated blocks


def _truncated(r: _Rand, paras, target: int) -> str:
    text = "\n\n".join(_prose(r, paras, target, contiguous=True))
    words = text[: int(len(text) * (0.3 + 0.6 * r.u()))].split(" ")[:-1]
    # Dropping words until the last one ends in a letter or digit guarantees the
    # cut lands mid-sentence rather than on a sentence boundary.
    while len(words) > 3 and not words[-1][-1:].isalnum():
        words.pop()
    return " ".join(words)


def _shuffled(r: _Rand, paras, target: int) -> str:
    words = "\n\n".join(_prose(r, paras, target, contiguous=True)).split()
    words = [words[k] for k in r.rng.permutation(len(words))]
    return "\n\n".join(" ".join(words[k : k + 80]) for k in range(0, len(words), 80))


def _non_english(r: _Rand, lang_plan, target: int) -> tuple[str, str]:
    langs, cum = lang_plan
    lang = langs[bisect.bisect_right(cum, r.u() * cum[-1])]
    sents = load_pools().foreign[lang]
    sep = "" if lang in ("zh", "ja") else " "
    start, chosen, size = r.below(len(sents)), [], 0
    for k in range(len(sents)):  # never repeat a sentence inside one document
        if size >= target:
            break
        chosen.append(sents[(start + k) % len(sents)])
        size += len(chosen[-1])
    paras = [sep.join(chosen[k : k + 3]) for k in range(0, len(chosen), 3)]
    return "\n\n".join(paras), lang


def _very_short(r: _Rand, paras) -> str:
    if r.u() < 0.3:
        return r.pick(_STUBS)
    return " ".join(r.pick(r.pick(paras)).split()[: r.between(2, 9)])


def _url(r: _Rand, i: int, paras) -> str:
    # The slug comes from a domain sentence, not from the text, so boilerplate or
    # spam never shows up in the URL: topical like real URLs, but quality-blind.
    slug = "-".join(re.findall(r"[a-z0-9]+", r.pick(paras)[0][:80].lower())[:7])[:60] or "article"
    host = f"{r.pick(_HOST_A)}{r.pick(_HOST_B)}.{r.pick(_TLDS)}"
    return f"https://www.{host}/{r.between(2012, 2024)}/{r.between(1, 12):02d}/{slug}-{i:x}"


def make_document(i: int, seed: int = 0, defect_rate: float = 0.35) -> dict:
    """Document number ``i``; a pure function of (seed, i, defect_rate, pools)."""
    domains, dom_cum, defects, def_cum, langs, lang_cum = _plan()
    r = _Rand(seed, i)
    domain = domains[bisect.bisect_right(dom_cum, r.u() * dom_cum[-1])]
    defect = "none"
    if r.u() < defect_rate:
        defect = defects[bisect.bisect_right(def_cum, r.u() * def_cum[-1])]
    paras = load_pools().domains[domain]
    # Heavy-tailed lengths: median ~1.5 KB, ~3% above 10 KB, rare 50 KB.
    target = int(min(max(r.lognormal(1300.0, 1.0), 300.0), 60_000.0))
    lang = "en"
    if defect == "none":
        text = "\n\n".join(_prose(r, paras, target, contiguous=r.u() < 0.3))
    elif defect == "boilerplate":
        text = _boilerplate(r, paras, r.between(150, 900))
    elif defect == "keyword_spam":
        text = _keyword_spam(r, domain, paras)
    elif defect == "repeated_lines":
        text = _repeated_lines(r, paras, min(target, 3000))
    elif defect == "truncated":
        text = _truncated(r, paras, max(target, 600))
    elif defect == "shuffled_words":
        text = _shuffled(r, paras, target)
    elif defect == "non_english":
        text, lang = _non_english(r, (langs, lang_cum), min(target, 2500))
    elif defect == "very_short":
        text = _very_short(r, paras)
    else:  # very_long: sampled, not contiguous, so it is not one pool replayed
        text = "\n\n".join(_prose(r, paras, VERY_LONG_MIN_CHARS + r.below(100_000), False))
    return {
        "id": f"demo-{i:08d}",
        "url": _url(r, i, paras),
        "text": text,
        "true_domain": domain,
        "quality": "high" if defect == "none" else "low",
        "defect": defect,
        "lang": lang,
    }


def generate_documents(
    n_docs: int, seed: int = 0, defect_rate: float = 0.35, start: int = 0
) -> Iterator[dict]:
    """Yield docs ``start .. start + n_docs - 1``; equal to that slice of a full run."""
    for i in range(start, start + n_docs):
        yield make_document(i, seed, defect_rate)


def _malformed(i: int, seed: int, rate: float, doc: dict, line: bytes) -> tuple[str, bytes] | None:
    """Optionally a bad record to emit after doc ``i``; own stream so good docs never change."""
    u = np.random.default_rng((seed, i, 0x6D616C)).random(2)
    if u[0] >= rate:
        return None
    kind = MALFORMED_KINDS[min(int(u[1] * len(MALFORMED_KINDS)), len(MALFORMED_KINDS) - 1)]
    bad = {**doc, "id": f"{doc['id']}-bad"}
    if kind == "invalid_json":  # a record cut off mid-string
        return kind, json.dumps(bad, ensure_ascii=False)[:60].encode() + b"\n"
    if kind == "invalid_utf8":  # latin-1 bytes inside an otherwise valid record
        return kind, b'{"id": "' + bad["id"].encode() + b'", "text": "caf\xe9 cr\xe8me \xff\xfe"}\n'
    if kind == "duplicate_id":
        return kind, line
    bad["text"] = {"null_text": None, "empty_text": "", "numeric_text": int(u[1] * 1e6)}[kind]
    return kind, json.dumps(bad, ensure_ascii=False).encode() + b"\n"


_COUNT_KEYS = ("domain", "defect", "lang", "malformed", "text_bytes")


def _tally(counts: dict[str, Counter], doc: dict) -> None:
    counts["domain"][doc["true_domain"]] += 1
    counts["defect"][doc["defect"]] += 1
    counts["lang"][doc["lang"]] += 1
    counts["text_bytes"]["total"] += len(doc["text"].encode())


def _write_part(task: tuple) -> dict:
    """Write docs [start, stop) to one part file; returns its counts."""
    path, start, stop, seed, fmt, defect_rate, malformed_rate = task
    counts = {k: Counter() for k in _COUNT_KEYS}
    docs = generate_documents(stop - start, seed, defect_rate, start)
    if fmt == "jsonl":
        with open(path, "wb") as fh:
            for i, doc in enumerate(docs, start):
                line = json.dumps(doc, ensure_ascii=False).encode() + b"\n"
                fh.write(line)
                _tally(counts, doc)
                bad = _malformed(i, seed, malformed_rate, doc, line) if malformed_rate else None
                if bad:
                    counts["malformed"][bad[0]] += 1
                    fh.write(bad[1])
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(f, pa.string()) for f in FIELDS])
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            while batch := list(itertools.islice(docs, 10_000)):  # bounded memory
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                for doc in batch:
                    _tally(counts, doc)
    return {"file": Path(path).name, "bytes": Path(path).stat().st_size, **counts}


def write_corpus(
    out_dir: str | Path,
    n_docs: int = 20_000,
    seed: int = 0,
    fmt: str = "jsonl",
    docs_per_file: int = 50_000,
    defect_rate: float = 0.35,
    malformed_rate: float = 0.0,
    workers: int = 1,
) -> dict:
    """Stream the corpus into ``out_dir/part-NNNNN.{jsonl,parquet}`` and return a summary.

    Part files cover fixed id ranges, so the output is identical for any
    ``workers``.  Malformed records (JSONL only) come on top of the ``n_docs``
    good ones.  Stale part files of the same format are removed first; the
    summary is also written to ``_summary.json`` (Spark skips "_" files).
    """
    if fmt not in ("jsonl", "parquet"):
        raise ValueError(f"fmt must be 'jsonl' or 'parquet', not {fmt!r}")
    if n_docs < 0 or docs_per_file < 1:
        raise ValueError("need n_docs >= 0 and docs_per_file >= 1")
    if malformed_rate and fmt != "jsonl":
        raise ValueError("malformed records can only be injected into JSONL")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"part-*.{fmt}"):
        stale.unlink()
    pools, _, _ = load_pools(), _plan(), _keywords()  # before forking: workers inherit them
    t0 = time.perf_counter()
    starts = range(0, n_docs, docs_per_file)
    tasks = [
        (out / f"part-{k:05d}.{fmt}", s, min(s + docs_per_file, n_docs), seed, fmt)
        + (defect_rate, malformed_rate)
        for k, s in enumerate(starts)
    ]
    if workers > 1 and len(tasks) > 1:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
            parts = list(pool.imap(_write_part, tasks))
    else:
        parts = [_write_part(t) for t in tasks]
    seconds = time.perf_counter() - t0
    merged = {k: sum((p[k] for p in parts), Counter()) for k in _COUNT_KEYS}
    summary = {
        "docs": n_docs,
        "files": [p["file"] for p in parts],
        "format": fmt,
        "seed": seed,
        "bytes": sum(p["bytes"] for p in parts),
        "text_bytes": merged["text_bytes"]["total"],
        "per_domain": dict(sorted(merged["domain"].items())),
        "per_defect": dict(sorted(merged["defect"].items())),
        "per_lang": dict(sorted(merged["lang"].items())),
        "malformed": dict(sorted(merged["malformed"].items())),
        "malformed_total": sum(merged["malformed"].values()),
        "seconds": round(seconds, 3),
        "docs_per_s": round(n_docs / max(seconds, 1e-9), 1),
        "pool_fingerprint": pools.fingerprint,
        "paragraphs_per_domain": pools.paragraph_counts(),
        "missing_sources": list(pools.missing),
    }
    (out / "_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--n-docs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fmt", choices=("jsonl", "parquet"), default="jsonl")
    ap.add_argument("--docs-per-file", type=int, default=50_000)
    ap.add_argument("--defect-rate", type=float, default=0.35)
    ap.add_argument("--malformed-rate", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=1)
    print(json.dumps(write_corpus(**vars(ap.parse_args())), indent=2))
