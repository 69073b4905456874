"""Search measured: does NAS find an architecture better than the standard tier, and does
successive halving find what full-budget random search finds for a third of the training?

    python experiments/bench_search.py [--part nas|hpo|all] [--work runs/search] [--hpo-seeds 0 1 2] \
        [--annealed-seeds S ...] [--out experiments/results/bench_search.json]

* `nas` (must-hold 1): on the default cohort (6,000 subjects, `experiments/main_results.py`'s
  file), a multi-objective study over the architecture space (val_mae x batch-1 latency_ms),
  random proposals under ASHA (1 -> 2 -> 4 epochs, eta 2, 12 trials), beside the standard
  tier trained to the same 4 epochs by the same trial function. The full-budget trials'
  latencies and the standard tier's are then measured again, interleaved (9 rounds that
  alternate the models; medians), so the comparison is like for like in one process; the
  front, the plot and the verdict use those latencies (the lower-budget points keep the
  ones measured inside their trials).
  (This study predates `schedule_epochs`: each budget there had its own learning-rate
  schedule, restarted on promotion; its identity keeps it as measured.)
* `hpo` (must-hold 2: within 1% of random search's best in 3 of 3 seeds at <= 0.3x its
  trial-epochs): for seeds 0-4 (`--hpo-seeds`; the must-hold's are 0, 1, 2, on whose curves
  the rung plan was chosen, and 3, 4 are held out), on the same default cohort and the base
  tier, the same 27 random configurations of the bench's training space run twice: random
  search at the full 9 epochs, and successive halving as `hamnet search --scheduler sha
  --trials 27 --eta 3 --rungs 1,4,9` runs it (27 trials at 1 epoch, the best 9 to 4, 3 to 9;
  promoted trials resume from their checkpoints). The rungs skip epochs 2 and 3, where the
  learning rate peaks after the 1-epoch warm-up and the ranking is at its noisiest. Every
  trial's learning-rate schedule spans the 9 epochs (`schedule_epochs`, as `hamnet search`
  sets it), so a promoted trial trains exactly as its full-budget twin and the two sides
  differ only in which configurations the scheduler stops early. Reported: each side's best
  validation MAE at 9 epochs and the trial-epochs each spent; the configurations within 1%
  of random search's best; as the scale of chance differences, the median over random
  search's trials of the standard deviation of their last 3 epochs' validation MAE; how well
  the first e epochs rank the configurations (Spearman's rho against the 9-epoch result,
  e = 1..8); other rung plans (`REPLAYED`: the geometric eta-2 and eta-3 plans, ASHA,
  Hyperband) replayed on random search's curves (search/curve_replay.py: what each would
  have found and spent, exact up to float differences as a promoted trial trains as its
  twin), per seed and on
  2,000 draws of 27 configurations from all seeds' curves pooled (how often each plan ends
  within 1%); and, for `--annealed-seeds`, the ranking given by short runs on their own
  schedules (each configuration trained afresh for 1, 2 and 3 epochs).

Every study lives under `--work` and resumes when the script is run again (a finished
study is only re-read); the JSON is written after each part. Plots:
`experiments/results/bench_search_front.png` and `bench_search_convergence.png`.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from hamnet_jax.cohort.default import generate_cohort  # noqa: E402
from hamnet_jax.config import config_from_dict  # noqa: E402
from hamnet_jax.data.schema import Schema, sidecar_path  # noqa: E402
from hamnet_jax.data.tables import write_table  # noqa: E402
from hamnet_jax.io_atomic import AppendLog, write_json_atomic, write_text_atomic  # noqa: E402
from hamnet_jax.job_dir import data_identity  # noqa: E402
from hamnet_jax.runs.train import reusable_run  # noqa: E402
from hamnet_jax.search.analysis import analyze_study, result_at, trial_epochs, write_plots  # noqa: E402
from hamnet_jax.search.engine import Objective, run_study  # noqa: E402
from hamnet_jax.search.finalize import finalize_study  # noqa: E402
from hamnet_jax.search.hamnet_trial import apply_point, hamnet_trial, run_latency_ms  # noqa: E402
from hamnet_jax.search.pareto import fronts  # noqa: E402
from hamnet_jax.search.proposers import Proposer  # noqa: E402
from hamnet_jax.search.curve_replay import replay_scheduler  # noqa: E402
from hamnet_jax.search.schedulers import ASHA, FullBudget, Hyperband, SuccessiveHalving  # noqa: E402
from hamnet_jax.search.space import Choice, Float, SearchSpace  # noqa: E402
from hamnet_jax.search.spaces import architecture_space  # noqa: E402
from hamnet_jax.search.store import open_study  # noqa: E402
from hamnet_jax.search.study import share_compilations  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
DEFAULT_COHORT = ROOT / "runs" / "main" / "cohort.parquet"  # experiments/main_results.py's file
NAS = {"min_epochs": 1, "max_epochs": 4, "eta": 2, "trials": 12, "max_layers": 3, "seed": 0, "latency_rounds": 9}
HPO = {"subjects": 6000, "tier": "base", "max_epochs": 9, "eta": 3, "rungs": (1, 4, 9), "seeds": (0, 1, 2, 3, 4),
       "schedule_epochs": 9, "configurations": 27}
MUST_HOLD_SEEDS = (0, 1, 2)  # the seeds the rung plan was chosen on; 3 and 4 came after it (held out)
POOLED_DRAWS = 2000


def hpo_space() -> SearchSpace:
    return SearchSpace({
        "learning_rate": Float(3e-4, 1e-2, log=True),
        "weight_decay": Float(1e-6, 1e-2, log=True),
        "batch_size": Choice([64, 128, 256]),
        "loss": Choice(["gaussian_nll", "huber", "mse"]),
        "dropout": Float(0.0, 0.3),
    })


def cohort_file(path: Path, subjects: int) -> Path:
    """The default cohort, written every time (the bytes are deterministic): a study run on a
    cohort the generator no longer draws is then refused by its identity (the data by content)."""
    frame, schema = generate_cohort(subjects, seed=0)
    write_table(frame, path)
    write_text_atomic(path.with_name(path.stem + ".schema.yaml"), yaml.safe_dump(schema, sort_keys=False))
    return path


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on ranks; ties do not occur in these MAEs)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def last_epochs_sd(run_dir: Path, epochs: int = 3) -> float:
    """Standard deviation of a run's validation MAE over its last `epochs` epochs."""
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(np.std([h["val_mae"] for h in history[-epochs:]], ddof=1))


def study(root: Path, space: SearchSpace, objectives: list[Objective], scheduler, proposer, trial_fn,
          identity: dict) -> dict:
    store = open_study(root, identity, resume=(root / "study.json").exists())
    started = time.perf_counter()
    records = run_study(store, space, objectives, scheduler, proposer, trial_fn,
                        progress=lambda r: print(f"  {root.name}: trial {r.trial} budget {r.budget} "
                                                 f"{r.last()['metrics'].get('val_mae') if r.last() else r.error}",
                                                 flush=True))
    return {"records": records, "events": AppendLog(root / "events.jsonl").read(), "store": store,
            "seconds": time.perf_counter() - started}


def part_nas(work: Path) -> dict:
    data = cohort_file(DEFAULT_COHORT, 6000)
    cfg = NAS
    space = architecture_space(1, cfg["max_layers"])
    objectives = [Objective("val_mae"), Objective("latency_ms")]
    trial_fn = functools.partial(hamnet_trial, data=str(data))
    identity = {"bench": "nas", **{k: v for k, v in cfg.items() if k != "latency_rounds"}, "space": space.describe(),
                "data": data_identity(data)}
    run = study(work / "nas", space, objectives, ASHA(cfg["min_epochs"], cfg["max_epochs"], cfg["trials"], cfg["eta"]),
                Proposer(space, "random", cfg["trials"], cfg["seed"]), trial_fn, identity)
    records = run["records"]
    # analysis.json, plots, HParams and best/ (the best trial's run) in the study, as `hamnet search` writes
    finalize_study(run["store"], records, objectives, cfg["max_epochs"], trial_fn)
    standard_dir = work / "standard"
    standard_file = work / "standard.json"
    if not standard_file.exists():  # the standard tier: the base config, no search point, same budget
        shutil.rmtree(standard_dir, ignore_errors=True)
        write_json_atomic(standard_file, hamnet_trial({}, cfg["max_epochs"], standard_dir, -1, data=str(data)))
    standard = json.loads(standard_file.read_text())
    report = analyze_study(records, run["events"], ["val_mae", "latency_ms"])

    # batch-1 latency again, interleaved: every full-budget trial and the standard tier
    full = [t for t in records if result_at(records[t], cfg["max_epochs"])]
    dirs = {**{t: work / "nas" / "runs" / f"{t:05d}" for t in full}, "standard": standard_dir}
    rounds: dict = {k: [] for k in dirs}
    for _ in range(NAS["latency_rounds"]):
        for key, run_dir in dirs.items():
            rounds[key].append(run_latency_ms(run_dir, reps=200))
    latency = {str(k): float(np.median(v)) for k, v in rounds.items()}
    rows = [{"trial": t, "config": records[t].config, "val_mae": result_at(records[t], cfg["max_epochs"])
             ["metrics"]["val_mae"], "latency_ms": latency[str(t)], "params": result_at(records[t], cfg["max_epochs"])
             ["metrics"]["params"]} for t in full]
    # the front of the full-budget trials at the latencies measured side by side
    front = sorted(rows[i]["trial"] for i in fronts([[r["val_mae"], r["latency_ms"]] for r in rows])[0])
    winners = [r for r in rows if r["trial"] in front and r["val_mae"] < standard["val_mae"]
               and r["latency_ms"] <= latency["standard"]]
    for entry in report["all"]:  # plot the full-budget results at those latencies too
        if entry["budget"] == cfg["max_epochs"]:
            entry["values"][1] = latency[str(entry["trial"])]
    report["pareto_front"] = [{"trial": r["trial"], "objectives": {"val_mae": r["val_mae"],
                                                                  "latency_ms": r["latency_ms"]}}
                              for r in rows if r["trial"] in front]
    write_plots(report, RESULTS / "bench_search_nas",
                reference={"val_mae": standard["val_mae"], "latency_ms": latency["standard"],
                           "label": f"standard tier ({cfg['max_epochs']} epochs)"})
    for name in ("pareto_front", "convergence"):
        shutil.move(RESULTS / "bench_search_nas" / f"{name}.png", RESULTS / f"bench_search_nas_{name}.png")
    shutil.rmtree(RESULTS / "bench_search_nas", ignore_errors=True)
    return {"settings": cfg, "study_seconds": run["seconds"], "trials": len(records),
            "trial_epochs": trial_epochs(records), "front_trials": front,
            "standard": {"val_mae": standard["val_mae"], "latency_ms": latency["standard"],
                         "params": standard["params"], "latency_ms_in_trial": standard["latency_ms"]},
            "full_budget_trials": rows, "latency_rounds": {str(k): v for k, v in rounds.items()},
            "winners": winners, "holds": bool(winners), "importance": report["importance"]}


# schedulers replayed on each seed's random-search curves (search/curve_replay.py: exact up to float differences, as a
# promoted trial trains as its full-budget twin): what other rung plans would have found and
# spent; each takes the first n of the seed's configurations (the proposer's first n points)
def kept_scheduler(n: int) -> SuccessiveHalving:
    """The scheduler the hpo part runs for real: `hamnet search --scheduler sha --trials n
    --eta HPO["eta"] --rungs HPO["rungs"]` on this space."""
    return SuccessiveHalving(HPO["rungs"][0], HPO["max_epochs"], n, eta=HPO["eta"], rungs=HPO["rungs"])


REPLAYED = {
    "sha 27, rungs 1, 4, 9 (eta 3): 27 at 1, 9 at 4, 3 at 9 (the side run above)":
        (HPO["configurations"], kept_scheduler),
    "sha 27, eta 2: 27 at 1, 13 at 2, 6 at 4, 3 at 8, 1 at 9 (the plan before)":
        (27, lambda n: SuccessiveHalving(1, HPO["max_epochs"], n, eta=2)),
    "sha 27, eta 3: 27 at 1, 9 at 3, 3 at 9": (27, lambda n: SuccessiveHalving(1, HPO["max_epochs"], n, eta=3)),
    "asha 27 (eta 2, one worker)": (27, lambda n: ASHA(1, HPO["max_epochs"], n, eta=2)),
    "asha 27, rungs 1, 4, 9 (eta 3, one worker)":
        (27, lambda n: ASHA(1, HPO["max_epochs"], n, eta=3, rungs=HPO["rungs"])),
    "hyperband's most aggressive bracket: 9 at 1, 3 at 3, 1 at 9 (the first 9)":
        (9, lambda n: Hyperband(1, HPO["max_epochs"], 3, brackets=1)),
    "sha 9, eta 2: 9 at 1, 4 at 2, 2 at 4, 1 at 8, 1 at 9 (the first 9)":
        (9, lambda n: SuccessiveHalving(1, HPO["max_epochs"], n, eta=2)),
    "hyperband, all 3 brackets, eta 3 (the first 17)": (17, lambda n: Hyperband(1, HPO["max_epochs"], 3)),
    "hyperband, all 3 brackets, rungs 1, 4, 9 (the first 17)":
        (17, lambda n: Hyperband(1, HPO["max_epochs"], 3, rungs=HPO["rungs"])),
}
KEPT = "sha-" + "-".join(map(str, HPO["rungs"]))  # the real side's name (kept_scheduler)
ANNEALED_BUDGETS = (1, 2, 3)


def val_curve(run_dir: Path) -> list[float]:
    """A run's validation MAE after each epoch."""
    return [json.loads(line)["val_mae"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]


def hpo_side(root: Path, name: str, scheduler, seed: int, n: int, trial_fn, identity: dict) -> dict:
    """One side of a seed's comparison: its best validation MAE at the full budget and what it spent."""
    space = hpo_space()
    run = study(root / name, space, [Objective("val_mae")], scheduler, Proposer(space, "random", n, seed), trial_fn,
                {**identity, "side": name})
    records = run["records"]
    at_full = {t: result_at(r, HPO["max_epochs"])["metrics"]["val_mae"] for t, r in records.items()
               if result_at(r, HPO["max_epochs"])}
    best = min(at_full, key=at_full.get)
    return {"configurations": len(records), "trial_epochs": trial_epochs(records),
            "best_val_mae": at_full[best], "best_trial": best, "best_config": records[best].config,
            "seconds": run["seconds"], "full_budget_val_mae": at_full,
            "last_epochs_sd": {t: last_epochs_sd(run["store"].run_dir(t)) for t in at_full},
            "configs": {t: records[t].config for t in at_full}}


def replayed(curves: dict[int, list[float]], full: dict[int, float]) -> dict:
    """Each REPLAYED scheduler on the curves (a trial's reported value at budget b is its best
    validation MAE over epochs 1..b, as the trial reports it), against random search's best
    over the same configurations and its trial-epochs (n x the full budget)."""
    best_so_far = {t: list(np.minimum.accumulate(c)) for t, c in curves.items()}
    out = {}
    for name, (n, make) in REPLAYED.items():
        if n > len(curves):
            continue
        first = {t: best_so_far[t] for t in sorted(best_so_far)[:n]}
        r = replay_scheduler(make(n), first)
        best = min(full[t] for t in first)
        out[name] = {"configurations": n, "best_trial": r["best_trial"], "best_val_mae": r["best_loss"],
                     "random_best_val_mae": best, "relative_gap": r["best_loss"] / best - 1,
                     "epoch_ratio": r["trial_epochs"] / (n * HPO["max_epochs"])}
    return out


def pooled_replays(curves_by_seed: dict[int, dict[int, list[float]]], draws: int = POOLED_DRAWS) -> dict:
    """Each REPLAYED scheduler on `draws` random draws of n configurations from all seeds'
    curves pooled (the seeds share the cohort and differ only in the configurations drawn):
    how often it ends within 1% of random search's best over the same draw, and its mean
    gap. Three seeds say little about a scheduler that fails one time in five; this says
    how often it fails."""
    pool = [(seed, t) for seed in sorted(curves_by_seed) for t in sorted(curves_by_seed[seed])]
    best_so_far = {key: list(np.minimum.accumulate(curves_by_seed[key[0]][key[1]])) for key in pool}
    rng, out = np.random.default_rng(0), {}
    for name, (n, make) in REPLAYED.items():
        if n > len(pool):
            continue
        gaps, ratios = [], []
        for _ in range(draws):
            drawn = [pool[i] for i in rng.choice(len(pool), n, replace=False)]
            r = replay_scheduler(make(n), {i: best_so_far[key] for i, key in enumerate(drawn)})
            gaps.append(r["best_loss"] / min(best_so_far[key][-1] for key in drawn) - 1)
            ratios.append(r["trial_epochs"] / (n * HPO["max_epochs"]))
        out[name] = {"configurations": n, "draws": draws, "pool": len(pool),
                     "within_1_percent": float(np.mean(np.asarray(gaps) <= 0.01)),
                     "mean_gap": float(np.mean(gaps)), "epoch_ratio": float(np.median(ratios))}
    return out


def trained_best_val_mae(run_dir: Path, point: dict, budget: int, base: dict, data: Path, schema: Schema,
                         schedule_epochs: int = 0) -> float:
    """The best validation MAE of `point` trained for `budget` epochs over the `base` config
    into `run_dir`; a finished run is re-read if trained from this data and config (else
    refused)."""
    if not reusable_run(run_dir, data, schema, apply_point(config_from_dict(base), point, budget, 0, schedule_epochs)):
        shutil.rmtree(run_dir, ignore_errors=True)
        hamnet_trial(point, budget, run_dir, -1, data=str(data), config=base, measure_speed=False,
                     schedule_epochs=schedule_epochs)
    return min(val_curve(run_dir))


def reseeded(root: Path, configs: dict[int, dict], final: dict[int, float], trials: list[int], data: Path,
             seeds: int) -> dict:
    """Where the kept scheduler ended on another configuration than random search: both
    configurations trained again to the full budget with training seeds 1..`seeds` (seed 0
    is the study's run). Random search's best is the least of 27 noisy results, so it is
    biased low (the winner's curse); the mean over training seeds says whether the gap is
    the configurations' or one seed's."""
    schema, out = Schema.load(sidecar_path(data)), {}
    for t in trials:
        values = [final[t]]
        for training_seed in range(1, seeds + 1):
            base = {"model": {"tier": HPO["tier"]}, "training": {"seed": training_seed}}
            values.append(trained_best_val_mae(root / f"{t:05d}-seed{training_seed}", configs[t], HPO["max_epochs"],
                                               base, data, schema, HPO["schedule_epochs"]))
        out[str(t)] = {"val_mae_by_training_seed": values, "mean": float(np.mean(values)),
                       "sd": float(np.std(values, ddof=1))}
    return out


def annealed_ranking(root: Path, configs: dict[int, dict], final: dict[int, float], data: Path) -> dict:
    """How well a short run on its own schedule ranks the configurations: each one trained
    afresh for b epochs, its warm-up the same share of its schedule as the full run's
    (1 of 9 epochs), the cosine decay ending at b; Spearman's rho against the full-budget
    result, and which trial each budget ranks first."""
    out, schema = {}, Schema.load(sidecar_path(data))
    for budget in ANNEALED_BUDGETS:
        base = {"model": {"tier": HPO["tier"]}, "training": {"warmup_epochs": budget / HPO["max_epochs"]}}
        values = {}
        for t, config in configs.items():
            values[t] = trained_best_val_mae(root / f"budget{budget}" / f"{t:05d}", config, budget, base, data, schema)
        ids = sorted(values)
        out[str(budget)] = {"rank_correlation": spearman([values[t] for t in ids], [final[t] for t in ids]),
                            "first": min(ids, key=values.get), "val_mae": values}
    return out


def part_hpo(work: Path, seeds: tuple[int, ...], annealed: tuple[int, ...], reseeds: int = 2) -> dict:
    data = cohort_file(DEFAULT_COHORT, HPO["subjects"])
    trial_fn = functools.partial(hamnet_trial, data=str(data), config={"model": {"tier": HPO["tier"]}},
                                 measure_speed=False, schedule_epochs=HPO["schedule_epochs"])
    out = {"settings": {**HPO, "seeds": seeds, "space": hpo_space().describe()}, "seeds": {}}
    # random search's identity leaves out eta and rungs (settings of the scheduler it is compared with)
    identity = {"bench": "hpo", "data": data_identity(data),
                **{k: v for k, v in out["settings"].items() if k not in ("seeds", "eta", "rungs")}}
    n = HPO["configurations"]
    curves_by_seed: dict[int, dict[int, list[float]]] = {}
    kept_settings = {"eta": HPO["eta"], "rungs": list(HPO["rungs"])}
    for seed in seeds:
        root = work / f"hpo-{HPO['subjects']}-seed{seed}"
        # random search first: its curves are what the replays read
        row = {name: hpo_side(root, name, scheduler, seed, n, trial_fn, {**identity, "seed": seed, **extra})
               for name, scheduler, extra in (("random_full_budget", FullBudget(HPO["max_epochs"], n), {}),
                                              (KEPT, kept_scheduler(n), kept_settings))}
        kept, rs_row = row[KEPT], row["random_full_budget"]
        configs = rs_row.pop("configs")
        kept.pop("configs")
        row["epoch_ratio"] = kept["trial_epochs"] / rs_row["trial_epochs"]
        row["relative_gap"] = kept["best_val_mae"] / rs_row["best_val_mae"] - 1
        row["within_1_percent"] = row["relative_gap"] <= 0.01
        row["same_configuration"] = kept["best_config"] == rs_row["best_config"]
        # how much a trial's best validation MAE moves by chance: the spread of its last 3 epochs
        row["epoch_noise_sd"] = float(np.median(list(rs_row["last_epochs_sd"].values())))
        final = rs_row["full_budget_val_mae"]
        # the configurations within 1% of random search's best: how many a scheduler may end on
        row["within_1_percent_of_best"] = sorted(t for t in final if final[t] <= 1.01 * rs_row["best_val_mae"])
        curves = {t: val_curve(root / "random_full_budget" / "runs" / f"{t:05d}") for t in final}
        ids = sorted(final)
        # how well a low rung ranks the configurations: Spearman's rho between random search's
        # trials' best validation MAE over their first e epochs and over all 9
        row["rank_correlation"] = {str(e): spearman([min(curves[t][:e]) for t in ids], [final[t] for t in ids])
                                   for e in range(1, HPO["max_epochs"])}
        row["replayed"] = replayed(curves, final)
        if seed in annealed:
            row["annealed"] = annealed_ranking(root / "annealed", configs, final, data)
        if not row["same_configuration"] and reseeds:
            picks = [rs_row["best_trial"], kept["best_trial"]]
            row["reseeded"] = reseeded(root / "reseeded", configs, final, picks, data, reseeds)
            means = [row["reseeded"][str(t)]["mean"] for t in picks]
            row["reseeded_relative_gap"] = means[1] / means[0] - 1
        out["seeds"][str(seed)] = row
        curves_by_seed[seed] = curves
    judged = [r for s, r in out["seeds"].items() if int(s) in MUST_HOLD_SEEDS]
    out["must_hold_seeds"] = [s for s in MUST_HOLD_SEEDS if str(s) in out["seeds"]]
    out["holds"] = len(judged) == len(MUST_HOLD_SEEDS) and all(r["within_1_percent"] and r["epoch_ratio"] <= 0.3
                                                                for r in judged)
    out["held_out_within_1_percent"] = {s: r["within_1_percent"] for s, r in out["seeds"].items()
                                        if int(s) not in MUST_HOLD_SEEDS}
    out["replayed_within_1_percent"] = {name: sum(r["replayed"][name]["relative_gap"] <= 0.01
                                                  for r in out["seeds"].values()) for name in REPLAYED}
    out["pooled_replays"] = pooled_replays(curves_by_seed)
    out["kept"] = {"scheduler": KEPT, "eta": HPO["eta"], "rung_epochs": kept_scheduler(n).rungs}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("nas", "hpo", "all"), default="all")
    ap.add_argument("--work", default="runs/search")
    ap.add_argument("--out", default=str(RESULTS / "bench_search.json"))
    ap.add_argument("--hpo-seeds", type=int, nargs="+", default=list(HPO["seeds"]),
                    help="the hpo part's seeds (the must-hold's are 0 1 2)")
    ap.add_argument("--annealed-seeds", type=int, nargs="*", default=[],
                    help="the hpo part's seeds that also measure short runs on their own schedules (27 runs each)")
    ap.add_argument("--reseeds", type=int, default=2,
                    help="where the kept scheduler and random search end on different configurations, train both "
                         "again with this many other training seeds (0: none)")
    args = ap.parse_args()
    if args.reseeds < 0:
        ap.error(f"--reseeds {args.reseeds}: expected 0 (none) or more training seeds")
    if set(args.annealed_seeds) - set(args.hpo_seeds):
        ap.error(f"--annealed-seeds {sorted(set(args.annealed_seeds) - set(args.hpo_seeds))}: not among --hpo-seeds "
                 f"{args.hpo_seeds} (the short runs rank each seed's configurations against its random search)")
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    share_compilations(work / "jax-cache")  # as `hamnet search` does: trials reuse each other's programs
    parts = (("nas", lambda: part_nas(work)),
             ("hpo", lambda: part_hpo(work, tuple(args.hpo_seeds), tuple(args.annealed_seeds), args.reseeds)))
    for part, fn in parts:
        if args.part in (part, "all"):
            result = fn()
            store = json.loads(out.read_text()) if out.exists() else {}  # the other part may have finished meanwhile
            store[part] = result
            write_json_atomic(out, store)
            print(json.dumps({k: v for k, v in result.items() if k not in ("latency_rounds",)}, indent=1,
                             default=str)[:4000], flush=True)


if __name__ == "__main__":
    main()
