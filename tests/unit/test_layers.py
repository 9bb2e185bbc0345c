"""The house rules, checked by walking the import graph with the standard library's ``ast``.

Layers only point down (docs/architecture.md draws them):

    base      _version, errors, clock, limits, masking, testing, _globs, _wallclock, _rrule
    domain    jobs, payloads, retry, schedules, sharding, outcomes, filters
    store     finejobs.store.*                      (the only package that runs SQL)
    queue     kinds, scheduler, schedule_ops, queue, devdb, _embedded, tracing, groups, importing, pipelines
    runtime   finejobs.runtime.*
    admin     admin, shard_move                     (the operations API)
    surfaces  finejobs.cli.*, web.*, metrics, contrib.* (django)  and the package's __init__

A module may import its own layer or any layer below it, never one above, and module-level imports form
no circle. An import inside a function runs late and cannot make a circle at import time; upward ones
are allowed only where listed in LATE_UPWARD (each is a documented convenience of the public API).
Imports under ``if TYPE_CHECKING:`` are for type checkers only and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "finejobs"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("finejobs._version", "finejobs.errors", "finejobs.clock", "finejobs.limits", "finejobs.masking",
              "finejobs.testing", "finejobs._globs", "finejobs._wallclock", "finejobs._rrule")),
    ("domain", ("finejobs.jobs", "finejobs.payloads", "finejobs.retry", "finejobs.schedules", "finejobs.sharding",
                "finejobs.outcomes", "finejobs.filters")),
    ("store", ("finejobs.store",)),
    ("queue", ("finejobs.kinds", "finejobs.scheduler", "finejobs.schedule_ops", "finejobs.queue", "finejobs.devdb",
               "finejobs._embedded", "finejobs.tracing", "finejobs.groups", "finejobs.importing", "finejobs.pipelines",
               "finejobs.pipeline_engine", "finejobs.pipeline_info", "finejobs.services", "finejobs.http_runner")),
    ("runtime", ("finejobs.runtime",)),
    ("admin", ("finejobs.admin", "finejobs.shard_move")),
    ("surfaces", ("finejobs.cli", "finejobs.web", "finejobs.metrics", "finejobs.contrib", "finejobs.__main__",
                  "finejobs")),
]

# (importer, imported): late imports that point up, on purpose.
LATE_UPWARD = {
    ("finejobs.queue", "finejobs.runtime.worker"),  # queue.worker() builds a Worker
    ("finejobs.queue", "finejobs.runtime.worker_group"),  # ... or a WorkerGroup
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best[0]


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path) -> Iterator[tuple[str, bool]]:
    """(imported finejobs module, at module level?) for each import in the file."""
    tree = ast.parse(path.read_text("utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = modules()

    def visit(node: ast.AST, top: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("finejobs"):
                        yield alias.name, top
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] +
                                    ([base] if base else []))
                if not base.startswith("finejobs"):
                    continue
                for alias in child.names:  # `from finejobs import cli` imports the module finejobs.cli
                    sub = f"{base}.{alias.name}"
                    yield (sub if sub in known else base), top
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, False)
            else:
                yield from visit(child, top)

    yield from visit(tree, True)


def graph() -> dict[str, set[str]]:
    return {name: {imported for imported, top in imports(name, path) if top and imported != name}
            for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_only_point_down(name: str) -> None:
    here = layer_of(name)
    for imported, top in imports(name, modules()[name]):
        there = layer_of(imported)
        if there <= here:
            continue
        assert not top and (name, imported) in LATE_UPWARD, (
            f"{name} ({LAYERS[here][0]}) imports {imported} ({LAYERS[there][0]}), a layer above it")


def test_no_import_circles() -> None:
    edges = graph()
    # A package's __init__ importing its own submodules is the package, not a circle.
    for name in edges:
        package = modules()[name].name == "__init__.py"
        edges[name] = {m for m in edges[name] if not (package and m.startswith(name + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)


def test_only_the_store_runs_sql() -> None:
    """No module outside finejobs.store imports SQLAlchemy or psycopg to run statements (devdb administers
    the server itself: databases and roles, not finejobs' tables)."""
    allowed = ("finejobs.store", "finejobs.devdb")
    for name, path in modules().items():
        if name.startswith(allowed):
            continue
        text = path.read_text("utf-8")
        for needle in ("import sqlalchemy", "from sqlalchemy", ".execute(", ".cursor("):
            assert needle not in text, f"{name} has {needle!r}: SQL belongs in finejobs.store"


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name: str) -> None:
    lines = modules()[name].read_text("utf-8").count("\n")
    assert lines <= 520, f"{name} has {lines} lines: split it (about 500 at most)"
