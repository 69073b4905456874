"""`hamnet cv`: k-fold cross-validation of HAMNet beside the baselines.

    hamnet cv --data cohort.csv [--folds 5] [--config hamnet_config.yaml] [--tier base] \
        [--epochs N] [--out DIR] [--no-baselines] [--baseline-features last-visit]

Writes DIR/fold-<k>/ (an ordinary run directory each, with its eval.json) and DIR/cv.json
(per model and metric: the fold values, their mean and sd); prints the table. Rerunning the
same command resumes: finished folds are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from hamnet_jax.cli.setup import _setup, add_tier_argument, data_schema


def cmd_cv(args: argparse.Namespace) -> None:
    from hamnet_jax.runs.cross_validation import cross_validate, format_cv_table

    config = _setup(args)
    if args.tier:
        config = dataclasses.replace(config, model={**config.model, "tier": args.tier})
    if args.epochs is not None:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, num_epochs=args.epochs))
    out = args.out or str(Path(config.general.output_dir) / time.strftime("cv-%Y%m%d-%H%M%S"))
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    summary = cross_validate(args.data, data_schema(args), config, out, folds=args.folds,
                             baselines=not args.no_baselines, baseline_features=args.baseline_features,
                             progress=not args.quiet, say=say)
    print(format_cv_table(summary))
    print(f"folds: {out}/fold-*; summary: {out}/cv.json")


def add_cv_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cv", help="k-fold cross-validation: HAMNet and the baselines on every fold, mean ± sd")
    c.add_argument("--data", required=True, help="data file: .parquet, .csv or .npz")
    c.add_argument("--schema", help="schema YAML (default: the data file's .schema.yaml sidecar)")
    c.add_argument("--config", help="hamnet_config.yaml (original framework format)")
    c.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    add_tier_argument(c)
    c.add_argument("--target", help="target column (default: the schema's)")
    c.add_argument("--epochs", type=int, help="override training.num_epochs")
    c.add_argument("--out", help="directory of the folds' runs (default: $HAMNET_OUTPUT_DIR/cv-<time>)")
    c.add_argument("--no-baselines", action="store_true", help="skip the scikit-learn baselines")
    c.add_argument("--baseline-features", choices=("all-visits", "last-visit"), default="all-visits",
                   help="the baselines' features: every visit's (default) or the last visit's only")
    c.add_argument("--quiet", action="store_true", help="no progress on stderr")
    c.set_defaults(func=cmd_cv)
