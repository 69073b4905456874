"""`distill_run`: distill a trained run into a smaller student run directory.

The student trains on the teacher run's own split and preprocessing; the new directory is
complete (`hamnet evaluate`, `predict` and `export` work on it) and its `summary.json`
holds the measured `DistillationResult` (teacher and student test metrics, parameters,
throughput) plus the training history.
"""

from __future__ import annotations

import os

from hamnet_jax.compression.run import load_run_splits, new_run_dir, write_derived_run
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.optimization.knowledge_distillation import DistillationConfig, HAMNetKnowledgeDistillation


def distill_run(run_dir: str | os.PathLike, data_path: str | os.PathLike, out_dir: str | os.PathLike,
                config: DistillationConfig, compression_ratio: float = 0.25) -> dict:
    out = new_run_dir(run_dir, out_dir)
    run, parts, batches = load_run_splits(run_dir, data_path)
    kd = HAMNetKnowledgeDistillation((run.model_config, run.params), config, target_std=run.preprocessor.target_std)
    params, result = kd.distill(batches["train"], batches["val"], compression_ratio, test_data=batches["test"])
    std_scale = write_derived_run(out, run_dir, run, parts, batches, result.student_config, params)
    summary = {"source_run": str(run_dir), "method": str(config.method), **result.summary(), "std_scale": std_scale}
    write_json_atomic(out / "summary.json", summary)
    return summary
