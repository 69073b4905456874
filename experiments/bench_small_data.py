"""Small cohorts: 5-fold cross-validated HAMNet against ridge and gradient boosting.

    python experiments/bench_small_data.py [--sizes 300,1000,3000] [--variants defaults,standard,wide]
        [--out runs/small_data]

Each cohort is `hamnet cohort` at small widths (10 clinical markers, 4 lifestyle numerics
and the 6 lifestyle categories) cut to one visit per subject (the first), with one
modality (clinical) or two (clinical + lifestyle), keeping the subjects with a value of
those modalities at that visit (a few percent have none). Its target, age, is partly linear in the
markers (linear, quadratic, saturating and exponential responses to biological age). Every
model is scored by `hamnet cv --folds 5` (the same folds for HAMNet and the baselines; the
baselines on the last visit's features). Regression: R² and MAE; an outcome-only task
(the `died` outcome, no target) on the two-modality cohorts: AUROC beside logistic
regression, with the probabilities' 5-fold log loss and Brier score (HAMNet's are
temperature-scaled on each fold's validation part). Variants are HAMNet configs:
`defaults` is what a user gets with no config (`tier: auto`: on these cohorts the wide
path fixed at its ridge / logistic fit), `standard` the standard tier from a random start
(the default before `auto`), `wide` that with the linear path learned from zero
(`model.wide: true`). A finished CV is reused on a rerun, and the JSON keeps the rows of
earlier invocations (other sizes or variants).
Prints a table; writes experiments/results/bench_small_data.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from hamnet_jax.cli import main as hamnet
from hamnet_jax.cohort.default import CohortDims, generate_cohort
from hamnet_jax.data.schema import sidecar_path
from hamnet_jax.data.tables import write_table
from hamnet_jax.io_atomic import write_json_atomic

RESULTS = Path(__file__).parent / "results" / "bench_small_data.json"
DIMS = CohortDims(clinical=10, imaging=8, genetic=20, lifestyle_numeric=4)
VARIANTS = {"defaults": {}, "standard": {"model": {"tier": "standard"}},
            "wide": {"model": {"tier": "standard", "wide": True}}}
MODALITY_SETS = {"clinical": ("clinical",), "clinical+lifestyle": ("clinical", "lifestyle")}


def write_cohort(root: Path, subjects: int, modalities: tuple[str, ...], outcome_only: bool) -> Path:
    frame, schema = generate_cohort(subjects, seed=subjects, dims=DIMS)
    frame = frame[frame["visit"] == 0].reset_index(drop=True)
    schema["modalities"] = {m: schema["modalities"][m] for m in modalities}
    schema["subject_level"] = [m for m in schema.get("subject_level", []) if m in modalities]
    if "lifestyle" not in modalities:
        schema.pop("categorical", None)
    if outcome_only:
        schema.pop("target")
    kept = [schema["subject_id"], schema["visit"], schema["time"], "age", "died", "bio_age"]
    features = [c for m in modalities for c in schema["modalities"][m]]
    frame = frame[kept + features]
    frame = frame[frame[features].notna().any(axis=1)].reset_index(drop=True)  # subjects with a measurement
    path = root / f"n{subjects}-{'+'.join(modalities)}{'-outcome' if outcome_only else ''}.parquet"
    write_table(frame, path)
    sidecar_path(path).write_text(yaml.safe_dump(schema, sort_keys=False))
    return path


def cv(data: Path, variant: str, out: Path) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{variant}.yaml"
    config.write_text(yaml.safe_dump(VARIANTS[variant]))
    if not (out / "cv.json").exists():
        code = hamnet(["cv", "--data", str(data), "--folds", "5", "--config", str(config), "--out", str(out),
                       "--baseline-features", "last-visit", "--quiet"])
        if code:
            raise SystemExit(f"hamnet cv on {data} ({variant}) failed with exit {code}")
    return json.loads((out / "cv.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300,1000,3000")
    parser.add_argument("--variants", default="defaults,standard,wide")
    parser.add_argument("--out", default="runs/small_data")
    args = parser.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    variants = args.variants.split(",")
    # rows of earlier invocations (other sizes or variants) are kept; a cell measured again replaces its row
    rows = json.loads(RESULTS.read_text())["rows"] if RESULTS.exists() else []
    key = lambda r: (r["subjects"], r["modalities"], r["task"], r["variant"])
    for n in (int(s) for s in args.sizes.split(",")):
        for name, modalities in MODALITY_SETS.items():
            for outcome_only in (False, True) if len(modalities) > 1 else (False,):
                data = write_cohort(root, n, modalities, outcome_only)
                task = "outcome" if outcome_only else "regression"
                for variant in variants:
                    models = cv(data, variant, root / data.stem / variant)["models"]
                    row = {"subjects": n, "modalities": name, "task": task, "variant": variant}
                    if outcome_only:
                        row.update({m: models[m]["auroc"] for m in
                                    ("HAMNet", "logistic_regression", "hist_gradient_boosting_classifier")})
                        row["holds"] = row["HAMNet"]["mean"] >= row["logistic_regression"]["mean"] - 0.01
                        # calibration: the probabilities' log loss and Brier score beside logistic regression's
                        row["probability"] = {m: {k: models[m][k]["mean"] for k in ("log_loss", "brier")}
                                              for m in ("HAMNet", "logistic_regression")}
                    else:
                        row.update({m: models[m]["r2"] for m in ("HAMNet", "ridge", "hist_gradient_boosting")})
                        row["holds"] = (row["HAMNet"]["mean"] >= 0.95 * row["ridge"]["mean"]
                                        and row["HAMNet"]["mean"] >= row["hist_gradient_boosting"]["mean"])
                    rows = [r for r in rows if key(r) != key(row)] + [row]
                    write_json_atomic(RESULTS, {"folds": 5, "rows": rows})
    head = "".join(f"{c:>16}" for c in ("HAMNet", "linear", "HGB"))
    print(f"{'subjects':>8} {'modalities':<20}{'task':<11}{'variant':<10}{head}  holds")
    for r in sorted(rows, key=lambda r: (r["subjects"], r["modalities"], r["task"], r["variant"])):
        names = (["HAMNet", "ridge", "hist_gradient_boosting"] if r["task"] == "regression"
                 else ["HAMNet", "logistic_regression", "hist_gradient_boosting_classifier"])
        cells = "".join(f"{r[m]['mean']:>9.3f} ± {r[m]['sd']:.3f}" for m in names)
        print(f"{r['subjects']:>8} {r['modalities']:<20}{r['task']:<11}{r['variant']:<10}{cells}  {r['holds']}")
    print("regression cells: 5-fold R² (mean ± sd); outcome cells: AUROC. holds: R² >= 0.95 x ridge and >= HGB; "
          "AUROC >= logistic regression - 0.01")
    calibrated = [r for r in rows if "probability" in r]
    if calibrated:
        print(f"\n{'subjects':>8} {'variant':<10}{'log loss HAMNet':>17}{'logistic':>10}"
              f"{'Brier HAMNet':>14}{'logistic':>10}")
        for r in sorted(calibrated, key=lambda r: (r["subjects"], r["variant"])):
            h, lr = r["probability"]["HAMNet"], r["probability"]["logistic_regression"]
            print(f"{r['subjects']:>8} {r['variant']:<10}{h['log_loss']:>17.4f}{lr['log_loss']:>10.4f}"
                  f"{h['brier']:>14.4f}{lr['brier']:>10.4f}")


if __name__ == "__main__":
    main()
