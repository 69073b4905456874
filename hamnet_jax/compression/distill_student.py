"""`distill_student`: train a student HAMNet against frozen teachers with `distill_step`.

The loop is `fit` (precision, mesh, accumulation, checkpoints and resume included); only
the objective and the state differ (a `Plan`). Self-distillation updates an EMA copy of
the student as its teacher after every step.
"""

from __future__ import annotations

import dataclasses

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.config import TrainingConfig
from hamnet_jax.training.distill_step import DistillSpec, DistillState, Teacher, distill_loss_fn, ema_teacher, forward
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.loop import FitResult
from hamnet_jax.training.plan import Plan
from hamnet_jax.transforms.distillation import projection_init


def make_teachers(teachers: Sequence[tuple[HAMNetConfig, Any]]) -> tuple[Teacher, ...]:
    """Frozen teachers; params copied to host arrays so a donated step can never free the
    caller's copies."""
    return tuple(Teacher(HAMNet(cfg).apply, jax.tree_util.tree_map(np.array, params)) for cfg, params in teachers)


def initial_student_params(student: HAMNetConfig, teacher: Teacher, example: Batch, spec: DistillSpec,
                           key: jax.Array, params: Any) -> dict[str, Any]:
    """{"student": params, "projections": FitNets projections (empty without feature matching)}."""
    projections: Any = {}
    if any(kind == "feature_matching" for kind, _ in spec.terms):
        zeros = lambda s: jnp.zeros(s.shape, s.dtype)
        s_aux = jax.tree_util.tree_map(zeros, jax.eval_shape(
            lambda p: forward(HAMNet(student).apply, p, example, False)[1], params))
        t_aux = jax.tree_util.tree_map(zeros, jax.eval_shape(
            lambda p: forward(teacher.apply_fn, p, example, False)[1], teacher.params))
        projections = projection_init(s_aux, t_aux, key)
    return {"student": params, "projections": projections}


def distill_student(teachers: Sequence[tuple[HAMNetConfig, Any]], student: HAMNetConfig, train: Batch,
                    val: Batch, spec: DistillSpec, cfg: TrainingConfig, ema_decay: float | None = None,
                    student_params: Any = None, options: FitOptions | None = None) -> FitResult:
    """Distill `teachers` into a fresh (or given) `student`; `ema_decay` set = self-distillation
    from an EMA of the student (then `teachers` must be empty). The result's params are the
    student's only; its `opt_state` also covers the projections."""
    options = options or FitOptions()
    if spec.needs_intermediates and cfg.visit_packing:
        # attention transfer compares the student's and the teachers' attention maps row by row;
        # visit packing would give the student's maps its packed rows and the teachers' every slot
        cfg = dataclasses.replace(cfg, visit_packing=False)
    example = train.take(np.arange(min(2, train.size)))
    key_model, key_proj = jax.random.split(jax.random.key(cfg.seed))
    if student_params is None:
        student_params = init_params(HAMNet(student), example, key_model)
    after_update = None
    if ema_decay is not None:
        if teachers:
            raise ValueError("self-distillation (ema_decay set) uses the student's EMA as teacher; pass no teachers")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}")
        frozen = make_teachers([(student, student_params)])
        after_update = functools.partial(ema_teacher, decay=ema_decay)
    else:
        if not teachers:
            raise ValueError("distill_student needs at least one teacher (or ema_decay for self-distillation)")
        frozen = make_teachers(teachers)
    params = initial_student_params(student, frozen[0], example, spec, key_proj, student_params)
    plan = Plan(init_params=params, objective=functools.partial(distill_loss_fn, spec=spec),
                after_update=after_update, state_cls=DistillState, state_fields={"teachers": frozen},
                eval_params=lambda p: p["student"])
    result = options.fit(student, cfg, train, val, plan)
    result.params = result.params["student"]
    return result
