"""The end-to-end optimization pipeline: NAS -> HPO -> train -> distill -> prune -> quantize
-> export -> benchmark -> model repository (-> monitoring), each stage switched by the
`optimization:` section, resumable, with a report measured on the machine that ran it.

    from hamnet_jax.pipeline import run_pipeline
    results = run_pipeline("runs/pipeline", preset_name="quick")   # the built-in cohort
    results["summary"]["speedup"], results["report"]
"""

from hamnet_jax.pipeline.report import write_report
from hamnet_jax.pipeline.runner import planned_stages, run_pipeline

__all__ = ["planned_stages", "run_pipeline", "write_report"]
