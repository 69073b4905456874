"""The end-to-end optimization pipeline: NAS -> HPO -> train -> distill -> prune -> quantize
-> export -> benchmark -> model repository (-> monitoring), each stage switched by the
`optimization:` section, resumable, with a report measured on the machine that ran it.

    from hamnet_jax.pipeline import run_pipeline
    results = run_pipeline("runs/pipeline", preset_name="quick")   # the built-in cohort
    results["summary"]["speedup"], results["report"]
"""

from typing import Any

__all__ = ["planned_stages", "run_pipeline", "write_report"]


def __getattr__(name: str) -> Any:
    """Imported on first use: `hamnet --help` reads the presets without loading the stages."""
    if name == "write_report":
        from hamnet_jax.pipeline.report import write_report

        return write_report
    if name in ("planned_stages", "run_pipeline"):
        from hamnet_jax.pipeline import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'hamnet_jax.pipeline' has no attribute {name!r}")
