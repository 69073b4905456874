"""`hamnet drift`: is new data still what the run was trained on?

    hamnet drift --run runs/a --data new.parquet [--out drift.json] [--fail-on-drift]

Prints the flagged features and modalities (with PSI, KS and missing-rate changes) and the
prediction drift; writes the whole report as JSON with `--out`. `--fail-on-drift` exits 3
(a check found a problem, not a crash) when anything is flagged, for scheduled checks.
"""

from __future__ import annotations

import argparse
import math
import sys

from hamnet_jax.cli.setup import _setup

CHECK_FAILED = 3  # the exit code of a check that found a problem (cli EXIT_CODES)


def cmd_drift(args: argparse.Namespace) -> int | None:
    from hamnet_jax.errors import InputError
    from hamnet_jax.io_atomic import write_json_atomic

    try:
        from hamnet_jax.monitoring.drift import DriftThresholds
        from hamnet_jax.monitoring.drift_check import check_run_drift
    except ImportError as err:
        raise InputError(f"hamnet drift needs scipy ({err}): pip install 'hamnet-jax[monitoring]'") from None

    _setup(args)
    thresholds = DriftThresholds(psi=args.psi, ks_statistic=args.ks, alpha=args.alpha)
    report = check_run_drift(args.run, args.data, args.reference, thresholds, predictions=not args.no_predictions)
    if args.out:
        write_json_atomic(args.out, report)
    flagged = [r for r in report["features"] if r["drifted"] or r["missingness_drifted"]]
    print(f"{report['subjects']} subjects against {report['reference_subjects']} training subjects (last "
          f"visits): {len(report['drifted_features'])} of {len(report['features'])} features drifted, "
          f"{len(report['missingness_drifted_features'])} changed missingness, modalities "
          f"{report['drifted_modalities'] or 'none'} changed presence")
    for row in sorted(flagged, key=lambda r: -(r["psi"] if not math.isnan(r["psi"]) else math.inf))[:args.show]:
        ks = row.get("ks_statistic", math.nan)
        print(f"  {row['feature']:<32} {row['modality']:<9} PSI {row['psi']:7.3f}  KS {ks:6.3f}  missing "
              f"{row['reference_missing_rate']:.2f} -> {row['missing_rate']:.2f}")
    for m, row in report["modalities"].items():
        if row["drifted"]:
            print(f"  modality {m}: absent at {row['reference_absent_share']:.1%} -> {row['absent_share']:.1%} "
                  "of subjects")
    if "predictions" in report:
        p = report["predictions"]
        print(f"  predictions: PSI {p['psi']:.3f}, KS {p['ks_statistic']:.3f}"
              + (" (drifted)" if p["drifted"] else ""))
    drifted = bool(report["drifted_features"] or report["drifted_modalities"] or report.get("prediction_drifted"))
    if args.fail_on_drift and drifted:
        print("drift found (--fail-on-drift)", file=sys.stderr)
        return CHECK_FAILED
    return None


def add_monitoring_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("drift", help="input and prediction drift of a data file against a run's training data")
    d.add_argument("--run", required=True, help="trained run directory (its data_profile.npz)")
    d.add_argument("--data", required=True, help="the new data file (the run's schema; no target needed)")
    d.add_argument("--reference", help="the run's training data file, for runs trained before profiles were kept")
    d.add_argument("--out", help="write the whole report here (JSON)")
    d.add_argument("--psi", type=float, default=0.2, help="PSI at which a feature is flagged (default 0.2)")
    d.add_argument("--ks", type=float, default=0.1, help="KS statistic at which a feature may be flagged")
    d.add_argument("--alpha", type=float, default=0.01, help="significance (Bonferroni over features)")
    d.add_argument("--show", type=int, default=20, help="flagged features printed (default 20)")
    d.add_argument("--no-predictions", action="store_true", help="skip running the model for prediction drift")
    d.add_argument("--fail-on-drift", action="store_true", help="exit 3 when anything drifted")
    d.add_argument("--config", help="hamnet_config.yaml (general section)")
    d.set_defaults(func=cmd_drift)
