"""The end-to-end optimization pipeline: NAS -> HPO -> train -> distill -> prune -> quantize
-> export -> benchmark -> model repository (-> monitoring), each stage switched by the
`optimization:` section, resumable, with a report measured on the machine that ran it.

    from hamnet_jax.pipeline import run_pipeline
    results = run_pipeline("runs/pipeline", preset_name="quick")   # the built-in cohort
    results["summary"]["speedup"], results["report"]
"""

from hamnet_jax.lazy_exports import lazy_exports

# imported on first use: `hamnet --help` reads the presets without loading the stages
_EXPORTS = {"planned_stages": "runner", "run_pipeline": "runner", "write_report": "report"}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
