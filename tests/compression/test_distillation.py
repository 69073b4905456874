"""Distillation: a battery over every loss under jit, the step's gradient isolation, the
student sizing rule, the facade and `hamnet distill`."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hamnet_jax.compression.distillation import distillation_spec

from hamnet_jax.cli import main
from hamnet_jax.data.batch import random_batch
from hamnet_jax.errors import InputError
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.optimization.knowledge_distillation import (DistillationConfig, DistillationMethod,
                                                            HAMNetKnowledgeDistillation)
from hamnet_jax.runs.run_dir import load_run
from hamnet_jax.training.distill_step import (DistillSpec, DistillState, Teacher, distill_loss_fn,
                                              distill_step, ema_distill_step, forward)
from hamnet_jax.training.state import count_params
from hamnet_jax.transforms import distillation as kd
from hamnet_jax.compression.student import counts_by_width, param_count, student_config

from ..tensorboard_events import scalars

CFG = HAMNetConfig.from_tier("base", clinical_dim=12, imaging_dim=48, genetic_dim=40, lifestyle_dim=6,
                             imaging_group_size=16, genetic_group_size=16, classification=True,
                             lifestyle_cardinalities=(3, 4))
SMALL = CFG.replace(embed_dim=16)


@pytest.fixture(scope="module")
def views():
    """(outputs, aux, intermediates) of a teacher and a narrower student on one batch."""
    batch = random_batch(CFG, 16, seed=1)
    teacher = init_params(HAMNet(CFG), batch, jax.random.key(0))
    student = init_params(HAMNet(SMALL), batch, jax.random.key(1))
    run = jax.jit(lambda p, b, c: forward(HAMNet(c).apply, p, b, True), static_argnums=2)
    return batch, teacher, student, run(teacher, batch, CFG), run(student, batch, SMALL)


def options(student_view, teacher_view):
    return {"projection": kd.projection_init(student_view[1], teacher_view[1], jax.random.key(2)), "temperature": 3.0}


@pytest.mark.parametrize("kind", kd.DISTILL_LOSSES)
def test_every_loss_jits_is_finite_and_zero_on_itself(views, kind):
    _, _, _, t_view, s_view = views
    loss = jax.jit(lambda s, t, o: kd.distill_loss(kind, s, t, **o))
    value = loss(s_view, t_view, options(s_view, t_view))
    assert value.shape == () and value.dtype == jnp.float32 and np.isfinite(value) and value > 0
    # the student equal to the teacher: identity projections where widths agree -> exactly 0
    assert float(loss(t_view, t_view, options(t_view, t_view))) == pytest.approx(0.0, abs=1e-6)


def test_loss_gradients_reach_the_student_and_never_the_teacher(views):
    batch, teacher, student, t_view, s_view = views
    spec = DistillSpec(terms=tuple((k, 1.0) for k in kd.DISTILL_LOSSES), alpha=0.7)
    params = {"student": student, "projections": options(s_view, t_view)["projection"]}
    state = DistillState.create(apply_fn=HAMNet(SMALL).apply, params=params, tx=optax.sgd(0.1),
                                teachers=(Teacher(HAMNet(CFG).apply, teacher),))

    def loss(student_params, teacher_params):
        s = state.replace(teachers=(Teacher(HAMNet(CFG).apply, teacher_params),))
        return distill_loss_fn(student_params, s, batch, jax.random.key(3), spec)[0]

    student_grads, teacher_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, teacher)  # one compile
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(teacher_grads))
    norms = {k: float(sum(jnp.abs(g).sum() for g in jax.tree_util.tree_leaves(v))) for k, v in student_grads.items()}
    assert norms["student"] > 0 and norms["projections"] > 0
    host = lambda tree: jax.tree_util.tree_map(np.array, tree)  # the step donates its state
    state = state.replace(params=host(params), teachers=(Teacher(HAMNet(CFG).apply, host(teacher)),))
    new, metrics = distill_step(state, batch, jax.random.key(4), spec)  # the teacher is carried, unchanged
    assert all(np.isfinite(float(v)) for v in metrics.values())
    for a, b in zip(jax.tree_util.tree_leaves(new.teachers[0].params), jax.tree_util.tree_leaves(teacher), strict=True):
        np.testing.assert_array_equal(a, b)


def test_soft_target_kl_known_value():
    """T = 2, student logit 0 (p = 1/2), teacher logit 2 ln 3 (p = 3/4 at T = 2):
    T^2 [3/4 ln(3/2) + 1/4 ln(1/2)] = 0.5232481 by hand; and 0 for identical logits."""
    zs, zt = jnp.array([0.0, 1.0]), jnp.array([2.0 * np.log(3.0), 1.0])
    per_subject = [0.5232481440, 0.0]
    got = float(kd.soft_target_kl({"logits": zs}, {"logits": zt}, 2.0))
    assert got == pytest.approx(np.mean(per_subject), rel=1e-5)


def test_gaussian_kl_closed_form():
    s = {"mean": jnp.array([0.0]), "log_var": jnp.log(jnp.array([4.0]))}
    t = {"mean": jnp.array([1.0]), "log_var": jnp.log(jnp.array([1.0]))}
    want = 0.5 * (np.log(4.0) + (1.0 + 1.0) / 4.0 - 1.0)
    assert float(kd.gaussian_kl(s, t)) == pytest.approx(want, rel=1e-6)


def test_combine_teachers_weighted_and_uncertainty():
    a = {"mean": jnp.array([0.0, 0.0]), "log_var": jnp.array([0.0, 0.0])}
    b = {"mean": jnp.array([2.0, 2.0]), "log_var": jnp.array([-4.0, 4.0])}
    same = kd.combine_teachers([a, a])
    np.testing.assert_allclose(same["mean"], a["mean"])
    np.testing.assert_allclose(same["log_var"], 0.0, atol=1e-6)
    w = kd.combine_teachers([a, b], weights=(3.0, 1.0))
    np.testing.assert_allclose(w["mean"], [0.5, 0.5], rtol=1e-6)
    u = kd.combine_teachers([a, b], mode="uncertainty")  # b is sure of subject 0, unsure of subject 1
    assert u["mean"][0] > 1.9 and u["mean"][1] < 0.1
    with pytest.raises(ValueError, match="2 teachers but weights"):
        kd.combine_teachers([a, b], weights=(1.0,))


def test_ema_update_and_layer_pairing():
    out = kd.ema_update({"w": jnp.ones(3)}, {"w": jnp.zeros(3)}, 0.9)
    np.testing.assert_allclose(out["w"], 0.9)
    assert kd.pair_layers(2, 4) == [(0, 1), (1, 3)] and kd.pair_layers(3, 3) == [(0, 0), (1, 1), (2, 2)]


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_student_config_is_within_ten_percent(ratio):
    teacher = CFG.replace(embed_dim=64, num_heads=4, num_layers=2)
    student = student_config(teacher, ratio)
    assert abs(param_count(student) / param_count(teacher) - ratio) <= 0.1 * ratio
    assert student.embed_dim % student.num_heads == 0 and student.embed_dim < teacher.embed_dim
    with pytest.raises(InputError, match="compression_ratio"):
        student_config(teacher, 1.5)


def test_parameter_counts_by_width_are_exact():
    base = CFG.replace(embed_dim=64, num_heads=4, num_layers=2, lifestyle_cardinalities=(3, 5))
    counts = counts_by_width(base, range(4, 65, 4))  # traced at 4 widths, the other 12 predicted
    for e in (8, 44):
        assert counts[e] == param_count(base.replace(embed_dim=e))


@pytest.mark.slow  # two teachers + attention transfer + EMA step, ~90 s cold; `hamnet distill` is in the default suite
def test_facade_distills_and_self_distills():
    train, val = random_batch(CFG, 64, seed=5), random_batch(CFG, 32, seed=6)
    teacher = init_params(HAMNet(CFG), train, jax.random.key(0))
    cfg = DistillationConfig(method=DistillationMethod.ATTENTION_TRANSFER, intermediate_features=True, epochs=1,
                             batch_size=32)
    other = init_params(HAMNet(CFG), train, jax.random.key(1))  # two teachers, combined per subject
    kd_ = HAMNetKnowledgeDistillation([(HAMNet(CFG), teacher), (CFG, other)],
                                      dataclasses.replace(cfg, teacher_mode="uncertainty"),
                                      throughput_batch_size=32, latency_reps=2)
    assert len(kd_.teachers) == 2
    assert {k for k, _ in distillation_spec(cfg, True).terms} == {"gaussian_kl", "soft_target_kl",
                                                                  "feature_matching", "attention_transfer"}
    params, result = kd_.distill(train, val, compression_ratio=0.5)
    assert result.student_params == count_params(params) < result.teacher_params
    assert result.compression_ratio == pytest.approx(result.teacher_params / result.student_params)
    assert np.isfinite(result.student_metrics["mae"]) and result.student_samples_per_s > 0
    assert len(result.history) == 1 and "train_attention_transfer" in result.history[0]

    batch = train.take(np.arange(32))
    host = lambda tree: jax.tree_util.tree_map(np.array, tree)  # the step donates its state
    state = DistillState.create(apply_fn=HAMNet(CFG).apply, params={"student": host(teacher), "projections": {}},
                                tx=optax.sgd(0.5), teachers=(Teacher(HAMNet(CFG).apply, host(teacher)),))
    new, _ = ema_distill_step(state, batch, jax.random.key(1), DistillSpec(), 0.5)
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(new.teachers[0].params),
                                                          jax.tree_util.tree_leaves(teacher), strict=True)]
    assert max(moved) > 0  # the EMA teacher follows the student


@pytest.mark.slow  # self-distillation and two born-again generations, ~75 s cold
def test_facade_self_distillation_born_again_and_several_teachers():
    """Each method runs through the facade: self-distillation keeps the teacher's
    architecture and trains against its own EMA; born-again runs its generations (each a
    fit of its own). Several teachers: `test_facade_distills_and_self_distills`."""
    train, val = random_batch(CFG, 64, seed=5), random_batch(CFG, 32, seed=6)
    teacher = init_params(HAMNet(CFG), train, jax.random.key(0))
    base = dict(epochs=1, batch_size=32)
    self_kd = HAMNetKnowledgeDistillation((CFG, teacher), DistillationConfig(
        method=DistillationMethod.SELF_DISTILLATION, **base), throughput_batch_size=32, latency_reps=1)
    params, result = self_kd.distill(train, val)
    assert result.student_params == result.teacher_params and result.student_config == CFG
    born = HAMNetKnowledgeDistillation((CFG, teacher), DistillationConfig(
        method=DistillationMethod.BORN_AGAIN, generations=2, **base), throughput_batch_size=32, latency_reps=1)
    _, result = born.distill(train, val)
    assert [h["generation"] for h in result.history] == [1, 2] and result.student_config == CFG


def test_distill_config_errors_name_the_field():
    with pytest.raises(InputError, match="distillation.alpha: Input should be less than or equal to 1"):
        DistillationConfig(alpha=1.5)
    with pytest.raises(ValueError, match="not_a_method"):
        DistillationConfig(method="not_a_method")
    with pytest.raises(ValueError, match="DistillSpec.terms: unknown loss 'l3'"):
        DistillSpec(terms=(("l3", 1.0),))


def test_cli_distill_writes_a_working_student_run(tiny_run, tiny_cohort, tmp_path, capsys):
    data, _ = tiny_cohort
    out = tmp_path / "student"
    assert main(["distill", "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--ratio", "0.5",
                 "--epochs", "1"]) == 0
    assert "samples/s" in capsys.readouterr().out
    logged = scalars(out / "tb")
    assert logged and all(tags["val_mae"] for tags in logged.values())  # each generation's epochs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_params"] < summary["teacher_params"]
    assert abs(summary["student_params"] / summary["teacher_params"] - 0.5) <= 0.05
    assert load_run(out).model_config.embed_dim < load_run(tiny_run).model_config.embed_dim
    assert main(["evaluate", "--run", str(out), "--data", str(data), "--no-baselines"]) == 0
    assert main(["distill", "--run", str(tiny_run), "--data", str(data), "--out", str(tmp_path / "x"),
                 "--alpha", "2"]) == 2
    assert "distillation.alpha" in capsys.readouterr().err


def test_a_given_student_must_take_the_teachers_data_and_a_teaching_method(tiny_model_config):
    from hamnet_jax.compression.distillation import distill_model, student_architecture

    cfg = DistillationConfig()
    smaller = dataclasses.replace(tiny_model_config, embed_dim=16)
    assert student_architecture(tiny_model_config, cfg, 0.5, smaller) is smaller
    with pytest.raises(InputError, match="genetic_dim differ from the teacher"):
        student_architecture(tiny_model_config, cfg, 0.5, dataclasses.replace(smaller, genetic_dim=7))
    with pytest.raises(InputError, match="teacher's own architecture"):
        student_architecture(tiny_model_config, DistillationConfig(method="born_again"), 0.5, smaller)
    batch = random_batch(tiny_model_config, 2, 2)
    with pytest.raises(InputError, match="starting weights need the student's architecture"):
        distill_model([(tiny_model_config, None)], cfg, batch, batch, 0.5, student_params={"w": 1})
