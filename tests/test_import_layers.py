"""One-way layers: no import cycle among our modules, and ``transforms`` / ``evaluation`` never import ``pipeline``.

Read from the source (``ast``), not by importing: every ``import`` counts, also those inside functions and
``if TYPE_CHECKING:`` blocks, because a cycle a lazy import hides is still two modules leaning on each other.
Layers, bottom up: ``transforms`` (imports neither of the others), ``evaluation`` (may import ``transforms``),
``pipeline`` (may import both).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("transforms", "evaluation", "pipeline")
MAY_IMPORT = {"transforms": set(), "evaluation": {"transforms"}, "pipeline": {"transforms", "evaluation"}}

KNOWN_PACKAGE_CYCLES: set[frozenset[str]] = set()
"""Cycles between subpackages still on record (none: issue 17 moved the checks inference runs before a bundle into
``pipeline.bundle_trust``, below both ``inference`` and ``bundle_sharing``). A new entry needs a reason and an issue."""


def _modules(root: Path, packages=PACKAGES) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (``from a.b import c`` counts ``a.b.c`` if it is a module,
    else ``a.b``; relative imports are resolved)."""
    modules = _modules(root, packages)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        here = module.split(".") if is_package else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in packages and (target := owner(name)) not in (None, module):
                    targets.add(target)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checker_finds_a_lazy_cycle_and_resolves_relative_imports(tmp_path):
    root = _write(tmp_path, {"evaluation/__init__.py": "", "evaluation/a.py": "from .b import x\n",
                             "evaluation/b.py": "def f():\n    from evaluation import a\n",
                             "evaluation/c.py": "import evaluation.a\n"})
    graph = import_graph(root, ("evaluation",))
    assert graph["evaluation.a"] == {"evaluation.b"} and graph["evaluation.c"] == {"evaluation.a"}
    assert cycles(graph) == {frozenset({"evaluation.a", "evaluation.b"})}


def test_no_import_cycle_among_our_modules():
    found = sorted(sorted(c) for c in cycles(import_graph(ROOT)))
    assert not found, f"import cycles: {found}"


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each subpackage (``pipeline.inference``) as one node; a module directly in a top-level
    package (``pipeline.cli``, ``evaluation.metrics``) stays its own node."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return units


def test_subpackage_graph_joins_the_modules_of_a_subpackage():
    graph = {"pipeline.a.x": {"pipeline.b.y"}, "pipeline.b.y": {"pipeline.a.z", "pipeline.cli"}, "pipeline.a.z": set(),
             "pipeline.cli": set()}
    assert cycles(graph) == set()
    assert cycles(subpackage_graph(graph)) == {frozenset({"pipeline.a", "pipeline.b"})}


def test_no_new_import_cycle_among_subpackages():
    found = cycles(subpackage_graph(import_graph(ROOT)))
    new = sorted(sorted(c) for c in found - KNOWN_PACKAGE_CYCLES)
    assert not new, f"import cycles between subpackages: {new}"
    gone = sorted(sorted(c) for c in KNOWN_PACKAGE_CYCLES - found)
    assert not gone, f"fixed, remove from KNOWN_PACKAGE_CYCLES: {gone}"


def test_bundle_sharing_and_inference_share_model_files_through_a_neutral_module():
    """Issue 17: bundle_models took ``_state_dict`` and ``INFERENCE_CONFIG`` from ``inference.model``, whose
    runtime choice called back into bundle_models. Both now read model files through ``pipeline.checkpoint_io``,
    which imports no other module of ``pipeline``."""
    graph = import_graph(ROOT)
    assert "pipeline.checkpoint_io" in graph["pipeline.inference.bundle_models"]
    assert "pipeline.checkpoint_io" in graph["pipeline.inference.model"]
    assert not {t for t in graph["pipeline.checkpoint_io"] if t.startswith("pipeline.")}


def test_the_checks_inference_runs_before_a_bundle_sit_below_inference_and_bundle_sharing():
    """Issue 17: inference ran a bundle only after ``bundle_sharing.trust`` had checked it, while bundle_sharing
    exports and runs models with inference (a package cycle). The checks (trust, config allow-list, carried code)
    are ``pipeline.bundle_trust`` now: inference and bundle_sharing import it, it imports neither, nor anything
    of ``pipeline`` but itself."""
    graph = import_graph(ROOT)
    trust = {m: targets for m, targets in graph.items() if m.split(".")[:2] == ["pipeline", "bundle_trust"]}
    assert {"pipeline.bundle_trust.trust", "pipeline.bundle_trust.config_allowlist",
            "pipeline.bundle_trust.carried_code"} <= set(trust)
    outside = sorted(f"{m} -> {t}" for m, targets in trust.items() for t in targets
                     if t.startswith("pipeline.") and not t.startswith("pipeline.bundle_trust"))
    assert not outside, f"pipeline.bundle_trust must import no other part of pipeline: {outside}"
    assert "pipeline.bundle_trust.trust" in graph["pipeline.inference.model"]
    assert "pipeline.bundle_trust.trust" in graph["pipeline.bundle_sharing.verify"]
    assert not {t for t in graph["pipeline.inference.bundle_models"] if t.startswith("pipeline.bundle_sharing")}


@pytest.mark.parametrize("package", ["transforms", "evaluation"])
def test_lower_layers_never_import_upper_ones(package):
    graph = import_graph(ROOT)
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] == package
                    for t in targets if t.split(".")[0] not in MAY_IMPORT[package] | {package})
    assert not upward, f"{package} imports a layer above it: {upward}"
