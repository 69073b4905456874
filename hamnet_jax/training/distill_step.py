"""`distill_step`: one optimizer step of a student against frozen teachers.

Its own short step (DESIGN example 9), not a flag in `train_step`. The state is a
`DistillState`: the student's TrainState whose params are `{"student": ..., "projections":
...}` (the FitNets projections train with the student) and which carries the teachers as
`Teacher` pytrees. Teachers run deterministically on `stop_gradient` params and are not an
argument of the differentiated function, so neither the optimizer nor the gradient ever
sees them. `ema_distill_step` is the self-distillation variant: after the update the
(single) teacher becomes an EMA of the student.

Objective: (1 - alpha) * task loss + alpha * sum_k w_k * distill_loss_k.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax

from hamnet_jax.data.batch import Batch
from hamnet_jax.transforms.losses import task_loss, task_metrics
from hamnet_jax.training.state import TrainState
from hamnet_jax.training.steps import train_step_fn
from hamnet_jax.transforms.distillation import DISTILL_LOSSES, combine_teachers, distill_loss, ema_update


@flax.struct.dataclass
class Teacher:
    """A frozen model: its apply function (static) and params (leaves)."""

    apply_fn: Callable = flax.struct.field(pytree_node=False)
    params: Any = None


class DistillState(TrainState):
    teachers: tuple[Teacher, ...] = ()


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    """Static description of the distillation objective (hashable: a jit static argument)."""

    terms: tuple[tuple[str, float], ...] = (("gaussian_kl", 1.0),)
    alpha: float = 0.5
    temperature: float = 4.0
    teacher_mode: str = "weighted"  # weighted | uncertainty (several teachers)
    teacher_weights: tuple[float, ...] | None = None
    loss: str = "gaussian_nll"
    class_weight: float = 1.0

    def __post_init__(self) -> None:
        for kind, weight in self.terms:
            if kind not in DISTILL_LOSSES:
                raise ValueError(f"DistillSpec.terms: unknown loss {kind!r}; expected one of {list(DISTILL_LOSSES)}")
            if weight < 0:
                raise ValueError(f"DistillSpec.terms: weight of {kind!r} must be >= 0, got {weight}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"DistillSpec.alpha must be in [0, 1], got {self.alpha!r}")
        if self.temperature <= 0:
            raise ValueError(f"DistillSpec.temperature must be > 0, got {self.temperature!r}")
        if self.teacher_mode not in ("weighted", "uncertainty"):
            raise ValueError(f"DistillSpec.teacher_mode must be 'weighted' or 'uncertainty', got {self.teacher_mode!r}")

    @property
    def needs_intermediates(self) -> bool:
        return any(kind == "attention_transfer" for kind, _ in self.terms)


def forward(apply_fn: Callable, params: Any, batch: Batch, intermediates: bool, **kwargs: Any) -> tuple:
    """(outputs, aux, intermediates) of one apply; intermediates is {} unless asked for."""
    if not intermediates:
        outputs, aux = apply_fn({"params": params}, batch, **kwargs)
        return outputs, aux, {}
    (outputs, aux), state = apply_fn({"params": params}, batch, mutable=["intermediates"], **kwargs)
    return outputs, aux, state["intermediates"]


def teacher_view(teachers: tuple[Teacher, ...], batch: Batch, spec: DistillSpec) -> tuple:
    """Teachers' combined outputs with the first teacher's aux and intermediates."""
    views = [forward(t.apply_fn, jax.lax.stop_gradient(t.params), batch, spec.needs_intermediates,
                     deterministic=True) for t in teachers]
    if len(views) == 1:
        return views[0]
    outputs = combine_teachers([v[0] for v in views], spec.teacher_weights, spec.teacher_mode)
    return outputs, views[0][1], views[0][2]


def distill_loss_fn(params: Any, state: DistillState, batch: Batch, key: jax.Array,
                    spec: DistillSpec) -> tuple[jax.Array, dict]:
    student = forward(state.apply_fn, params["student"], batch, spec.needs_intermediates,
                      deterministic=False, rngs={"dropout": key})
    teacher = teacher_view(state.teachers, batch, spec)
    task = task_loss(student[0], batch.targets, batch.labels, spec.loss, spec.class_weight).mean()
    metrics = {"task_loss": task}
    distill = 0.0
    for kind, weight in spec.terms:
        value = distill_loss(kind, student, teacher, projection=params.get("projections", {}),
                             temperature=spec.temperature)
        metrics[kind] = value
        distill = distill + weight * value
    total = (1.0 - spec.alpha) * task + spec.alpha * distill
    metrics.update(loss=total, **task_metrics(student[0], batch.targets, batch.labels))
    return total, metrics


def distill_step_fn(state: DistillState, batch: Batch, key: jax.Array, spec: DistillSpec,
                    accumulation_steps: int = 1) -> tuple[DistillState, dict]:
    """`train_step_fn` on the distillation objective (accumulation and loss scaling included)."""
    return train_step_fn(state, batch, key, accumulation_steps=accumulation_steps,
                         objective=functools.partial(distill_loss_fn, spec=spec))


def ema_teacher(state: DistillState, decay: float) -> DistillState:
    """The (single) teacher becomes an EMA of the student: self-distillation."""
    (teacher,) = state.teachers
    new = teacher.replace(params=ema_update(teacher.params, state.params["student"], decay))
    return state.replace(teachers=(new,))


def ema_distill_step_fn(state: DistillState, batch: Batch, key: jax.Array, spec: DistillSpec,
                        decay: float, accumulation_steps: int = 1) -> tuple[DistillState, dict]:
    """`distill_step` then teacher <- EMA(teacher, student)."""
    return train_step_fn(state, batch, key, accumulation_steps=accumulation_steps,
                         objective=functools.partial(distill_loss_fn, spec=spec),
                         after_update=functools.partial(ema_teacher, decay=decay))


distill_step = functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))(distill_step_fn)
ema_distill_step = functools.partial(jax.jit, static_argnames=("spec", "decay"),
                                     donate_argnums=(0,))(ema_distill_step_fn)
