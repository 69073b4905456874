"""`hamnet pipeline`: the end-to-end optimization job (hamnet_jax/pipeline).

    hamnet pipeline --preset quick                                  # the built-in cohort
    hamnet pipeline --data cohort.parquet --config hamnet_config.yaml --out runs/pipeline

Rerunning the same command continues a killed pipeline at the stage it was in.
"""

from __future__ import annotations

import argparse

from hamnet_jax.cli.setup import _setup


def cmd_pipeline(args: argparse.Namespace) -> None:
    from hamnet_jax.pipeline import run_pipeline

    _setup(args)
    results = run_pipeline(args.out, args.data, args.config, args.preset, progress=not args.quiet,
                           schema_path=args.schema)
    s = results["summary"]
    final = s["final"]
    line = f"pipeline done in {s['total_seconds']:.0f} s of stage time; report {results['report']}"
    if s["speedup"] is not None:
        line += (f"; final model ({final['technique']}): {s['speedup']:.2f}x the baseline's throughput at batch "
                 f"{final['throughput_batch']}, test MAE {final['mae']:.3f} ({s['mae_change']:+.2%})")
    if s["repository"]:
        line += f"; serve it with: hamnet serve --repository {s['repository']}"
    print(line)


def add_pipeline_parser(sub: argparse._SubParsersAction) -> None:
    from hamnet_jax.pipeline.presets import PRESETS

    p = sub.add_parser("pipeline", help="the end-to-end optimization pipeline: NAS, HPO, training, distillation, "
                                        "pruning, quantization, export, benchmark, model repository; resumable")
    p.add_argument("--data", help="data file (.parquet, .csv or .npz; default: the preset's built-in synthetic "
                                  "cohort, written to OUT/cohort)")
    p.add_argument("--schema", help="schema YAML (default: the data file's .schema.yaml sidecar)")
    p.add_argument("--config", help="hamnet_config.yaml: the optimization switches and every stage's section "
                                    "(over the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="quick: every stage on the default cohort in under 15 minutes on 2 CPU cores; tiny: every "
                        "stage on 240 subjects of narrow data (a smoke run)")
    p.add_argument("--out", help="the pipeline's directory (default $HAMNET_OUTPUT_DIR/pipeline); rerun the same "
                                 "command to continue a killed pipeline")
    p.add_argument("--quiet", action="store_true", help="no progress bars inside the stages")
    p.set_defaults(func=cmd_pipeline)
