"""Training that protects the mean: the standard tier with the plain Gaussian NLL, β-NLL,
selection by validation MAE, the fitted wide start, stronger regularization and the smaller
base tier, beside ridge and gradient boosting, on one generator's world.

    python experiments/bench_mean_protection.py --generator frailty [--subjects 6000]
        [--variants nll,beta_nll,beta_nll+val_mae,...] [--out runs/mean_protection]

HAMNet and the baselines train on the same training subjects of a cohort drawn with seed 0
(HAMNet selects its epoch and calibrates its intervals on that cohort's validation split);
every model is then tested on a fresh cohort of the same world (seed 1, all its subjects).
Baselines see the last visit's features (`--baseline-features last-visit`, the faster mode;
`all-visits` is the other). A finished variant's run directory is reused on a rerun. The
JSON also holds an oracle's MAE: gradient boosting given the simulator's latent biological
age (which no model sees), a measure of how much the features can give.
Prints a table; writes experiments/results/mean_protection_<generator>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from hamnet_jax.config import Config, config_from_dict
from hamnet_jax.data.arrays import frame_to_arrays
from hamnet_jax.cohort.default import generate_cohort
from hamnet_jax.cohort.frailty import generate_frailty_cohort
from hamnet_jax.data.dataset import split_cohort
from hamnet_jax.data.schema import Schema
from hamnet_jax.data.tables import write_table
from hamnet_jax.evaluation.baselines import fit_baselines, predict_baseline
from hamnet_jax.runs.evaluate import prediction_metrics, predict_run
from hamnet_jax.io_atomic import write_json_atomic
from hamnet_jax.job_dir import as_stored
from hamnet_jax.runs.run_dir import load_run
from hamnet_jax.runs.train import reusable_run, train_run

RESULTS = Path(__file__).parent / "results"
GENERATORS = {"hamnet": generate_cohort, "frailty": generate_frailty_cohort}
# each variant: the standard tier with these config sections
VARIANTS: dict[str, dict[str, dict]] = {
    "nll": {},
    "beta_nll": {"training": {"loss": "beta_nll"}},
    "nll+val_mae": {"training": {"selection_metric": "val_mae"}},
    "beta_nll+val_mae": {"training": {"loss": "beta_nll", "selection_metric": "val_mae"}},
    "wide_fitted": {"model": {"wide": True}, "training": {"wide_start": "fitted"}},  # the small-cohort start
    "dropout0.3+wd0.01": {"model": {"dropout": 0.3}, "training": {"weight_decay": 0.01}},
    "base_tier": {"model": {"tier": "base"}},
}
METRICS = ("mae", "rmse", "r2", "coverage_90")


def oracle_mae(train, fresh) -> dict:
    """What the data allow at best, by one measure: MAE of gradient boosting on the simulator's
    latent biological age itself (never observed in the features; the target is chronological
    age), alone and beside the last visit's features. A model of the features alone has to
    recover that latent from noisy readouts of it."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from hamnet_jax.evaluation.baselines import flatten_features

    out = {}
    for name, x in (("bio_age", lambda d: d.extras["bio_age"][:, None]),
                    ("bio_age + last-visit features",
                     lambda d: np.c_[d.extras["bio_age"], flatten_features(d, "last-visit")])):
        model = HistGradientBoostingRegressor(random_state=0).fit(x(train), train.targets)
        out[name] = float(np.mean(np.abs(model.predict(x(fresh)) - fresh.targets)))
    return out


def variant_row(data: Path, schema: Schema, sections: dict[str, dict], run_dir: Path, fresh) -> dict:
    """The standard tier with `sections` trained on `data` into `run_dir` (a finished run is
    reused, a killed one resumed; one trained from other data or another config, such as the
    defaults before they changed, is refused, naming what differs), then its metrics on
    `fresh`, its epochs and train seconds. The metrics are kept in the run directory beside
    a digest of `fresh`: a rerun on the same test cohort reads them instead of predicting
    again."""
    config = variant_config(sections)
    if not reusable_run(run_dir, data, schema, config):
        start = time.perf_counter()
        train_run(data, schema, config, run_dir, resume=(run_dir / "checkpoints").exists(), progress=False)
        write_json_atomic(run_dir / "train_seconds.json", {"seconds": time.perf_counter() - start})
    trained_with = {"config_sha256": config_digest(config)}
    kept, digest = run_dir / "fresh_test_metrics.json", _digest(fresh)
    if kept.exists() and json.loads(kept.read_text())["test"] == digest:
        return json.loads(kept.read_text())["row"] | trained_with
    summary = json.loads((run_dir / "summary.json").read_text())
    row = prediction_metrics(fresh, predict_run(load_run(run_dir), fresh))
    row.update(best_epoch=summary["best_epoch"], epochs_run=summary["epochs_run"],
               train_seconds=json.loads((run_dir / "train_seconds.json").read_text())["seconds"])
    write_json_atomic(kept, {"test": digest, "row": row})
    return row | trained_with


def variant_config(sections: dict[str, dict]) -> Config:
    """The standard tier with a variant's config sections over the shipped defaults."""
    return config_from_dict({"model": {"tier": "standard", **sections.get("model", {})},
                             "training": sections.get("training", {})})


def config_digest(config: Config) -> str:
    """SHA-256 of the config's identity (what a run trained with it records): a stored row
    whose digest differs was trained under other settings, such as defaults since changed."""
    return hashlib.sha256(json.dumps(as_stored(config.identity()), sort_keys=True).encode()).hexdigest()


def _digest(data) -> str:
    """SHA-256 of a cohort's subjects, targets and values: which test cohort metrics belong to."""
    h = hashlib.sha256()
    values = [data.values[m] for m in sorted(data.values)]
    for a in (data.subject_ids.astype(str), data.targets, data.visit_mask, *values):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="frailty")
    parser.add_argument("--subjects", type=int, default=6000)
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "nll+val_mae"))
    parser.add_argument("--baseline-features", default="last-visit", choices=("last-visit", "all-visits"))
    parser.add_argument("--out", default="runs/mean_protection")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    out = Path(args.out) / args.generator
    out.mkdir(parents=True, exist_ok=True)
    generate = GENERATORS[args.generator]
    train_frame, schema_dict = generate(args.subjects, 0)
    test_frame, _ = generate(args.subjects, 1)
    schema = Schema.from_dict(schema_dict)
    data = out / "cohort-seed0.parquet"
    if not data.exists():
        write_table(train_frame, data)

    result: dict = {"generator": args.generator, "subjects": args.subjects, "test": "fresh cohort, seed 1, "
                    f"all {args.subjects} subjects", "baseline_features": args.baseline_features, "rows": {}}
    fresh = frame_to_arrays(test_frame, schema, max_visits=4)
    train = split_cohort(frame_to_arrays(train_frame, schema, max_visits=4), config_from_dict({}).data)["train"]
    start = time.perf_counter()
    for name, model in fit_baselines(train, 0, args.baseline_features).items():
        result["rows"][name] = prediction_metrics(fresh, predict_baseline(model, fresh))
    result["baseline_seconds"] = time.perf_counter() - start
    result["oracle_true_bio_age"] = oracle_mae(train, fresh)
    for variant in variants:
        result["rows"][f"HAMNet ({variant})"] = variant_row(data, schema, VARIANTS[variant], out / variant, fresh)
    best = min(result["rows"][n]["mae"] for n in ("ridge", "hist_gradient_boosting"))
    for row in result["rows"].values():
        row["mae_vs_best_baseline"] = row["mae"] / best
    write_json_atomic(RESULTS / f"mean_protection_{args.generator}.json", result)
    print(f"{args.generator} world: trained on seed 0 ({args.subjects} subjects), tested on seed 1 (all subjects)")
    print("oracle MAE (gradient boosting given the latent biological age): "
          + ", ".join(f"{k} {v:.3f}" for k, v in result["oracle_true_bio_age"].items()))
    print(f"{'model':<30}" + "".join(f"{m:>12}" for m in METRICS) + f"{'MAE/best':>10}{'epoch':>8}")
    for name, row in result["rows"].items():
        epoch = f"{row['best_epoch']}/{row['epochs_run']}" if "best_epoch" in row else "-"
        print(f"{name:<30}" + "".join(f"{row[m]:>12.4f}" for m in METRICS)
              + f"{row['mae_vs_best_baseline']:>10.3f}{epoch:>8}")


if __name__ == "__main__":
    main()
