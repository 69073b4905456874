"""Where HAMNet's error on the interaction world comes from: its residuals on the fresh test
cohort grouped by the simulator's named interactions, and what learning each group's mean
effect would be worth.

    python experiments/interactions_residuals.py [--seeds 0 1 2] [--subjects 6000] [--out runs/model_quality]

For each seed s, the standard tier with the default config trained on the interaction
cohort of seed s (`experiments/bench_model_quality.py`'s run: reused when that benchmark
trained it, else trained here into the same directory) predicts the fresh cohort of seed
1000 + s. Its residuals (prediction - age) are grouped by:

* gene x environment: carriers of the simulator's risk variant who smoke (their markers
  look 8 years older) or are inactive (5 years), and everyone else;
* gene x biology: carriers of the variant that makes half the markers three times as steep.

Reported per group: subjects, mean residual (bias), MAE; and the MAE left after subtracting
each group's mean residual from its subjects (the most that learning the interactions'
mean effects could win, measured on the test cohort itself). The carriers are read from
each subject's genotype columns, smoking from its lifestyle columns, inactivity from the
physical-activity value the simulator derives from it (cohort/interactions.py); a subject
whose genotype is missing falls in its own group.
Prints a table; writes experiments/results/interactions_residuals.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # (run as a script: the repository's packages)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from experiments.bench_mean_protection import variant_row  # noqa: E402
from hamnet_jax.cohort.interactions import generate_interactions_cohort, interaction_variant_columns  # noqa: E402
from hamnet_jax.data.arrays import frame_to_arrays  # noqa: E402
from hamnet_jax.data.schema import Schema  # noqa: E402
from hamnet_jax.data.tables import write_table  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.runs.evaluate import predict_run  # noqa: E402
from hamnet_jax.runs.run_dir import load_run  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "interactions_residuals.json"
FRESH_SEED = 1000  # as experiments/bench_model_quality.py draws its test cohorts
INACTIVE = -0.5  # the simulator's threshold on its latent activity (GXE_YEARS["inactivity"])


def subject_groups(frame: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Per subject: carrier of the gene x environment / gene x biology variant (NaN when the
    genotype is missing), smoker (status 2), inactive; and the last visit's age."""
    genetic, columns = schema["modalities"]["genetic"], interaction_variant_columns()
    per_subject = frame.sort_values("visit").groupby("subject_id")
    out = per_subject.agg(age=("age", "last"), smoking=("smoking_status", "max"),
                          activity_met=("physical_activity_met", "median"))
    for name, variant in (("gxe_carrier", "gene_x_environment"), ("gxb_carrier", "gene_x_biology")):
        dosage = per_subject[genetic[columns[variant]]].first()
        out[name] = np.where(dosage.isna(), np.nan, (dosage >= 1).astype(float))
    # the simulator draws the activity value as exp(7.2 + 0.8 activity) x noise
    out["inactive"] = ((np.log(out["activity_met"]) - 7.2) / 0.8 < INACTIVE).astype(float)
    out["smoker"] = (out["smoking"] == 2).astype(float)
    return out


def grouped(residual: pd.Series, groups: pd.DataFrame, keys: list[str]) -> list[dict]:
    table = residual.groupby([groups[k] for k in keys], dropna=False)
    return [{"group": dict(zip(keys, [None if pd.isna(v) else float(v) for v in np.atleast_1d(key)], strict=True)),
             "subjects": int(r.size), "bias": float(r.mean()), "mae": float(r.abs().mean())} for key, r in table]


def one_seed(seed: int, subjects: int, out: Path) -> dict:
    train_frame, schema_dict = generate_interactions_cohort(subjects, seed)
    test_frame, _ = generate_interactions_cohort(subjects, FRESH_SEED + seed)
    schema = Schema.from_dict(schema_dict)
    folder = out / "interactions" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "cohort.parquet"
    write_table(train_frame, data)
    fresh = frame_to_arrays(test_frame, schema, max_visits=4)
    row = variant_row(data, schema, {"training": {"seed": seed}}, folder / "default", fresh)
    prediction = pd.Series(predict_run(load_run(folder / "default"), fresh)["prediction"],
                           index=pd.Index(fresh.subject_ids.astype(str), name="subject_id"))
    groups = subject_groups(test_frame, schema_dict).loc[prediction.index]
    residual = prediction - groups["age"]
    interactions = ["gxe_carrier", "smoker", "inactive", "gxb_carrier"]
    without_means = residual - residual.groupby([groups[k] for k in interactions], dropna=False).transform("mean")
    return {"test_mae": row["mae"], "mae": float(residual.abs().mean()),
            "mae_without_group_means": float(without_means.abs().mean()),
            "gene_x_smoking": grouped(residual, groups, ["gxe_carrier", "smoker"]),
            "gene_x_inactivity": grouped(residual, groups, ["gxe_carrier", "inactive"]),
            "gene_x_biology": grouped(residual, groups, ["gxb_carrier"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--subjects", type=int, default=6000)
    ap.add_argument("--out", default="runs/model_quality", help="bench_model_quality.py's --out (its runs are reused)")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    seeds = {str(s): one_seed(s, args.subjects, Path(args.out)) for s in args.seeds}
    result = {"subjects": args.subjects, "seeds": seeds,
              "median_mae": float(np.median([r["mae"] for r in seeds.values()])),
              "median_mae_without_group_means": float(np.median([r["mae_without_group_means"]
                                                                 for r in seeds.values()]))}
    write_json_atomic(args.results, result)
    for seed, r in seeds.items():
        print(f"seed {seed}: MAE {r['mae']:.3f}; without the interaction groups' mean residuals "
              f"{r['mae_without_group_means']:.3f}")
        for part in ("gene_x_smoking", "gene_x_inactivity", "gene_x_biology"):
            for g in r[part]:
                print(f"  {part:18s} {g['group']}: {g['subjects']:5d} subjects, bias {g['bias']:+.2f}, "
                      f"MAE {g['mae']:.2f}")
    print(f"median MAE {result['median_mae']:.3f}, without the groups' mean residuals "
          f"{result['median_mae_without_group_means']:.3f}; wrote {args.results}")


if __name__ == "__main__":
    main()
