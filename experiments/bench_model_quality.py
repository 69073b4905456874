"""Model quality on worlds nobody tuned for: HAMNet (the standard tier, default config) beside
ridge, gradient boosting and an oracle, on the default, frailty and interaction cohorts,
over several seeds.

    python experiments/bench_model_quality.py [--worlds hamnet,frailty,interactions] [--seeds 0,1,2]
        [--subjects 6000] [--tables diabetes,breast_cancer] [--folds 5] [--variants default]
        [--out runs/model_quality]

For each world and seed s: every model trains on a cohort drawn with seed s (HAMNet selects
its epoch and calibrates its intervals on that cohort's validation split; the baselines fit
its training split's last visits) and is tested on a fresh cohort of the same world (seed
1000 + s, all its subjects). The oracle is gradient boosting given the simulator's latent
biological age (experiments/bench_mean_protection.py: no model sees it). Per world: the
median and range over seeds of each model's test MAE, HAMNet's MAE over boosting's, and the
share of boosting's gap to the oracle that HAMNet closes ((GBM - HAMNet) / (GBM - oracle):
1 reaches the oracle, 0 ties boosting, negative is worse than boosting); 90% coverage and
training seconds. A finished run directory is reused on a rerun, and the results file keeps
the rows of variants a rerun does not name (so a variant is added without retraining the rest)
while the variant still resolves to the config its row was trained with (each HAMNet row holds
its config's digest: a row trained under defaults since changed is dropped, not shown).

Small real tables (scikit-learn's bundled diabetes and breast-cancer tables, read from the
installed package: nothing is downloaded) as one-visit cohorts, through `hamnet cv`'s
cross-validation (runs/cross_validation.py, `--folds` folds, the baselines on the same
folds): HAMNet's R^2 over ridge's on diabetes, and its AUROC on breast_cancer (an
outcome-only model).
Prints a table; writes experiments/results/bench_model_quality.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # (run as a script: the repository's packages)

import pandas as pd  # noqa: E402

from experiments.bench_mean_protection import config_digest, oracle_mae, variant_config, variant_row  # noqa: E402
from hamnet_jax.cohort.default import generate_cohort  # noqa: E402
from hamnet_jax.cohort.frailty import generate_frailty_cohort  # noqa: E402
from hamnet_jax.cohort.interactions import generate_interactions_cohort  # noqa: E402
from hamnet_jax.config import Config, config_from_dict  # noqa: E402
from hamnet_jax.data.arrays import frame_to_arrays  # noqa: E402
from hamnet_jax.data.dataset import split_cohort  # noqa: E402
from hamnet_jax.data.schema import Schema  # noqa: E402
from hamnet_jax.data.tables import write_table  # noqa: E402
from hamnet_jax.evaluation.baselines import fit_baselines, predict_baseline  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.runs.cross_validation import cross_validate  # noqa: E402
from hamnet_jax.runs.evaluate import prediction_metrics  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_model_quality.json"
WORLDS = {"hamnet": generate_cohort, "frailty": generate_frailty_cohort, "interactions": generate_interactions_cohort}
FRESH_SEED = 1000  # the test cohort of seed s is drawn with FRESH_SEED + s
# each variant: the standard tier with these config sections (default: the shipped defaults)
VARIANTS: dict[str, dict[str, dict]] = {
    "default": {},
    # what the defaults were before this benchmark chose them (dropout 0.1, weight decay 1e-4,
    # the plain Gaussian NLL, the epoch of the lowest validation NLL, the last step's weights)
    "previous_defaults": {"model": {"dropout": 0.1},
                          "training": {"weight_decay": 1e-4, "loss": "gaussian_nll", "selection_metric": "val_loss",
                                       "weight_average_epochs": 0.0}},
    "slower+patient": {"training": {"learning_rate": 1e-3, "early_stop_patience": 16, "num_epochs": 60}},
    "piecewise_linear": {"model": {"clinical_embedding": "piecewise_linear"}},  # Gorishniy et al. 2022
    "base_tier": {"model": {"tier": "base"}},
    # validation, the chosen epoch and the saved model on a moving average of the weights over
    # about 1.5 epochs (training/weight_averaging.py)
    "weight_average": {"training": {"weight_average_epochs": 1.5}},
    "piecewise_linear+weight_average": {"model": {"clinical_embedding": "piecewise_linear"},
                                        "training": {"weight_average_epochs": 1.5}},
}
BASELINES = ("ridge", "hist_gradient_boosting")


def one_seed(world: str, seed: int, subjects: int, variants: list[str], out: Path) -> dict:
    """Every model's test metrics on one world and seed."""
    generate = WORLDS[world]
    train_frame, schema_dict = generate(subjects, seed)
    test_frame, _ = generate(subjects, FRESH_SEED + seed)
    schema = Schema.from_dict(schema_dict)
    folder = out / world / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "cohort.parquet"
    write_table(train_frame, data)  # (every time: a run trained on a cohort the generator no longer draws is refused)
    fresh = frame_to_arrays(test_frame, schema, max_visits=4)
    train = split_cohort(frame_to_arrays(train_frame, schema, max_visits=4), config_from_dict({}).data)["train"]
    rows = {name: prediction_metrics(fresh, predict_baseline(model, fresh))
            for name, model in fit_baselines(train, seed, "last-visit").items()}
    rows["oracle"] = {"mae": oracle_mae(train, fresh)["bio_age"]}
    for variant in variants:
        rows[f"HAMNet ({variant})"] = variant_row(data, schema, seeded(variant, seed), folder / variant, fresh)
    return rows


def seeded(variant: str, seed: int) -> dict[str, dict]:
    """A variant's config sections, trained with `seed`."""
    sections = VARIANTS[variant]
    return {**sections, "training": {"seed": seed, **sections.get("training", {})}}


TABLES = ("diabetes", "breast_cancer")
TABLE_METRICS = ("mae", "r2", "coverage_90", "auroc", "log_loss")


def real_table(name: str) -> tuple[pd.DataFrame, dict]:
    """A scikit-learn table as a one-visit cohort (frame, schema dict): `diabetes` (442
    patients, 10 baseline variables; target: disease progression after a year) or
    `breast_cancer` (569 tumours, 30 nuclear features; outcome: malignant)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    if name == "diabetes":
        bunch, column, role = load_diabetes(as_frame=True), "progression", "target"
        label = bunch.target
    else:
        bunch, column, role = load_breast_cancer(as_frame=True), "malignant", "outcome"
        label = 1 - bunch.target  # scikit-learn codes benign as 1
    features = bunch.data.rename(columns=lambda c: c.replace(" ", "_"))
    ids = pd.DataFrame({"subject_id": [f"{name}-{i:04d}" for i in range(len(features))], "visit": 0,
                        "time": 0.0, column: label.to_numpy()})
    schema = {"subject_id": "subject_id", "visit": "visit", "time": "time", role: column,
              "modalities": {"clinical": list(features.columns)}}
    return pd.concat([ids, features], axis=1), schema


def table_rows(name: str, folds: int, variants: list[str], out: Path) -> dict:
    """Cross-validated metrics (mean over folds) of each variant and of the baselines on one table."""
    frame, schema_dict = real_table(name)
    folder = out / "tables" / name
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "table.parquet"
    if not data.exists():
        write_table(frame, data)
    rows: dict = {}
    for variant in variants:
        config = table_config(variant, outcome="outcome" in schema_dict)
        summary = cross_validate(data, Schema.from_dict(schema_dict), config, folder / variant, folds=folds,
                                 baseline_features="last-visit", progress=False)
        for model, metrics in summary["models"].items():
            key = f"HAMNet ({variant})" if model == "HAMNet" else model
            rows.setdefault(key, {m: metrics[m]["mean"] for m in TABLE_METRICS if m in metrics}
                            | {f"{m}_sd": metrics[m]["sd"] for m in TABLE_METRICS if m in metrics})
        rows[f"HAMNet ({variant})"]["config_sha256"] = config_digest(config)
    if "ridge" in rows:
        for key, row in rows.items():
            if key.startswith("HAMNet"):
                row["r2_vs_ridge"] = row["r2"] / rows["ridge"]["r2"]
    return rows


def table_config(variant: str, outcome: bool) -> Config:
    """A variant's config for a small table; an outcome-only model drops the regression head's settings."""
    sections = VARIANTS[variant]
    training = dict(sections.get("training", {}))
    if outcome:
        training = {k: v for k, v in training.items() if k != "loss" and v != "val_mae"}
    return variant_config({"model": sections.get("model", {}), "training": training})


def kept_rows(previous: dict, fresh: dict[int, dict], current: Callable[[int], dict[str, str]]) -> dict[int, dict]:
    """Each seed's rows: those just measured, and the variants' rows an earlier run of the same
    seeds kept that this one did not run (a run adds variants without retraining the others; the
    baselines and the reused runs give the same numbers), while their variant still resolves to
    the config they were trained with (`current(seed)`: each variant's config digest now; see
    `still_current`). Another set of seeds starts afresh."""
    stored = {int(seed): rows for seed, rows in previous.items()}
    if set(stored) != set(fresh):
        return fresh
    return {seed: {**still_current(stored[seed], current(seed)), **rows} for seed, rows in fresh.items()}


def still_current(rows: dict[str, dict], digests: dict[str, str]) -> dict[str, dict]:
    """The stored HAMNet rows whose variant still resolves to the config they were trained with
    (`digests`: row name -> its variant's config digest now). A row of a variant since redefined,
    or trained under defaults since changed, is dropped rather than shown beside today's."""
    return {name: row for name, row in rows.items()
            if name in digests and row.get("config_sha256") == digests[name]}


def world_digests(seed: int) -> dict[str, str]:
    """Row name -> config digest of every variant on a world, at `seed`."""
    return {f"HAMNet ({v})": config_digest(variant_config(seeded(v, seed))) for v in VARIANTS}


def table_digests(table: str) -> dict[str, str]:
    """Row name -> config digest of every variant on a small table."""
    outcome = "outcome" in real_table(table)[1]
    return {f"HAMNet ({v})": config_digest(table_config(v, outcome)) for v in VARIANTS}


def summarize(per_seed: dict[int, dict]) -> dict:
    """Median and range over seeds of each model's MAE; HAMNet against boosting and the oracle."""
    models = list(next(iter(per_seed.values())))
    out: dict = {}
    for model in models:
        maes = [rows[model]["mae"] for rows in per_seed.values()]
        entry = {"mae_median": statistics.median(maes), "mae_min": min(maes), "mae_max": max(maes)}
        if model.startswith("HAMNet"):
            gbm = [rows["hist_gradient_boosting"]["mae"] for rows in per_seed.values()]
            oracle = [rows["oracle"]["mae"] for rows in per_seed.values()]
            entry["vs_gbm_median"] = statistics.median(h / g for h, g in zip(maes, gbm, strict=True))
            entry["gap_closed_median"] = statistics.median(
                (g - h) / (g - o) for h, g, o in zip(maes, gbm, oracle, strict=True))
            entry["coverage_90_median"] = statistics.median(rows[model]["coverage_90"] for rows in per_seed.values())
            entry["train_seconds_median"] = statistics.median(
                rows[model]["train_seconds"] for rows in per_seed.values())
        out[model] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", default=",".join(WORLDS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--subjects", type=int, default=6000)
    parser.add_argument("--tables", default=",".join(TABLES), help="small real tables ('' for none)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", default="default")
    parser.add_argument("--out", default="runs/model_quality")
    args = parser.parse_args()
    worlds, variants = [w for w in args.worlds.split(",") if w], args.variants.split(",")
    tables = [t for t in args.tables.split(",") if t]
    for name, known in ((worlds, WORLDS), (variants, VARIANTS), (tables, TABLES)):
        unknown = [x for x in name if x not in known]
        if unknown:
            raise SystemExit(f"unknown {unknown}; expected some of {list(known)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result = {"subjects": args.subjects, "seeds": seeds, "test": f"fresh cohort of the same world, seed "
              f"{FRESH_SEED} + s, all {args.subjects} subjects", "baseline_features": "last-visit",
              "worlds": dict(previous.get("worlds", {})), "folds": args.folds,
              "tables": dict(previous.get("tables", {}))}
    for world in worlds:
        per_seed = {seed: one_seed(world, seed, args.subjects, variants, Path(args.out)) for seed in seeds}
        per_seed = kept_rows(result["worlds"].get(world, {}).get("per_seed", {}), per_seed, world_digests)
        result["worlds"][world] = {"per_seed": per_seed, "summary": summarize(per_seed)}
        write_json_atomic(RESULTS, result)  # (after each world: a long run keeps what it finished)
    for table in tables:
        result["tables"][table] = {**still_current(result["tables"].get(table, {}), table_digests(table)),
                                   **table_rows(table, args.folds, variants, Path(args.out))}
        write_json_atomic(RESULTS, result)
    print(f"test MAE, median [min-max] over seeds {seeds}, fresh cohorts of {args.subjects} subjects")
    print(f"{'world':<14}{'model':<26}{'MAE':>22}{'/GBM':>8}{'gap closed':>12}{'cov90':>8}{'train s':>9}")
    for world, entry in result["worlds"].items():
        for model, s in entry["summary"].items():
            spread = f"{s['mae_median']:.3f} [{s['mae_min']:.3f}-{s['mae_max']:.3f}]"
            extra = (f"{s['vs_gbm_median']:>8.3f}{s['gap_closed_median']:>12.2f}{s['coverage_90_median']:>8.3f}"
                     f"{s['train_seconds_median']:>9.0f}") if "vs_gbm_median" in s else ""
            print(f"{world:<14}{model:<26}{spread:>22}{extra}")
    print(f"\nsmall real tables, {args.folds}-fold cross-validation (mean over folds)")
    print(f"{'table':<14}{'model':<40}{'MAE':>9}{'R2':>8}{'R2/ridge':>10}{'cov90':>8}{'AUROC':>8}")
    for table, rows in result["tables"].items():
        for model, r in rows.items():
            cells = [f"{r[k]:.3f}" if k in r else "-" for k in ("mae", "r2", "r2_vs_ridge", "coverage_90", "auroc")]
            print(f"{table:<14}{model:<40}{cells[0]:>9}{cells[1]:>8}{cells[2]:>10}{cells[3]:>8}{cells[4]:>8}")


if __name__ == "__main__":
    main()
