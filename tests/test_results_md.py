"""experiments/RESULTS.md is what `python experiments/results_md.py` renders from the results
files now, and every results file names the command that writes it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_renderer():
    spec = importlib.util.spec_from_file_location("results_md", ROOT / "experiments" / "results_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_md_is_current():
    renderer = load_renderer()
    assert (ROOT / "experiments" / "RESULTS.md").read_text() == renderer.render(), \
        "experiments/RESULTS.md is stale: run python experiments/results_md.py"


def test_every_results_file_names_its_command_and_each_figure_is_the_files_own():
    renderer = load_renderer()
    files = sorted(p.name for p in (ROOT / "experiments" / "results").glob("*.json"))
    assert set(files) <= set(renderer.COMMANDS)
    figures = sorted(p.name for p in (ROOT / "experiments" / "results").glob("*.png"))
    assert set(figures) <= set(renderer.FIGURES)
    page = renderer.render()
    for name in files:
        assert f"## {name}\n\nWritten by `{renderer.COMMANDS[name]}`." in page
    for name in figures:
        assert f"`{name}`, drawn by `{renderer.FIGURES[name]}`" in page
    assert renderer.number(2.95798128856947) == "2.958" and renderer.number(11847.44) == "11,847"
