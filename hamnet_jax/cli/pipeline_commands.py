"""`hamnet pipeline`: the end-to-end optimization job (hamnet_jax/pipeline).

    hamnet pipeline --preset quick                                  # the built-in cohort
    hamnet pipeline --data cohort.parquet --config hamnet_config.yaml --out runs/pipeline

Rerunning the same command continues a killed pipeline at the stage it was in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hamnet_jax.cli.setup import _setup
from hamnet_jax.cli.tracking_options import add_tracking_arguments, finishing, tracked_run


def cmd_pipeline(args: argparse.Namespace) -> None:
    from hamnet_jax.pipeline import run_pipeline

    config = _setup(args)
    out = Path(args.out) if args.out else Path(config.general.output_dir) / "pipeline"
    tracker = tracked_run(args, config, out.name, out, {"preset": args.preset or "", "data": args.data or "builtin",
                                                        "config": args.config or ""})
    on_stage_done = None
    if tracker is not None:
        from hamnet_jax.pipeline.pipeline_tracking import log_pipeline, log_stage

        def on_stage_done(name: str) -> None:
            tracker.remember(out)
            log_stage(tracker, out, name)

    with finishing(tracker):
        results = run_pipeline(out, args.data, args.config, args.preset, progress=not args.quiet,
                               schema_path=args.schema, on_stage_done=on_stage_done)
        if tracker is not None:
            version = log_pipeline(tracker, out, results)
            if version is not None:
                print(f"MLflow: the served model is registered as {results['stages']['repository']['model']} "
                      f"version {version} at {tracker.uri}")
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
    add_tracking_arguments(p)
    p.set_defaults(func=cmd_pipeline)
