"""The study store: a directory that survives crashes and refuses to mix studies.

    STUDY/
      study.json              the study's identity: kind, space, objectives, scheduler, seed
      trials/<id>.json        one record per trial: config, status, every completed budget's
                              metrics and losses, its run directory (rewritten atomically)
      runs/<id>/              the trial's run directory (checkpoints: a promoted or resumed
                              trial continues from them)

Every write goes through a temporary file and a rename, so a record is either the old or
the new one, never half of each. `open_study` creates the directory, or reopens it when
its `study.json` equals the one asked for; a different study in the same directory is an
error naming what differs (two studies never share state by accident). On reopening, a
trial recorded as `running` was interrupted: the engine runs that job again (from the
trial's checkpoints), so no trial is lost or started twice.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.job_dir import claim, differing_keys, stored_identity
from hamnet_jax.io_atomic import strict_json, write_json_atomic


@dataclasses.dataclass
class TrialRecord:
    trial: int
    config: dict[str, Any]
    status: str = "running"  # running | done | failed
    budget: int = 0  # the budget of the job running or last completed
    rung: int = 0
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per completed budget
    error: str = ""
    seconds: float = 0.0
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)  # the proposer's value (all parameters)

    def last(self) -> dict[str, Any] | None:
        return self.results[-1] if self.results else None


class StudyStore:
    def __init__(self, root: Path, identity: dict[str, Any]) -> None:
        self.root, self.identity = root, identity

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    def run_dir(self, trial: int) -> Path:
        return self.root / "runs" / f"{trial:05d}"

    def save(self, record: TrialRecord) -> None:
        write_json_atomic(self.trials_dir / f"{record.trial:05d}.json", dataclasses.asdict(record))

    def load_all(self) -> dict[int, TrialRecord]:
        out = {}
        for path in sorted(self.trials_dir.glob("*.json")):
            try:
                raw = json.loads(path.read_text())
                record = TrialRecord(**raw)
            except (json.JSONDecodeError, TypeError) as err:
                raise InputError(f"study {self.root}: trial record {path.name} is unreadable ({err})") from None
            out[record.trial] = record
        return out


def open_study(root: str | Path, identity: dict[str, Any], resume: bool) -> StudyStore:
    """The store at `root` for the study `identity` (JSON-able). A directory holding any
    study needs `resume=True`, and then the same identity."""
    root = Path(root)
    identity = json.loads(json.dumps(strict_json(identity), sort_keys=True, default=str))  # as stored
    stored = stored_identity(root, "study.json")
    if stored is None:
        claim(root, "study.json", identity)
    elif not resume:
        raise InputError(f"{root} already holds a study; pass --resume to continue it, or choose another directory")
    elif stored != identity:
        raise InputError(f"{root} holds a different study (its {', '.join(differing_keys(stored, identity))} "
                         "differ); resuming would mix two studies' trials")
    (root / "trials").mkdir(exist_ok=True)
    return StudyStore(root, identity)
