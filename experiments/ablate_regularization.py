"""Regularization ablation: every technique alone against no regularization, same budget.

Trains one model per row from the same initialization, for the same epochs, batch size,
batch order and seed, on the cohort split of a trained run (its preprocessing too):

* `none`: no regularization at all (dropout 0, no weight decay): the control;
* one row per `RegularizationType`, that technique alone at its default strength;
* label smoothing acts only on a classification head, which the regression model lacks:
  two more rows train with the mortality head on (`none` and `label_smoothing`, both
  "+ mortality head") and also report the head's test log loss, Brier score and AUC.

Each trained model is then measured on the test split three ways (MAE in years):
clean; with imaging removed for every test subject (modality, features and values); and
under an FGSM attack of `--epsilon` (standardized units) on the clean test inputs, built
from each model's own gradient of the Gaussian NLL.

    hamnet cohort --out cohort.parquet
    hamnet train --data cohort.parquet --tier standard --out runs/standard
    python experiments/ablate_regularization.py --run runs/standard --data cohort.parquet

Rows are written to the JSON as they finish (atomically); an interrupted run resumes with
the next technique. Writes experiments/results/ablate_regularization.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from hamnet_jax.runs.compress import load_run_splits  # noqa: E402
from hamnet_jax.data.batch import Batch  # noqa: E402
from hamnet_jax.data.batched import map_batched  # noqa: E402
from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.models.config import MODALITIES, TIERS  # noqa: E402
from hamnet_jax.optimization.regularization import (HAMNetRegularizer, RegularizationConfig,  # noqa: E402
                                                    RegularizationType)
from hamnet_jax.training.fit_options import FitOptions  # noqa: E402
from hamnet_jax.transforms.losses import gaussian_nll  # noqa: E402
from hamnet_jax.transforms.adversarial import fgsm  # noqa: E402
from hamnet_jax.transforms.augment import drop_modalities  # noqa: E402


def without_imaging(batch: Batch) -> Batch:
    dropped = np.zeros((batch.size, len(MODALITIES)), bool)
    dropped[:, MODALITIES.index("imaging")] = True
    return jax.device_get(jax.jit(drop_modalities)(batch, jnp.asarray(dropped)))


def attacked(apply, params, batch: Batch, epsilon: float) -> Batch:
    def loss_of_batch(b: Batch) -> jax.Array:
        out, _ = apply({"params": params}, b, deterministic=True)
        return gaussian_nll(out["mean"], out["log_var"], b.targets).mean()

    return jax.jit(lambda b: fgsm(loss_of_batch, b, epsilon))(batch)


def classification_metrics(predict, batch: Batch) -> dict[str, float]:
    """Log loss, Brier score and AUC (Mann-Whitney rank form) of the mortality head."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(map_batched(predict, batch, 512)["logits"], np.float64)))
    y = np.asarray(batch.labels, np.float64)
    eps = 1e-7
    ranks = np.argsort(np.argsort(p)) + 1.0
    pos = y > 0.5
    auc = (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / max(pos.sum() * (~pos).sum(), 1)
    return {"log_loss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
            "brier": float(np.mean((p - y) ** 2)), "auc": float(auc)}


def mae(predict, batch: Batch, std: float) -> float:
    out = map_batched(predict, batch, 512)
    return float(np.abs(np.asarray(out["mean"]) - np.asarray(batch.targets)).mean() * std)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tier", default="base", choices=sorted(TIERS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0, help="initialization, batch order and dropout")
    ap.add_argument("--epsilon", type=float, default=0.1, help="FGSM attack and adversarial training epsilon")
    ap.add_argument("--only", default="", help="comma-separated technique names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "ablate_regularization.json"))
    args = ap.parse_args()
    out = Path(args.out)
    setting = {"run": str(args.run), "tier": args.tier, "epochs": args.epochs, "lr": args.lr, "epsilon": args.epsilon,
               "seed": args.seed}
    store = json.loads(out.read_text()) if out.exists() else {}
    if store.get("setting") != setting:
        store = {"setting": setting, "rows": {}}

    run, _, batches = load_run_splits(args.run, args.data)
    train, val, test, std = batches["train"], batches["val"], batches["test"], run.preprocessor.target_std
    model_config = run.model_config.replace(**TIERS[args.tier], tier=args.tier, dropout=0.0)
    ft = FitOptions().config(args.epochs, 128, args.lr, args.seed)
    test_views = {"clean": test, "no imaging": without_imaging(test)}
    head = " + mortality head"
    names = ["none"] + [t.value for t in RegularizationType] + ["none" + head, "label_smoothing" + head]
    wanted = [n for n in names if not args.only or n in args.only.split(",")]
    for name in wanted:
        if name in store["rows"]:
            continue
        technique = name.removesuffix(head)
        techniques = () if technique == "none" else (RegularizationType(technique),)
        reg = HAMNetRegularizer(RegularizationConfig(enabled_techniques=techniques,
                                                     adversarial_epsilon=args.epsilon))
        config = model_config.replace(classification=name.endswith(head))
        began = time.perf_counter()
        params, result = reg.fit(config, train, val, ft)
        seconds = time.perf_counter() - began
        module = reg.prepare_model(config).module
        predict = jax.jit(lambda b, p=params, m=module: m.apply({"params": p}, b, deterministic=True)[0])
        row = {f"mae_{k.replace(' ', '_')}": mae(predict, b, std) for k, b in test_views.items()}
        row[f"mae_fgsm_{args.epsilon:g}"] = mae(predict, attacked(module.apply, params, test, args.epsilon), std)
        if config.classification:
            row.update(classification_metrics(predict, test))
        row.update(train_seconds=seconds, best_epoch=result.best_epoch, val_loss=result.history[result.best_epoch - 1]
                   ["val_loss"])
        store["rows"][name] = row
        write_json_atomic(out, store)
        print(f"{name}: {row}", flush=True)

    rows = store["rows"]
    base = rows.get("none")
    keys = ["mae_clean", "mae_no_imaging", f"mae_fgsm_{args.epsilon:g}"]
    print(f"Regularization ablation (JAX {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].device_kind}; {args.tier} tier, {args.epochs} epochs, seed {args.seed}, "
          f"{test.size} test subjects; MAE in years, change vs 'none')")
    print(f"{'technique':<34}{'clean':>8}{'d':>8}{'no imaging':>11}{'d':>8}{f'FGSM {args.epsilon:g}':>10}{'d':>8}"
          f"{'train s':>9}")
    for name in names:
        if name not in rows:
            continue
        r = rows[name]
        cells = "".join(f"{r[k]:>{w}.3f}{(r[k] - base[k]) / base[k] if base else 0.0:>+8.1%}"
                        for k, w in zip(keys, (8, 11, 10), strict=True))
        head_cells = (f"  mortality head: log loss {r['log_loss']:.4f}, Brier {r['brier']:.4f}, AUC {r['auc']:.3f}"
                      if "auc" in r else "")
        print(f"{name:<34}{cells}{r['train_seconds']:9.0f}{head_cells}")
    store.update(jax=jax.__version__, device=jax.devices()[0].device_kind, model_config=model_config.to_dict())
    write_json_atomic(out, store)


if __name__ == "__main__":
    main()
