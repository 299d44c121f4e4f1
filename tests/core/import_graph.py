"""The static import graph of core (``core/src/trailrelay``) and the connectors, read with ``ast``.

An edge ``a -> b`` is every ``import trailrelay.b`` / ``from trailrelay.b import x`` in module
``a`` (``from pkg import sub`` names the submodule ``pkg.sub``; relative imports are resolved),
wherever it stands: at the top, inside a function (a lazy import), or under
``if TYPE_CHECKING:``. A lazy import is still a dependency: deferring it only hides a cycle.
A package's ``__init__`` importing its own submodules is a package, not a cycle, so the
parent packages that Python runs on the way to a module are not edges.

Run it to see the cycles and the layer rules' offenders: ``python tests/core/import_graph.py``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core" / "src"


@dataclass(frozen=True)
class Import:
    """One import statement's target module and line."""

    target: str
    line: int


def module_name(path: Path, src: Path) -> str:
    """``core/src/trailrelay/a/b.py`` -> ``trailrelay.a.b`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    """Every module of core's ``trailrelay`` package, by name."""
    return {module_name(p, CORE): p for p in sorted((CORE / "trailrelay").rglob("*.py"))}


def imports_of(path: Path, name: str, known: Iterable[str]) -> list[Import]:
    """The core modules that the module ``name`` at ``path`` imports, by any import statement in it."""
    modules = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    targets: list[tuple[str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [
                (resolve(a.name), node.lineno) for a in node.names if a.name.split(".")[0] == "trailrelay"
            ]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] == "trailrelay":
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append((full if full in modules else resolve(base), node.lineno))
    return [Import(t, line) for t, line in targets if t is not None and t != name]


def core_graph() -> dict[str, list[Import]]:
    """Module -> its imports of other core modules (top-level, lazy and type-checking alike)."""
    modules = core_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in {i.target for i in graph[v]}:
            if w not in index:
                strong(w)
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
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in sorted(graph):
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def within(name: str, prefix: str) -> bool:
    """``name`` is the module ``prefix`` or inside the package ``prefix``."""
    return name == prefix or name.startswith(prefix + ".")


# -- the rules (docs/ARCHITECTURE.md, "Import rules") ------------------------------------------------

LEAVES = frozenset(
    {
        "trailrelay",
        "trailrelay.errors",
        "trailrelay.helpers",
        "trailrelay.record",
        "trailrelay.settings",
        "trailrelay.transforms",
        "trailrelay.transforms.filters",
        "trailrelay.contract",
    }
)
"""The contract and what it is made of; each imports only leaves (and no third party but these)."""
LEAF_THIRD_PARTY = frozenset({"msgspec", "orjson"})

CONFIG_MODELS = frozenset(
    {
        "trailrelay.config",
        "trailrelay.aws_lambda.models",
        "trailrelay.detection.config",
        "trailrelay.doctor.config",
        "trailrelay.integrity.config",
        "trailrelay.privacy.config",
        "trailrelay.sinks.file_config",
        "trailrelay.sources.firehose_config",
    }
)
"""Configuration models: each imports only leaves, other models and (to find sink models) plugins."""
MODEL_HELPERS = frozenset({"trailrelay.plugins"})

FORBIDDEN = (
    (
        "trailrelay.sources",
        "trailrelay.pipeline",
        "sources hand units of work to the pipeline, never call it",
    ),
    ("trailrelay.sources", "trailrelay.sinks", "sources know nothing of where records go"),
    ("trailrelay.transforms", "trailrelay.sinks", "transforms know nothing of where records go"),
    ("trailrelay.transforms", "trailrelay.pipeline", "transforms are called by the pipeline"),
    ("trailrelay.sinks", "trailrelay.pipeline", "a sink reports outcomes; the pipeline decides"),
)
"""(importer, imported, why): a module inside the first may not import one inside the second."""


def third_party_of(path: Path) -> set[str]:
    """Top-level names of the non-``trailrelay``, non-standard-library modules ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"trailrelay", "__future__"}


def offenders() -> list[str]:
    """Every import that breaks a rule, as ``module:line: imports target (rule)``."""
    graph = core_graph()
    modules = core_modules()
    out = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for name, imports in sorted(graph.items()):
        for i in imports:
            where = f"{name}:{i.line}: imports {i.target}"
            if name in LEAVES and i.target not in LEAVES:
                out.append(f"{where} (a leaf imports only leaves)")
            if name in CONFIG_MODELS and i.target not in LEAVES | CONFIG_MODELS | MODEL_HELPERS:
                out.append(f"{where} (a config model imports no runtime code)")
            if i.target in MODEL_HELPERS and name in CONFIG_MODELS:
                helper = graph[i.target]
                out.extend(
                    f"{i.target}:{h.line}: imports {h.target} (a model helper imports only leaves)"
                    for h in helper
                    if h.target not in LEAVES
                )
            if within(i.target, "trailrelay.testing") and not within(name, "trailrelay.testing"):
                out.append(f"{where} (test helpers are not runtime code)")
            for importer, imported, why in FORBIDDEN:
                if within(name, importer) and within(i.target, imported):
                    out.append(f"{where} ({why})")
    for name in sorted(LEAVES):
        extra = third_party_of(modules[name]) - LEAF_THIRD_PARTY
        if extra:
            out.append(
                f"{name}: imports {sorted(extra)} (a leaf imports no third party but {sorted(LEAF_THIRD_PARTY)})"
            )
    for path in sorted(ROOT.glob("connectors/*/src/**/*.py")):
        src = ROOT / "connectors" / path.relative_to(ROOT).parts[1] / "src"
        out.extend(
            f"{path.relative_to(ROOT)}:{i.line}: imports {i.target} (connectors import only the contract)"
            for i in imports_of(path, module_name(path, src), modules)
            if i.target != "trailrelay.contract"
        )
    return sorted(set(out))


if __name__ == "__main__":
    found = offenders()
    print("\n".join(found) or "no cycles, every import rule holds")
    sys.exit(1 if found else 0)
