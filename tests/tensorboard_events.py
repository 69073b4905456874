"""Reading TensorBoard event files back, for the tests that check a job wrote them."""

from __future__ import annotations

from pathlib import Path


def scalars(log_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{run (the folder under `log_dir`, "." for itself): {tag: [(step, value), ...]}} of
    every event file below `log_dir`, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for folder in sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(folder))
        events.Reload()
        out[str(folder.relative_to(log_dir))] = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
                                                 for tag in events.Tags()["scalars"]}
    return out
