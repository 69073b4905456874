"""The package's layers, the one map of them (`RANKS`): each package imports only packages of a
lower rank, no module imports itself back through others (no circle between files), the
core never imports the facades (`optimization/`) or the CLI, and `import hamnet_jax` is
lazy. Every import counts: at module level, inside a function, and type-only ones under
`if TYPE_CHECKING:` (a type hint is a dependency too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "hamnet_jax"

# lowest first; a unit may import units of a lower rank (and itself)
RANKS = {
    "errors": 0,
    # (kill_points: the error type)
    "io_atomic": 1, "file_lock": 1, "cache_root": 1, "terminal_progress": 1, "modalities": 1, "kill_points": 1,
    "lazy_exports": 1, "yaml_text": 1,
    "job_dir": 2, "platform": 2,  # (job_dir: atomic io; platform: the error type)
    "tracking": 2,  # MLflow runs: atomic io for the run id a resumed job logs into
    "data": 3, "cohort": 4, "models": 5, "config": 6, "transforms": 7, "inference": 8,
    "export": 9, "client": 9,  # (client: the service's protocol, spoken from outside it)
    "training": 10,  # config, models, data, transforms and platform only (test below)
    "evaluation": 11, "compression": 12,
    "runs": 13,  # the jobs that write a run directory, and its format
    "repository": 14,  # the on-disk model repository serve, bench and pipeline share
    "search": 15, "monitoring": 15, "deployment": 15,
    "bench": 15,  # it starts the service as a process and measures it through client/
    "serving": 16,  # above monitoring: the service exports its metrics, drift and A/B assignments through it
    "pipeline": 17, "optimization": 18,  # the facades sit on top: optimize_hamnet_pipeline runs the pipeline
    "cli": 19, "__init__": 19,
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join([root.name, *(parts[:-1] if parts[-1] == "__init__" else parts)])


def unit(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_modules(path: Path, known: set[str], package: str = "hamnet_jax") -> set[str]:
    """The package's modules `path` imports, anywhere in the file (`from a import b` names the
    module `a.b` when there is one, else `a`)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == package:
            out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                    for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == package}
    return out


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports (itself left out)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {m: imported_modules(p, set(files), root.name) - {m} for m, p in files.items()}


def edges(root: Path = ROOT) -> dict[str, set[str]]:
    """unit (top-level package or module) -> the units it imports."""
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph(root).items():
        source = module.split(".")[1] if "." in module else "__init__"
        graph.setdefault(source, set()).update(t.split(".")[1] for t in targets if "." in t)
        graph[source].discard(source)
    return graph


def upward_imports(ranks: dict[str, int], root: Path = ROOT) -> list[tuple[str, str]]:
    return sorted((s, d) for s, ds in edges(root).items() for d in ds if ranks[d] >= ranks[s])


def circles(root: Path = ROOT) -> list[list[str]]:
    """Every set of modules that import one another round a circle (Tarjan's strongly
    connected components of more than one module)."""
    graph = module_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_unit_has_a_rank():
    assert set(edges()) <= set(RANKS), sorted(set(edges()) - set(RANKS))


def test_units_import_only_lower_layers():
    wrong = upward_imports(RANKS)
    assert not wrong, f"imports against the layers (importer, imported): {wrong}"


def test_no_import_circle_between_files():
    assert not circles(), circles()


def test_training_imports_nothing_above_transforms_and_platform():
    """The loop is built from config, models, data, transforms and the platform (and the
    ground floor); jobs that write run directories sit above it, in runs/."""
    allowed = {"config", "models", "data", "transforms", "platform"} | {u for u, r in RANKS.items() if r <= 2}
    assert edges()["training"] <= allowed, sorted(edges()["training"] - allowed)


def test_bench_and_the_pipeline_reach_the_service_only_as_clients():
    """They start `hamnet serve` as a process and speak to it through client/."""
    graph = edges()
    assert "serving" not in graph["bench"] | graph["pipeline"]


def test_core_never_imports_facades_or_cli():
    core = {u for u, r in RANKS.items() if r < RANKS["optimization"]}
    bad = [(s, d) for s, ds in edges().items() if s in core for d in ds if d in ("optimization", "cli")]
    assert not bad


def test_a_planted_upward_import_and_a_planted_circle_are_caught(tmp_path):
    """The checkers can fail: a type-only upward import and a circle of function-level
    imports in a small package are reported, and the same package without them is clean."""
    pkg = tmp_path / "hamnet_jax"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    for init in ("__init__.py", "low/__init__.py", "high/__init__.py"):
        (pkg / init).write_text("")
    (pkg / "high" / "job.py").write_text("from hamnet_jax.low.a import f\n")
    (pkg / "low" / "a.py").write_text("def f():\n    return 1\n")
    (pkg / "low" / "b.py").write_text("")
    ranks = {"low": 0, "high": 1, "__init__": 2}
    assert upward_imports(ranks, pkg) == [] and circles(pkg) == []
    (pkg / "low" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from hamnet_jax.high.job import f\n")
    assert upward_imports(ranks, pkg) == [("low", "high")]
    assert circles(pkg) == [["hamnet_jax.high.job", "hamnet_jax.low.a"]]
    (pkg / "low" / "a.py").write_text("def f():\n    from hamnet_jax.low import b\n")
    (pkg / "low" / "b.py").write_text("def g():\n    import hamnet_jax.low.a\n")
    assert upward_imports(ranks, pkg) == [] and circles(pkg) == [["hamnet_jax.low.a", "hamnet_jax.low.b"]]


def test_import_hamnet_jax_loads_no_jax():
    code = "import sys, hamnet_jax; print(sorted(m for m in ('jax', 'flax', 'optax', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
