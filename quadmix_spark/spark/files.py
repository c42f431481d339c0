"""Files beside the tables (manifests, reports, θ*, mixture files, experiment outputs), by path or URI.

One small API for every driver-side file a job writes or reads, whatever the storage::

    files.write_text(files.join(out, "manifest.json"), text)
    files.read_text(uri), files.write_bytes(uri, data), files.read_bytes(uri)
    files.exists(uri), files.makedirs(uri), files.delete(uri), files.glob(pattern)
    with files.open(uri, "wb") as fh: fig.savefig(fh, format="png")
    with files.local_file(uri) as path: booster.save_model(str(path))    # libraries that want a path
    with files.local_folder(uri) as folder: ...                         # a folder of such files
    with files.local_copy(uri) as path: fasttext.load_model(str(path))  # and to read one
    with files.local_copies(model, meta) as (m, _): Booster.load(m)       # files read together

A plain path (``data/selections``, ``/mnt/x``, ``out dir/with spaces``) is the driver's local disk
and is written with Python's own I/O, relative to the working directory; no JVM is needed. A URI
with a scheme (``file://``, ``hdfs://``, ``s3a://``, ``abfss://``, ``gs://``) goes through Hadoop's
``FileSystem`` in the active SparkSession's JVM: the same connectors, credentials and
``spark.hadoop.*`` settings the Delta tables next to these files are written with, so any URI a
table can live at works here too, with no second client library to install and configure.
(fsspec would need its own backend per store, its own credentials, and knows ``s3a://`` and
HDFS only through extra packages.)

Writes replace the file whole: the data goes to a hidden temporary file in the same folder, which
is then renamed over the target, so a reader never sees half a file. Files are held in memory
(they are small: JSON, YAML, PNG, text), never data sets.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit


class FileSystemError(OSError):
    """A path or URI that cannot be read or written here."""


def scheme(uri: str | Path) -> str:
    """The URI scheme (``''`` for a plain local path; a Windows drive letter is no scheme)."""
    text = str(uri)
    found = urlsplit(text).scheme if "://" in text or text.startswith("file:") else ""
    return "" if len(found) == 1 else found.lower()


def is_local_path(uri: str | Path) -> bool:
    """True for a plain path on the driver's disk (no scheme): Python I/O, no JVM."""
    return scheme(uri) == ""


def join(base: str | Path, *parts: str) -> str:
    """``base/part/...`` for a path or a URI (``pathlib`` would turn ``file:///x`` into ``file:/x``)."""
    if is_local_path(base):
        return str(Path(base).joinpath(*parts))
    text = str(base).rstrip("/")
    return "/".join([text, *(p.strip("/") for p in parts)])


def qualify(uri: str | Path) -> str:
    """A path as every process sees it: URIs as given, local paths made absolute (not resolved:
    a symlinked folder keeps its name)."""
    return str(uri) if not is_local_path(uri) else os.path.abspath(uri)


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Replace ``uri`` with ``data``, creating its folder."""
    if is_local_path(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return
    jvm, fs, path = _hadoop(uri)
    tmp = jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.{uuid.uuid4().hex[:8]}.tmp")
    out = fs.create(tmp, True)
    try:
        out.write(bytearray(data))
    finally:
        out.close()
    # HDFS's rename does not replace an existing file (it returns false): remove it first.
    if not fs.rename(tmp, path):
        fs.delete(path, False)
        if not fs.rename(tmp, path):
            fs.delete(tmp, False)
            raise FileSystemError(f"could not write {uri}")


def write_text(uri: str | Path, text: str) -> None:
    """Replace ``uri`` with ``text`` (UTF-8)."""
    write_bytes(uri, text.encode("utf-8"))


def read_bytes(uri: str | Path) -> bytes:
    if is_local_path(uri):
        return Path(uri).read_bytes()
    jvm, fs, path = _hadoop(uri)
    if not fs.exists(path):
        raise FileNotFoundError(str(uri))
    stream = fs.open(path)
    try:
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def read_text(uri: str | Path) -> str:
    return read_bytes(uri).decode("utf-8")


def exists(uri: str | Path) -> bool:
    if is_local_path(uri):
        return Path(uri).exists()
    _, fs, path = _hadoop(uri)
    return bool(fs.exists(path))


def is_file(uri: str | Path) -> bool:
    if is_local_path(uri):
        return Path(uri).is_file()
    _, fs, path = _hadoop(uri)
    return bool(fs.exists(path)) and bool(fs.getFileStatus(path).isFile())


def makedirs(uri: str | Path) -> None:
    """Create the folder ``uri`` and its parents (nothing when it exists)."""
    if is_local_path(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        return
    _, fs, path = _hadoop(uri)
    fs.mkdirs(path)


def delete(uri: str | Path, recursive: bool = False) -> bool:
    """Remove a file (or, with ``recursive``, a folder); False when there was nothing."""
    if is_local_path(uri):
        path = Path(uri)
        if path.is_dir() and not path.is_symlink():
            if not recursive:
                raise FileSystemError(f"{uri} is a folder (pass recursive=True)")
            import shutil

            shutil.rmtree(path)
            return True
        if path.exists() or path.is_symlink():
            path.unlink()
            return True
        return False
    _, fs, path = _hadoop(uri)
    return bool(fs.delete(path, recursive))


def glob(pattern: str | Path) -> list[str]:
    """The paths matching a glob (``*``, ``?``, ``[...]``), sorted."""
    if is_local_path(pattern):
        import glob as _glob

        return sorted(_glob.glob(str(pattern)))
    _, fs, path = _hadoop(pattern)
    found = fs.globStatus(path) or []
    return sorted(str(status.getPath().toString()) for status in found)


@contextlib.contextmanager
def open(uri: str | Path, mode: str = "rb") -> Iterator[io.BytesIO]:  # noqa: A001 - the obvious name
    """A binary file object: ``"rb"`` holds the whole file; ``"wb"`` writes it on a clean exit."""
    if mode == "rb":
        yield io.BytesIO(read_bytes(uri))
    elif mode == "wb":
        buffer = io.BytesIO()
        yield buffer
        write_bytes(uri, buffer.getvalue())
    else:
        raise ValueError(f"mode must be 'rb' or 'wb', not {mode!r}")


def parent(uri: str | Path) -> str:
    """The folder holding ``uri`` (``s3a://b/x/m.json`` → ``s3a://b/x``; ``m.json`` → ``.``)."""
    if is_local_path(uri):
        return str(Path(uri).parent)
    return str(uri).rstrip("/").rsplit("/", 1)[0]


def basename(uri: str | Path) -> str:
    """The last part of a path or URI (``s3a://b/x/m.json`` → ``m.json``)."""
    return Path(uri).name if is_local_path(uri) else urlsplit(str(uri)).path.rstrip("/").rsplit("/", 1)[-1]


@contextlib.contextmanager
def local_file(uri: str | Path) -> Iterator[Path]:
    """A local path to write ``uri`` through, for libraries that only take a file name.

    A local ``uri`` is itself (its folder created); for a URI, a file of the same name in a
    temporary folder, copied to ``uri`` on a clean exit when something was written there.
    """
    if is_local_path(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="quadmix-") as tmp:
        path = Path(tmp) / basename(uri)
        yield path
        if path.is_file():
            write_bytes(uri, path.read_bytes())


@contextlib.contextmanager
def local_folder(uri: str | Path) -> Iterator[Path]:
    """A local folder whose files end up under ``uri`` (the folder itself when ``uri`` is local;
    else a temporary one whose files are copied on a clean exit, subfolders kept)."""
    if is_local_path(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="quadmix-") as tmp:
        yield Path(tmp)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                write_bytes(join(uri, *path.relative_to(tmp).parts), path.read_bytes())


@contextlib.contextmanager
def local_copy(uri: str | Path) -> Iterator[Path]:
    """A local path with ``uri``'s content, to read with libraries that only take a file name
    (the file itself when local; a temporary copy of the same name otherwise)."""
    if is_local_path(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="quadmix-") as tmp:
        path = Path(tmp) / basename(uri)
        path.write_bytes(read_bytes(uri))
        yield path


@contextlib.contextmanager
def local_copies(*uris: str | Path) -> Iterator[list[Path]]:
    """:func:`local_copy` of files that must sit side by side (a model and its ``.json``): local
    paths as they are, else copies of the same names in one temporary folder."""
    if all(map(is_local_path, uris)):
        yield [Path(u) for u in uris]
        return
    with tempfile.TemporaryDirectory(prefix="quadmix-") as tmp:
        paths = [Path(tmp) / basename(u) for u in uris]
        for uri, path in zip(uris, paths, strict=True):
            path.write_bytes(read_bytes(uri))
        yield paths


def _hadoop(uri: str | Path):
    """(jvm, FileSystem, Path) of a URI, through the active SparkSession."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise FileSystemError(
            f"{uri}: a URI is read and written through Spark's Hadoop FileSystem, and no SparkSession "
            "is active (use a local path, or run the job with Spark)"
        )
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(str(uri))
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    if scheme(uri) == "file":
        # The configured file:// class checksums (a .crc beside every file): the raw one does not.
        fs = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
        fs.initialize(jvm.java.net.URI("file:///"), conf)
    else:
        fs = path.getFileSystem(conf)
    return jvm, fs, path
