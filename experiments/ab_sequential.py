"""The always-valid sequential test under peeking: false-positive rate when A = B and
power at small effects, beside a fixed-horizon z-test peeked at the same way.

    python experiments/ab_sequential.py [--out experiments/results/ab_sequential.json]

1,000 simulated experiments per effect (unit-variance normal outcomes, alternate
assignment), the mSPRT (tau = 0.1, plug-in pooled variance) checked after every 100
observations up to 10,000, alpha = 0.05.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hamnet_jax.io_atomic import write_json_atomic  # noqa: E402
from hamnet_jax.monitoring.ab_statistics import simulate_sequential  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "ab_sequential.json"))
    args = ap.parse_args()
    rows = [simulate_sequential(effect, experiments=1000, peek_every=100, max_observations=10000, tau=0.1,
                                alpha=0.05, seed=0) for effect in (0.0, 0.05, 0.1, 0.2)]
    write_json_atomic(Path(args.out), {"alpha": 0.05, "tau": 0.1, "rows": rows})
    print("| effect (SD) | mSPRT rejection rate | mean observations at stop | fixed-horizon z-test, peeked |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['effect']} | {r['rejection_rate']:.3f} | {r['mean_observations_at_stop']:.0f} | "
              f"{r['naive_peeking_rejection_rate']:.3f} |")


if __name__ == "__main__":
    main()
