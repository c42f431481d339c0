"""Paragraph pools for the demo corpus, extracted from text already on the machine.

Everything comes from Python 3.11 itself or from installed packages (PSF, BSD,
MIT and Apache licensed), so the demo corpus builds offline on any machine that
ran the project's setup.  Every source is optional: a module that fails to
import or a file that is absent is recorded in ``SourcePools.missing`` and the
corpus is built from the rest.

The pools depend on the installed versions (docstrings change between
releases), so ``SourcePools.fingerprint`` identifies them; two machines with
the same fingerprint generate byte-identical corpora.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import logging
import re
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The module lists are explicit and short on purpose: extraction must take a few
# seconds, and each domain must keep a vocabulary of its own.
# fmt: off
DOMAIN_SOURCES: dict[str, tuple[str, ...]] = {
    "language_reference": ("pydoc_data.topics", "builtins"),
    "text_processing": ("re", "string", "textwrap", "difflib", "unicodedata", "codecs", "html",
                        "html.parser", "gettext", "locale", "shlex", "stringprep",
                        "charset_normalizer", "pygments.lexer", "pygments.formatter",
                        "pygments.util", "idna"),
    "numerics": ("math", "cmath", "statistics", "decimal", "fractions", "random", "numbers",
                 "numpy", "numpy.linalg", "numpy.fft", "numpy.polynomial"),
    "networking": ("socket", "ssl", "http", "http.client", "http.server", "http.cookies",
                   "urllib.request", "urllib.parse", "smtplib", "ftplib", "imaplib", "poplib",
                   "ipaddress", "socketserver", "xmlrpc.client", "http.cookiejar",
                   "email.message", "requests", "requests.sessions", "requests.adapters"),
    "filesystems": ("os", "os.path", "pathlib", "shutil", "glob", "fnmatch", "tempfile",
                    "filecmp", "zipfile", "tarfile", "io", "stat", "mmap", "fsspec", "fsspec.spec"),
    "concurrency": ("threading", "multiprocessing", "multiprocessing.pool", "concurrent.futures",
                    "multiprocessing.managers", "multiprocessing.shared_memory", "asyncio",
                    "asyncio.streams", "queue", "sched", "subprocess", "selectors", "contextvars"),
    "data_formats": ("json", "csv", "pickle", "xml.etree.ElementTree", "xml.dom.minidom",
                     "configparser", "plistlib", "base64", "binascii", "struct", "tomllib",
                     "yaml", "pyarrow.parquet", "pyarrow.csv", "pyarrow.json", "mailbox", "gzip",
                     "lzma", "zlib"),
    "dataframes": ("pandas", "pyspark.sql", "pyspark.sql.functions"),
    "plotting": ("matplotlib.pyplot", "matplotlib.axes", "matplotlib.figure"),
    "testing": ("unittest", "unittest.mock", "doctest", "pytest", "pdb", "timeit", "trace",
                "cProfile", "pstats", "faulthandler"),
    "legal": ("licenses:",),  # Python's LICENSE.txt and every *.dist-info licence file
}
# fmt: on

# Objects re-exported from these modules carry generic docstrings that would
# blur the domains (e.g. every enum's "An enumeration.").
_GENERIC_MODULES = {"builtins", "typing", "abc", "enum", "functools", "collections"}

# Non-English prose shipped in the stdlib test package: (relative path, lang).
# cp949/johab/big5hkscs/hz samples are symbol soup, so they are left out.
_FOREIGN_FILES: tuple[tuple[str, str], ...] = (
    ("cjkencodings/big5-utf8.txt", "zh"),
    ("cjkencodings/gb18030-utf8.txt", "zh"),
    ("cjkencodings/gb2312-utf8.txt", "zh"),
    ("cjkencodings/euc_jisx0213-utf8.txt", "ja"),
    ("cjkencodings/euc_jp-utf8.txt", "ja"),
    ("cjkencodings/euc_kr-utf8.txt", "ko"),
    ("xmltestdata/expat224_utf8_bug.xml", "zh"),
)
_TEST_PACKAGE = "test"  # stdlib tests; Debian-style Pythons often leave them out
_UNSPACED_LANGS = {"zh", "ja"}  # wrapped lines join without a space

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
_FOREIGN_SENTENCE_END = re.compile(r"(?<=[。！？!?:])|(?<=[.])\s+")
_RST_ROLE = re.compile(r"(?::[a-z:]+:)?`+~?\.?([^`]+)`+")
_DROP_LINE = re.compile(
    r"^\s*(\.\. |:\w[\w ]*:|[-=~^*#`]{3,}\s*$|[\w.*, ]+ : \S.*$|"
    r"(Parameters|Returns|Yields|Raises|Examples?|See Also|Notes|References|Attributes|"
    r"Methods|Other Parameters)\s*$)"
)
_CODE_MARK = re.compile(r"^\s*(>>>|\.\.\.|\$ |In \[|\w+ ::=)|::=|\{\s*$")


@dataclass(frozen=True)
class SourcePools:
    """Deduplicated paragraphs per domain, each paragraph split into sentences."""

    domains: dict[str, tuple[tuple[str, ...], ...]]
    foreign: dict[str, tuple[str, ...]]  # lang -> sentences
    missing: tuple[str, ...]
    fingerprint: str

    def paragraph_counts(self) -> dict[str, int]:
        """Unique source paragraphs per domain (the corpus' diversity budget)."""
        return {d: len(p) for d, p in self.domains.items()}


def clean_paragraphs(text: str) -> list[str]:
    """Split docstring-like text into prose paragraphs, dropping code and markup."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or any(_CODE_MARK.search(ln) for ln in lines):
            continue
        kept = [ln.strip() for ln in lines if ln.strip() and not _DROP_LINE.match(ln)]
        para = " ".join(kept)
        para = _RST_ROLE.sub(r"\1", para).replace("**", "")
        para = re.sub(r"\s+", " ", para).strip()
        words = para.split()
        if len(words) < 12 or para[-1] not in ".!?:)":
            continue
        letters = sum(c.isalpha() or c == " " for c in para)
        if letters / len(para) >= 0.85:
            out.append(para)
    return out


def _docstrings(module: object) -> list[str]:
    """Module, public function, class and method docstrings in a stable order."""
    docs = [inspect.getdoc(module) or ""]
    seen: set[int] = set()
    for name in sorted(vars(module)):
        obj = getattr(module, name, None)
        if name.startswith("_") or id(obj) in seen or inspect.ismodule(obj):
            continue
        seen.add(id(obj))
        owner = getattr(obj, "__module__", None) or ""
        if owner.split(".")[0] in _GENERIC_MODULES and module.__name__ != "builtins":
            continue
        if inspect.isclass(obj) or callable(obj):
            docs.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            for attr in sorted(vars(obj)):
                member = vars(obj)[attr]
                if not attr.startswith("_") and id(member) not in seen:
                    seen.add(id(member))
                    docs.append(getattr(member, "__doc__", None) or "")
    return [inspect.cleandoc(d) for d in docs if d]


def _licence_texts() -> list[str]:
    """Licence files of Python itself and of every installed distribution."""
    paths = sysconfig.get_paths()
    files = [Path(paths["stdlib"]) / "LICENSE.txt"]
    for root in sorted({Path(paths["purelib"]), Path(paths["platlib"])}):
        for pattern in ("LICEN[CS]E*", "COPYING*", "NOTICE*"):
            files.extend(sorted(root.glob(f"*.dist-info/**/{pattern}")))
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files if f.is_file()]
    if not texts:
        raise FileNotFoundError("no licence files found")
    return texts


def _source_texts(source: str) -> list[str]:
    if source == "licenses:":
        return _licence_texts()
    module = importlib.import_module(source)
    if source == "pydoc_data.topics":
        return [module.topics[k] for k in sorted(module.topics)]
    return _docstrings(module)


def split_sentences(paragraph: str) -> tuple[str, ...]:
    """English sentence split; good enough for windowing prose, not for linguistics."""
    return tuple(s for s in _SENTENCE_END.split(paragraph) if s)


def _foreign_sentences() -> tuple[dict[str, tuple[str, ...]], list[str]]:
    spec = importlib.util.find_spec(_TEST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return {}, ["stdlib test package (non-English samples)"]
    base = Path(list(spec.submodule_search_locations)[0])
    pools: dict[str, dict[str, None]] = {}
    missing = []
    for rel, lang in _FOREIGN_FILES:
        try:
            raw = (base / rel).read_text(encoding="utf-8")
        except OSError:
            missing.append(f"test/{rel}")
            continue
        if rel.endswith(".xml"):  # unpunctuated classical prose in an attribute
            raw = "".join(re.findall(r"[\u4e00-\u9fff]+", raw)) + "。"
        sep = "" if lang in _UNSPACED_LANGS else " "
        text = sep.join(ln.strip() for ln in raw.splitlines() if ln.strip())
        for sent in _FOREIGN_SENTENCE_END.split(text):
            # Unterminated pieces are symbol-soup test lines, not prose.
            sent = sent.strip()
            if sum(ord(c) > 127 for c in sent) >= 4 and sent[-1] in "。！？!?.:":
                # Some samples mix scripts (gb18030 ends in Korean): label by script.
                if re.search(r"[\uac00-\ud7af]", sent):
                    sent_lang = "ko"
                elif re.search(r"[\u3040-\u30ff]", sent):
                    sent_lang = "ja"
                else:
                    sent_lang = lang
                pools.setdefault(sent_lang, {})[sent] = None
    return {lang: tuple(s) for lang, s in pools.items()}, missing


@functools.cache
def load_pools() -> SourcePools:
    """Extract all pools once per process (a few seconds); later calls are free."""
    seen: set[str] = set()
    domains: dict[str, tuple[tuple[str, ...], ...]] = {}
    missing: list[str] = []
    for domain, sources in DOMAIN_SOURCES.items():
        paragraphs: list[tuple[str, ...]] = []
        for source in sources:
            try:
                texts = _source_texts(source)
            except Exception as exc:  # any failure (import, missing file) drops one source
                missing.append(f"{domain}:{source} ({type(exc).__name__})")
                continue
            for text in texts:
                for para in clean_paragraphs(text):
                    # First domain wins, so a paragraph never carries two labels.
                    if para not in seen:
                        seen.add(para)
                        paragraphs.append(split_sentences(para))
        if len(paragraphs) >= 20:
            domains[domain] = tuple(paragraphs)
        else:
            missing.append(f"domain {domain} (only {len(paragraphs)} paragraphs)")
    foreign, foreign_missing = _foreign_sentences()
    missing.extend(foreign_missing)
    digest = hashlib.sha256()
    for domain, paras in domains.items():
        digest.update(domain.encode())
        for p in paras:
            digest.update("\x1f".join(p).encode())
    for lang, sents in sorted(foreign.items()):
        digest.update(lang.encode() + "\x1f".join(sents).encode())
    for item in missing:
        log.warning("demo corpus source unavailable: %s", item)
    return SourcePools(domains, foreign, tuple(missing), digest.hexdigest()[:16])


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    pools = load_pools()
    print(f"extracted in {time.perf_counter() - t0:.1f}s, fingerprint {pools.fingerprint}")
    for d, n in pools.paragraph_counts().items():
        chars = sum(len(" ".join(p)) for p in pools.domains[d])
        print(f"{d:20s} {n:6d} paragraphs {chars / 1e3:8.0f} KB")
    for lang, sents in pools.foreign.items():
        print(f"foreign {lang}: {len(sents)} sentences, {sum(map(len, sents))} chars")
    print("missing:", pools.missing or "none", file=sys.stderr)
