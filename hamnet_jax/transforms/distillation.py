"""Knowledge-distillation losses: pure functions of student and teacher outputs / aux.

Each loss takes the student's and the teacher's `(outputs, aux)` pieces and returns a
scalar (mean over the batch); teacher values are wrapped in `stop_gradient`, so no loss
here can send a gradient into teacher parameters even if a caller forgets. Losses are
picked by name with `distill_loss(kind, ...)` (DESIGN example 3).

* `gaussian_kl`       KL(teacher || student) between the heteroscedastic Gaussian
                      predictive distributions of the regression head (closed form); the
                      regression analogue of soft targets.
* `soft_target_kl`    Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":
                      KL between temperature-softened class distributions, times T^2 so its
                      gradient scale does not shrink with T. The head is binary (one logit),
                      so the distributions are Bernoulli(sigmoid(z / T)).
* `feature_matching`  FitNets (Romero et al. 2015): student intermediates regressed onto the
                      teacher's through a learned linear projection (its params train with
                      the student) where widths differ.
* `attention_transfer` Zagoruyko & Komodakis 2017, adapted to attention maps: the student's
                      head-averaged cross-modal and temporal attention rows matched to the
                      teacher's (squared error over real query rows), layers paired by depth.
* `rkd_distance`, `rkd_angle`  Park et al. 2019, "Relational Knowledge Distillation": pairwise
                      distances (normalized by their mean) and triplet angles of embeddings
                      within the batch, matched under a Huber loss; widths may differ.
* `combine_teachers`  several teachers' predictive Gaussians into one: fixed weights or
                      per-example inverse-variance ("uncertainty") weights, moment matched.
* `ema_update`        the self-distillation teacher: an exponential moving average of the
                      student's params (mean teacher, Tarvainen & Valpola 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hamnet_jax.transforms.select import leaves_by_path

sg = jax.lax.stop_gradient

DISTILL_LOSSES: tuple[str, ...] = ("gaussian_kl", "soft_target_kl", "feature_matching", "attention_transfer",
                                   "rkd_distance", "rkd_angle")
FEATURE_KEYS: tuple[str, ...] = ("fused", "visit_embeddings")  # aux entries feature matching reads
ATTENTION_SCOPES: tuple[str, ...] = ("fusion", "temporal")  # cross-modal and temporal attention


def gaussian_kl(student: dict, teacher: dict) -> jax.Array:
    """Mean over the batch of KL(N(mu_t, var_t) || N(mu_s, var_s)); zero iff equal."""
    mu_t, lv_t = sg(teacher["mean"]), sg(teacher["log_var"])
    mu_s, lv_s = student["mean"], student["log_var"]
    kl = 0.5 * (lv_s - lv_t + (jnp.exp(lv_t) + (mu_t - mu_s) ** 2) * jnp.exp(-lv_s) - 1.0)
    return kl.mean()


def soft_target_kl(student: dict, teacher: dict, temperature: float = 4.0) -> jax.Array:
    """T^2 * KL(Bernoulli(sigmoid(z_t/T)) || Bernoulli(sigmoid(z_s/T))), mean over the batch."""
    t = temperature
    zt, zs = sg(teacher["logits"]) / t, student["logits"] / t
    log_pt = jnp.stack([jax.nn.log_sigmoid(zt), jax.nn.log_sigmoid(-zt)], -1)
    log_ps = jnp.stack([jax.nn.log_sigmoid(zs), jax.nn.log_sigmoid(-zs)], -1)
    return (t * t) * (jnp.exp(log_pt) * (log_pt - log_ps)).sum(-1).mean()


class FeatureProjection(nn.Module):
    """Linear maps from the student's feature widths to the teacher's (FitNets regressors)."""

    widths: dict[str, int]  # aux key -> teacher width

    @nn.compact
    def __call__(self, features: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {k: nn.Dense(self.widths[k], name=k)(features[k]) for k in sorted(self.widths)}


def projection_init(student_aux: dict, teacher_aux: dict, key: jax.Array,
                    keys: Sequence[str] = FEATURE_KEYS) -> Any:
    """Params of the student->teacher projections for `keys`. Where the widths agree the map
    starts as the identity, so a student that already matches its teacher scores 0."""
    widths = {k: int(teacher_aux[k].shape[-1]) for k in keys}
    params = FeatureProjection(widths).init(key, {k: student_aux[k] for k in keys})["params"]

    def start(p: dict) -> dict:
        kernel = p["kernel"]
        if kernel.shape[0] == kernel.shape[1]:
            return {"kernel": jnp.eye(kernel.shape[0], dtype=kernel.dtype), "bias": p["bias"]}
        return p

    return {k: start(v) for k, v in params.items()}


def feature_matching(student_aux: dict, teacher_aux: dict, projection: Any,
                     keys: Sequence[str] = FEATURE_KEYS) -> jax.Array:
    """Mean squared error between projected student features and teacher features, averaged
    over `keys`; a projection that is the identity with equal features gives exactly 0."""
    widths = {k: int(teacher_aux[k].shape[-1]) for k in keys}
    projected = FeatureProjection(widths).apply({"params": projection}, {k: student_aux[k] for k in keys})
    return sum(jnp.mean((projected[k] - sg(teacher_aux[k])) ** 2) for k in keys) / len(keys)


def attention_maps(intermediates: Any, scope: str) -> list[jax.Array]:
    """Head-averaged attention maps [N, T, T] of the layers under `scope`, in layer order."""
    found = {path: leaf for path, leaf in leaves_by_path(intermediates).items()
             if f"/{scope}/" in f"/{path}" and path.split("/")[-2] == "attention"}
    return [found[p] for p in sorted(found)]


def pair_layers(num_student: int, num_teacher: int) -> list[tuple[int, int]]:
    """Student layer i matched to teacher layer ceil((i+1) * Lt / Ls) - 1: both last layers
    are always paired, and shallower students skip teacher layers evenly."""
    return [(i, -(-(i + 1) * num_teacher // num_student) - 1) for i in range(num_student)]


def attention_transfer(student_inter: Any, teacher_inter: Any,
                       scopes: Sequence[str] = ATTENTION_SCOPES) -> jax.Array:
    """Squared error between the student's and the teacher's attention rows, summed over keys
    and averaged over query rows and paired layers of every scope. Padded queries attend
    uniformly in both models, so they add nothing when the maps agree."""
    terms = []
    for scope in scopes:
        s_maps, t_maps = attention_maps(student_inter, scope), attention_maps(teacher_inter, scope)
        if not s_maps or not t_maps:
            raise ValueError(f"attention_transfer: no {scope!r} attention maps in the intermediates "
                             "(apply the models with mutable=['intermediates'])")
        for i, j in pair_layers(len(s_maps), len(t_maps)):
            terms.append(((s_maps[i] - sg(t_maps[j])) ** 2).sum(-1).mean())
    return sum(terms) / len(terms)


def _pairwise_distances(x: jax.Array) -> jax.Array:
    sq = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, -1)
    return jnp.sqrt(sq + 1e-12) * (1.0 - jnp.eye(x.shape[0]))


def rkd_distance(student_emb: jax.Array, teacher_emb: jax.Array, delta: float = 1.0) -> jax.Array:
    """Park et al. 2019 distance-wise loss: Huber between mean-normalized pairwise distances."""
    def normalized(x: jax.Array) -> jax.Array:
        d = _pairwise_distances(x.astype(jnp.float32))
        n = x.shape[0]
        return d / jnp.maximum(d.sum() / max(n * (n - 1), 1), 1e-12)

    return optax.huber_loss(normalized(student_emb), sg(normalized(teacher_emb)), delta=delta).mean()


def rkd_angle(student_emb: jax.Array, teacher_emb: jax.Array, delta: float = 1.0) -> jax.Array:
    """Park et al. 2019 angle-wise loss: Huber between cos(angle e_i e_j e_k) over all triplets."""
    def cosines(x: jax.Array) -> jax.Array:
        diff = x[None, :, :] - x[:, None, :]  # [j, i, d] = e_i - e_j
        # sqrt(|d|^2 + eps), not norm(): the norm's gradient at the zero vector (i = j) is NaN
        unit = diff / jnp.sqrt(jnp.sum(diff**2, axis=-1, keepdims=True) + 1e-12)
        return jnp.einsum("jid,jkd->jik", unit, unit)

    x_s, x_t = student_emb.astype(jnp.float32), teacher_emb.astype(jnp.float32)
    return optax.huber_loss(cosines(x_s), sg(cosines(x_t)), delta=delta).mean()


def combine_teachers(outputs: Sequence[dict], weights: Sequence[float] | None = None,
                     mode: str = "weighted") -> dict:
    """One predictive Gaussian from several teachers' (moment matching of the mixture).

    `weighted`: fixed non-negative weights (default uniform). `uncertainty`: per example,
    weights proportional to each teacher's precision exp(-log_var), so a teacher unsure of a
    subject counts less there. Logits, when present, are averaged with the same weights.
    """
    if not outputs:
        raise ValueError("combine_teachers: no teacher outputs given")
    if mode not in ("weighted", "uncertainty"):
        raise ValueError(f"combine_teachers: unknown mode {mode!r}; expected 'weighted' or 'uncertainty'")
    regression = all("mean" in o for o in outputs)
    if mode == "uncertainty" and not regression:
        raise ValueError("combine_teachers: 'uncertainty' weights by the teachers' predicted variance; "
                         "outcome-only teachers have none (use 'weighted')")
    raw = jnp.ones(len(outputs)) if weights is None else jnp.asarray(weights, jnp.float32)
    if mode == "weighted" and raw.shape != (len(outputs),):
        raise ValueError(f"combine_teachers: {len(outputs)} teachers but weights of shape {raw.shape}")
    batch = next(iter(outputs[0].values())).shape
    if mode == "uncertainty":
        log_vars = jnp.stack([sg(o["log_var"]) for o in outputs])  # [K, B]
        w = jax.nn.softmax(-log_vars, axis=0)
    else:
        w = (raw / raw.sum())[:, None] * jnp.ones((len(outputs),) + batch)
    combined = {}
    if regression:
        means = jnp.stack([sg(o["mean"]) for o in outputs])
        log_vars = jnp.stack([sg(o["log_var"]) for o in outputs])
        mean = (w * means).sum(0)
        var = (w * (jnp.exp(log_vars) + (means - mean) ** 2)).sum(0)
        combined = {"mean": mean, "log_var": jnp.log(var)}
    if all("logits" in o for o in outputs):
        combined["logits"] = (w * jnp.stack([sg(o["logits"]) for o in outputs])).sum(0)
    return combined


def ema_update(teacher_params: Any, student_params: Any, decay: float) -> Any:
    """teacher <- decay * teacher + (1 - decay) * student, leaf by leaf (no gradient)."""
    return jax.tree_util.tree_map(lambda t, s: decay * t + (1.0 - decay) * sg(s), teacher_params, student_params)


def distill_loss(kind: str, student: tuple, teacher: tuple, **options: Any) -> jax.Array:
    """The distillation loss `kind` between `(outputs, aux, intermediates)` triples.

    Options: `temperature` (soft_target_kl), `projection` and `feature_keys`
    (feature_matching), `embedding` (the aux key rkd_* read, default `fused`).
    """
    s_out, s_aux, s_inter = student
    t_out, t_aux, t_inter = teacher
    if kind == "gaussian_kl":
        return gaussian_kl(s_out, t_out)
    if kind == "soft_target_kl":
        if "logits" not in s_out or "logits" not in t_out:
            raise ValueError("soft_target_kl needs a classification head on student and teacher")
        return soft_target_kl(s_out, t_out, options.get("temperature", 4.0))
    if kind == "feature_matching":
        return feature_matching(s_aux, t_aux, options["projection"], options.get("feature_keys", FEATURE_KEYS))
    if kind == "attention_transfer":
        return attention_transfer(s_inter, t_inter)
    if kind in ("rkd_distance", "rkd_angle"):
        key = options.get("embedding", "fused")
        fn = rkd_distance if kind == "rkd_distance" else rkd_angle
        return fn(s_aux[key], t_aux[key])
    raise ValueError(f"unknown distillation loss {kind!r}; expected one of {list(DISTILL_LOSSES)}")
