"""The package's layers: each package imports only packages below it (no cycles), the core
never imports the facades (`optimization/`) or the CLI, and `import hamnet_jax` is lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "hamnet_jax"

# lowest first; a unit may import units of a lower rank (and itself)
RANKS = {
    "errors": 0,
    "io_atomic": 1, "modalities": 1, "background_compile": 1, "kill_points": 1,  # (kill_points: the error type)
    "job_dir": 2, "host_memory": 2,  # (job_dir: atomic io below it; host_memory: the error type)
    "data": 3, "models": 4, "config": 5, "transforms": 6, "inference": 7, "export": 8, "run_dir": 9,
    "evaluation": 10, "training": 11, "compression": 12,
    "search": 13, "monitoring": 13, "deployment": 13,
    "serving": 14,  # above monitoring: the service exports its metrics, drift and A/B assignments through it
    "bench": 15,  # above serving: it serves the model it measures under load
    "pipeline": 16, "optimization": 17,  # the facades sit on top: optimize_hamnet_pipeline runs the pipeline
    "cli": 18, "__init__": 18,
}


def unit(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def runtime_imports(path: Path) -> set[str]:
    """hamnet_jax units imported at run time (imports under `if TYPE_CHECKING:` are type hints)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "hamnet_jax" and len(parts) > 1:
                out.add(parts[1])
    return out


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        graph.setdefault(unit(path), set()).update(runtime_imports(path) - {unit(path)})
    return graph


def test_every_unit_has_a_rank():
    assert set(edges()) <= set(RANKS), sorted(set(edges()) - set(RANKS))


def test_units_import_only_lower_layers():
    wrong = [(src, dst) for src, dsts in edges().items() for dst in dsts if RANKS[dst] >= RANKS[src]]
    assert not wrong, f"imports against the layers (importer, imported): {sorted(wrong)}"


def test_no_import_cycle():
    graph = edges()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(stack + [node, nxt])}")
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_core_never_imports_facades_or_cli():
    core = {u for u, r in RANKS.items() if r < RANKS["optimization"]}
    bad = [(s, d) for s, ds in edges().items() if s in core for d in ds if d in ("optimization", "cli")]
    assert not bad


def test_a_known_violation_is_caught(tmp_path):
    """The checker itself can fail: an upward import is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from hamnet_jax.training.loop import fit\nif TYPE_CHECKING:\n    import hamnet_jax.cli\n")
    assert runtime_imports(bad) == {"training"}


def test_import_hamnet_jax_loads_no_jax():
    code = "import sys, hamnet_jax; print(sorted(m for m in ('jax', 'flax', 'optax', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
