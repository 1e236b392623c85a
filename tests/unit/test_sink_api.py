"""The sink-author API (``e5_integrations.sinks``): what it exports is what is public, the
built-in sinks use nothing else of the package, and the ingest modules import no circle."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import ModuleType

import e5_integrations.sinks as api

REPO = Path(__file__).resolve().parents[2]
SINKS = REPO / "integrations" / "sinks"
INGEST = REPO / "core" / "ingest"


def test_everything_exported_exists_and_is_documented() -> None:
    assert list(api.__all__) == sorted(api.__all__, key=lambda n: (not n.isupper(), n[0].islower(), n))
    assert len(set(api.__all__)) == len(api.__all__)
    doc = api.__doc__ or ""
    undocumented = [name for name in api.__all__ if f"``{name}``" not in doc and f"{name}`" not in doc]
    assert undocumented == [], "named nowhere in the module docstring"
    for name in api.__all__:
        value = getattr(api, name)  # exists
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_everything_public_is_exported() -> None:
    public = {
        name
        for name, value in vars(api).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }
    assert public == set(api.__all__)


def test_the_exports_are_the_objects_the_core_uses() -> None:
    from e5_integrations import ingest
    from e5_integrations.ingest import _sink

    for name in ("Record", "Hit", "Sink", "CONTENT_HASH_KEY", "Layout", "get_layout", "Document"):
        assert getattr(api, name) is getattr(ingest, name)
    assert api.e5_document_id is _sink.e5_document_id  # the old homes still work


def _e5_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of the package in ``path``: module level, under
    ``TYPE_CHECKING`` and inside functions alike (``from e5_integrations import _x`` as ``e5_integrations._x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if a.name.startswith("_")]
    return [(line, name) for line, name in found if name.split(".")[0] == "e5_integrations"]


def test_sinks_import_only_the_public_sink_api() -> None:
    """Every module of ``integrations/sinks`` but the API itself imports from the package
    only ``e5_integrations.sinks`` and the sinks' own private helpers (``sinks._x``)."""
    allowed = re.compile(r"e5_integrations\.sinks(\._[a-z_]+)?(\.[A-Za-z_]+)?")
    modules = sorted(p for p in SINKS.glob("*.py") if p.name != "__init__.py")
    assert {p.name for p in modules} >= {"chroma.py", "milvus.py", "pgvector.py", "qdrant.py"}
    wrong = {
        f"{p.name}:{line}: {name}"
        for p in modules
        for line, name in _e5_imports(p)
        if not allowed.fullmatch(name)
    }
    assert wrong == set(), "import these from e5_integrations.sinks (add them to its __all__ if missing)"


def test_the_check_sees_a_private_import() -> None:
    """The check above can fail: it flags each way of spelling a private import."""
    import tempfile

    source = (
        "from e5_integrations.ingest._sink import Sink\n"
        "from e5_integrations import _errors\n"
        "def f():\n    import e5_integrations._redact\n"
        "from e5_integrations.sinks import Sink\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "x.py")
        path.write_text(source)
        names = [name for _, name in _e5_imports(path)]
    assert "e5_integrations.ingest._sink" in names and "e5_integrations._errors" in names
    assert "e5_integrations._redact" in names


def _ingest_import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``e5_integrations.ingest`` it imports (anywhere in the file)."""
    paths = {}
    for path in INGEST.rglob("*.py"):
        parts = ["e5_integrations", *path.relative_to(INGEST.parent).with_suffix("").parts]
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {
        module: {
            target
            for _, name in _e5_imports(path)
            for target in [name if name in paths else name.rsplit(".", 1)[0]]
            if target in paths and target != module
        }
        for module, path in paths.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_ingest_modules_import_no_cycle() -> None:
    """``_layout``, ``_sink`` and ``_sources`` once imported each other (through
    ``TYPE_CHECKING`` and function-level imports too); the data types now live in the leaf
    ``_records``, and no module of ``e5_integrations.ingest`` reaches itself again."""
    graph = _ingest_import_graph()
    assert graph["e5_integrations.ingest._records"] == set()
    assert "e5_integrations.ingest._sink" not in graph["e5_integrations.ingest._layout"]
    assert "e5_integrations.ingest._sink" not in graph["e5_integrations.ingest._sources"]
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
