"""The package layout's import rules (docs/layout.md), read from the source with ``ast``.

Every ``import`` counts, also those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_MODULES = {"__init__", "cli", "config", "report"}

#: folder (or shared leaf) → the folders it may import besides itself; "quadmix_spark" is the
#: package's own ``__init__`` (``__version__``).
ALLOWED = {
    "quadmix_spark": set(),
    "core": set(),
    "udfs": set(),
    # core's YAML loader (one reader for params and config files); udfs' annotator registry, which
    # declares each annotator kind's keys
    "config": {"core", "udfs"},
    "report": {"core"},
    "demo": set(),
    "spark": {"quadmix_spark", "core", "config"},
    "search": {"core", "config"},
    "proxy": {"quadmix_spark", "core", "config", "udfs", "spark", "search"},
    "mixing": {"core", "config", "udfs", "search", "proxy"},
    "pipeline": {"quadmix_spark", "core", "config", "report", "udfs", "spark", "search", "proxy", "mixing"},
    "cli": {"config", "spark", "demo", "pipeline"},
    "jobs": {"cli"},
}
#: the registries (one name → class table per kind a user may add; docs/layout.md): config
#: validation and the command line ask them, so config and cli may import them. Each imports only
#: core and its own folder, and names its heavy classes as "module:Class" (imported on first use).
REGISTRIES = {"quadmix_spark.proxy.trainers", "quadmix_spark.mixing.reweighters"}
REGISTRY_USERS = {"config", "cli"}
#: folders whose code, with everything it imports of ours, must run without Spark.
NO_SPARK = {"core", "search", "mixing"}
SPARK_PACKAGES = {"pyspark", "delta"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layout unit of one of our modules: its folder, or the shared leaf it is."""
    parts = module.split(".")
    if parts[0] in ("udfs", "jobs"):
        return parts[0]
    return parts[1] if len(parts) > 1 else parts[0]


def sources(root: Path) -> dict[str, Path]:
    files = [*root.glob("quadmix_spark/**/*.py"), *root.glob("udfs/*.py"), *root.glob("jobs/*.py")]
    return {module_name(p, root): p for p in files}


OPTIONAL_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception"}


def _guarded(tree: ast.AST) -> set[int]:
    """Import nodes inside a ``try`` whose handler catches their failure: optional dependencies
    (e.g. ``udfs.models`` asks Spark for a shipped model's path only where Spark is there)."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = {ast.unparse(h.type) if h.type else "Exception" for h in node.handlers}
            if caught & OPTIONAL_GUARDS:
                nodes |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return nodes


def imports(path: Path, module: str, is_package: bool, optional: bool = True) -> list[str]:
    """Every module name ``path`` imports (absolute; relative imports resolved); without
    ``optional``, leave out imports inside a ``try`` that catches their failure."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(), str(path))
    skip = set() if optional else _guarded(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return found


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(our module → our modules it imports, our module → third-party top-level packages)."""
    mods = sources(root)
    ours: dict[str, set[str]] = {}
    third: dict[str, set[str]] = {}
    for name, path in mods.items():
        ours[name], third[name] = set(), set()
        is_package = path.name == "__init__.py"
        for target in imports(path, name, is_package):
            # ``from pkg import x``: an edge to pkg.x when it is a module, else to pkg
            if target in mods and target != name:  # all our modules, none of theirs
                ours[name].add(target)
        # third-party packages a module needs: an optional import (caught when missing) is not one
        third[name] = {t.split(".")[0] for t in imports(path, name, is_package, optional=False)}
        third[name] -= {"quadmix_spark", "udfs", "jobs"}
    return ours, third


def violations(ours: dict[str, set[str]], third: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(ours.items()):
        for target in sorted(targets):
            a, b = unit(module), unit(target)
            if a in REGISTRY_USERS and target in REGISTRIES:
                continue
            if a != b and b not in ALLOWED.get(a, set()):
                found.append(f"{module} imports {target}: {a}/ may not import {b}/")
    for module in sorted(ours):
        if unit(module) not in NO_SPARK:
            continue
        seen, todo = set(), [module]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo += ours.get(m, ())
            if third.get(m, set()) & SPARK_PACKAGES:
                found.append(f"{module} needs Spark through {m}")
                break
    return found


def cycles(ours: dict[str, set[str]]) -> list[list[str]]:
    """Import circles (strongly connected components of more than one module, or self-loops)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in ours.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in ours.get(v, ()):
                found.append(sorted(component))

    for v in sorted(ours):
        if v not in index:
            visit(v)
    return found


def test_every_import_follows_the_layout():
    ours, third = import_graph(ROOT)
    assert violations(ours, third) == []


def test_registries_import_only_core_and_their_folder():
    ours, third = import_graph(ROOT)
    for registry in sorted(REGISTRIES):
        units = {unit(m) for m in ours[registry]}
        assert units <= {"core", unit(registry)}, (registry, ours[registry])
        assert not third[registry] & (SPARK_PACKAGES | {"torch"}), (registry, third[registry])


def test_no_import_circles():
    ours, _ = import_graph(ROOT)
    assert cycles(ours) == []


def test_the_package_top_holds_only_the_shared_leaves():
    top = {p.stem for p in (ROOT / "quadmix_spark").glob("*.py")}
    assert top == TOP_LEVEL_MODULES
    folders = {p.name for p in (ROOT / "quadmix_spark").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(ALLOWED)


def test_the_graph_sees_lazy_and_relative_imports():
    ours, third = import_graph(ROOT)
    assert "quadmix_spark.pipeline.annotate" in ours["quadmix_spark.cli"]  # inside a function
    assert "quadmix_spark.proxy.estimator" in ours["quadmix_spark.proxy.tinylm"]  # relative
    assert "torch" in third["quadmix_spark.proxy.tinylm"]


def test_the_rules_catch_a_broken_layout(tmp_path: Path):
    files = {
        "quadmix_spark/__init__.py": "",
        "quadmix_spark/core/__init__.py": "",
        "quadmix_spark/core/maths.py": "def f():\n    from quadmix_spark.spark import io\n",
        "quadmix_spark/spark/__init__.py": "",
        "quadmix_spark/spark/io.py": "import pyspark\nfrom quadmix_spark.core import maths\n",
        "quadmix_spark/mixing/__init__.py": "",
        "quadmix_spark/mixing/law.py": "from ..proxy import runs\n",
        "quadmix_spark/proxy/__init__.py": "",
        "quadmix_spark/proxy/runs.py": "from quadmix_spark.spark import io\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    ours, third = import_graph(tmp_path)
    found = violations(ours, third)
    assert "quadmix_spark.core.maths imports quadmix_spark.spark.io: core/ may not import spark/" in found
    assert "quadmix_spark.mixing.law needs Spark through quadmix_spark.spark.io" in found
    assert cycles(ours) == [["quadmix_spark.core.maths", "quadmix_spark.spark.io"]]


#: calls that write a file by a local path; in pipeline/ they must go through spark/files.py.
LOCAL_WRITES = {"write_text", "write_bytes", "mkdir", "to_file", "save_model", "save", "save_params"}
LOCAL_WRITES |= {"unlink"}
#: files' helpers that hand out a local path and copy what was written there to the path or URI.
LOCAL_PATH_HELPERS = {"local_file", "local_folder"}


def local_writes(path: Path) -> list[str]:
    """``line: call`` of each file write that bypasses the filesystem layer (spark/files.py)."""
    tree = ast.parse(path.read_text(), str(path))
    through_helper: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr in LOCAL_PATH_HELPERS
            for item in node.items
        ):
            through_helper |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in through_helper:
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in LOCAL_WRITES:
            receiver = func.value
            # ``df.write....save(path)``: a Spark writer, which takes URIs itself.
            spark_writer = any(isinstance(n, ast.Attribute) and n.attr == "write" for n in ast.walk(receiver))
            if not (isinstance(receiver, ast.Name) and receiver.id == "files") and not spark_writer:
                found.append(f"{node.lineno}: {ast.unparse(func)}")
        elif isinstance(func, ast.Name) and func.id in ("open", "save_params"):
            mode = node.args[1] if len(node.args) > 1 else None
            writes = isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax")
            if func.id == "save_params" or writes:
                found.append(f"{node.lineno}: {func.id}")
    return sorted(found, key=lambda f: int(f.split(":")[0]))


def test_pipeline_writes_files_only_through_the_filesystem_layer():
    """Files beside the tables may live at a URI: pathlib and open() would write the driver's disk."""
    found = {p.name: local_writes(p) for p in sorted((ROOT / "quadmix_spark" / "pipeline").glob("*.py"))}
    assert {name: calls for name, calls in found.items() if calls} == {}


def test_the_write_rule_catches_a_local_write(tmp_path: Path):
    module = tmp_path / "job.py"
    module.write_text(
        "from pathlib import Path\n"
        "def run(out, params, fig):\n"
        "    (Path(out) / 'manifest.json').write_text('{}')\n"
        "    with files.local_file(out + '/theta.yaml') as path:\n"
        "        core.save_params(params, path)\n"
        "    files.write_text(out, '{}')\n"
        "    with open(out, 'w') as fh:\n"
        "        fh.write('x')\n"
        "    core.save_params(params, out)\n"
    )
    assert local_writes(module) == [
        "3: (Path(out) / 'manifest.json').write_text",
        "7: open",
        "9: core.save_params",
    ]


@pytest.mark.parametrize(
    "folder", sorted(set(ALLOWED) - {"quadmix_spark", "config", "report", "cli", "jobs"})
)
def test_each_folder_is_documented(folder: str):
    assert f"## `{folder}/`" in (ROOT / "docs" / "layout.md").read_text()


def test_an_import_caught_when_missing_is_optional(tmp_path: Path):
    files = {
        "quadmix_spark/__init__.py": "",
        "quadmix_spark/core/__init__.py": "",
        "quadmix_spark/core/paths.py": "try:\n    import pyspark\nexcept ImportError:\n    pyspark = None\n",
        "quadmix_spark/core/plain.py": "def f():\n    import pyspark\n",
        "quadmix_spark/core/other.py": "try:\n    import pyspark\nexcept KeyError:\n    pass\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    ours, third = import_graph(tmp_path)
    assert violations(ours, third) == [
        "quadmix_spark.core.other needs Spark through quadmix_spark.core.other",
        "quadmix_spark.core.plain needs Spark through quadmix_spark.core.plain",
    ]
