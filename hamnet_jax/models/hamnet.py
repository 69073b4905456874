"""HAMNet: modality encoders -> cross-modal fusion per visit -> temporal layer -> heads.

`HAMNet(config).apply({"params": p}, batch, deterministic=...)` returns `(outputs, aux)`:

* outputs: `mean` [B], `log_var` [B] (heteroscedastic Gaussian) when `config.regression`
  is set (the default), and `logits` [B] when `config.classification` is set (alone: an
  outcome-only model);
* aux: `modality_embeddings` [B, V, M, E], `visit_embeddings` [B, V, E], `fused` [B, 2E],
  `modality_weights` [B, V, M], `visit_weights` [B, V]; with `information_bottleneck`,
  also `bottleneck_mean` and `bottleneck_log_var` [B, 2E].

Attention maps are sown into the `intermediates` collection (see models/attention.py).

Everything is array code under `jit`: missing modalities and padded visits are masks,
never Python branches on values.

Visit packing (`HAMNet(config, packed_visits=C)`): the per-visit encoders and the fusion,
three quarters of the step's work, run on C rows holding the batch's real visits instead
of all B x V visit slots (half of them padding in the default cohort). Outputs are those of
the unpacked model: the temporal layer zeroes padded visits either way. The caller picks C
at least the batch's number of real visits (`data.visit_packing.packing_rows`); a
padded visit's aux embeddings are then zeros. Dropout masks are drawn for the packed rows;
the MC-dropout replay of fixed per-subject masks (models/mc_dropout.py) gives each packed row
the mask of its (sample, visit slot).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import MODALITIES, HAMNetConfig
from hamnet_jax.models.encoders import DenseEncoder, GroupTokenEncoder, LifestyleEncoder
from hamnet_jax.models.fusion import CrossModalFusion
from hamnet_jax.models.layers import MLP, BlockConfig
from hamnet_jax.models.logical import dense, logical_init
from hamnet_jax.models.temporal import TemporalEncoder


class HAMNet(nn.Module):
    config: HAMNetConfig
    packed_visits: int = 0  # execution: > 0 runs per-visit work on that many rows (module docstring)

    def _blocks(self, part: str) -> BlockConfig:
        """The attention blocks' settings of one part: "encoders", "fusion" or "temporal"."""
        c = self.config
        return BlockConfig(num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, dropout=c.dropout,
                           attention_dropout=0.0 if part == "encoders" else c.attention_dropout,
                           attention=c.attention, attention_block_size=c.attention_block_size,
                           remat=c.remat_for(part), dtype=jnp.dtype(c.dtype), head_dim=c.head_dim, mlp_dim=c.mlp_dim)

    def _encoders(self) -> dict[str, nn.Module]:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        enc: dict[str, nn.Module] = {}
        if c.has_modality("clinical"):
            bins = c.embedding_bins if c.clinical_embedding == "piecewise_linear" else 0
            enc["clinical"] = DenseEncoder(c.embed_dim, c.dropout, dtype, c.clinical_hidden_dim, bins,
                                           c.feature_embed_dim, name="clinical_encoder")
        for m, group in (("imaging", c.imaging_group_size), ("genetic", c.genetic_group_size)):
            if c.has_modality(m):
                enc[m] = GroupTokenEncoder(embed_dim=c.embed_dim, group_size=group, blocks=self._blocks("encoders"),
                                           kept_offsets=c.kept_offsets(m), name=f"{m}_encoder")
        if c.has_modality("lifestyle"):
            enc["lifestyle"] = LifestyleEncoder(
                c.embed_dim, c.lifestyle_cardinalities, c.dropout, dtype, name="lifestyle_encoder"
            )
        return enc

    @nn.compact
    def __call__(self, batch: Batch, deterministic: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        c = self.config
        b, v = batch.visit_mask.shape
        rows = _VisitRows.of(batch.visit_mask, self.packed_visits)
        tokens, modality_mask = self._tokens(batch, rows, deterministic)
        fused, modality_weights = CrossModalFusion(num_layers=c.num_layers, blocks=self._blocks("fusion"),
                                                   name="fusion")(tokens, modality_mask, deterministic)
        tokens, fused, modality_mask, modality_weights = map(rows.unpack, (tokens, fused, modality_mask,
                                                                           modality_weights))
        visit_mask = batch.visit_mask * (modality_mask.reshape(b, v, -1).sum(-1) > 0)
        visits = fused.reshape(b, v, c.embed_dim)
        summary, visit_weights = TemporalEncoder(
            num_layers=c.temporal_layers, blocks=self._blocks("temporal"), kernel_size=c.temporal_kernel_size,
            name="temporal")(visits, batch.visit_times, visit_mask, deterministic)
        bottleneck = {}
        if c.information_bottleneck:
            summary, bottleneck = self._bottleneck(summary, deterministic)
        aux = {
            "modality_embeddings": tokens.reshape(b, v, len(MODALITIES), c.embed_dim),
            "visit_embeddings": visits,
            "fused": summary,
            "modality_weights": modality_weights.reshape(b, v, len(MODALITIES)),
            "visit_weights": visit_weights,
            **bottleneck,
        }
        return self._heads(summary, batch, deterministic), aux

    def _tokens(self, batch: Batch, rows: _VisitRows, deterministic: bool) -> tuple[jax.Array, jax.Array]:
        """([N, M, E] modality tokens, [N, M] presence mask) for the N visit rows `rows` keeps.
        A subject-level modality is encoded once per subject, from its first visit with the
        modality (a mask product, not a gather: the batch dimension stays symbolic in export),
        and its token repeated at every visit."""
        c = self.config
        b, v = batch.visit_mask.shape
        encoders = self._encoders()
        had = batch.modality_mask * batch.visit_mask[..., None]  # [B, V, M]
        first = had * (jnp.cumsum(had, axis=1) == 1)
        tokens = []
        for i, m in enumerate(MODALITIES):
            if m not in encoders:  # a zero token, its batch size taken from an input so that a
                # symbolic batch dimension (ONNX export) stays symbolic: jnp.zeros((n, E)) would not
                tokens.append(rows.flat(batch.visit_mask)[:, None].astype(jnp.float32) * jnp.zeros((1, c.embed_dim)))
                continue
            if m in c.subject_level:
                pick = first[..., i]
                args = [jnp.einsum("bv,bvf->bf", pick, batch.inputs[m].astype(jnp.float32)).astype(
                    batch.inputs[m].dtype), jnp.einsum("bv,bvf->bf", pick, batch.feature_masks[m])]
                if m == "lifestyle":
                    args.append((pick.astype(batch.categorical.dtype)[..., None] * batch.categorical).sum(1))
                token = encoders[m](*args, deterministic)  # [B, E]
                tokens.append(rows.flat(jnp.broadcast_to(token[:, None], (b, v, token.shape[-1]))))
                continue
            args = [rows.flat(batch.inputs[m]), rows.flat(batch.feature_masks[m])]
            if m == "lifestyle":
                args.append(rows.flat(batch.categorical))
            tokens.append(encoders[m](*args, deterministic))
        present = jnp.asarray([m in encoders for m in MODALITIES], jnp.float32)
        subject = jnp.asarray([m in c.subject_level for m in MODALITIES], jnp.float32)
        known = jnp.maximum(batch.modality_mask, subject * had.max(axis=1, keepdims=True))  # [B, V, M]
        modality_mask = rows.flat(known) * present * rows.flat(batch.visit_mask)[:, None]
        return jnp.stack(tokens, axis=1), modality_mask

    def _heads(self, summary: jax.Array, batch: Batch, deterministic: bool) -> dict[str, Any]:
        """The outputs, in float32: the mean and the variance are what the loss and intervals read."""
        c = self.config
        h = MLP(c.head_hidden_dim or c.embed_dim * 2, c.embed_dim, c.dropout, jnp.float32,
                name="head_mlp")(summary, deterministic)
        h = nn.gelu(h)
        outputs: dict[str, Any] = {}
        linear = self._wide(batch) if c.wide else None
        if c.regression:
            outputs["mean"] = dense(1, ("embed", None), jnp.float32, "mean_head")(h)[:, 0]
            if linear is not None:
                outputs["mean"] = outputs["mean"] + linear[:, 0]
            raw = dense(1, ("embed", None), jnp.float32, "log_var_head")(h)[:, 0]
            outputs["log_var"] = c.log_var_min + (c.log_var_max - c.log_var_min) * jax.nn.sigmoid(raw)
        if c.classification:
            outputs["logits"] = dense(1, ("embed", None), jnp.float32, "class_head")(h)[:, 0]
            if linear is not None:
                outputs["logits"] = outputs["logits"] + linear[:, -1]
        return outputs

    def _wide(self, batch: Batch) -> jax.Array:
        """[B, heads] linear function of `wide_features`, zero-initialized so training starts
        from the deep model alone (or from a fitted linear model: training/wide_start.py)."""
        heads = int(self.config.regression) + int(self.config.classification)
        wide = nn.Dense(heads, dtype=jnp.float32, name="wide",
                        kernel_init=logical_init(nn.initializers.zeros_init(), (None, None)),
                        bias_init=logical_init(nn.initializers.zeros_init(), (None,)))
        return wide(wide_features(self.config, batch))

    def _bottleneck(self, summary: jax.Array, deterministic: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Variational information bottleneck (Alemi et al. 2017, "Deep Variational Information
        Bottleneck"): a Gaussian code of the summary's width, sampled by reparameterization in
        training, its mean in evaluation; the KL to N(0, I) is the regularizer's business."""
        width = summary.shape[-1]
        stats = dense(2 * width, ("embed", "mlp"), jnp.float32, "bottleneck")(summary.astype(jnp.float32))
        mu, log_var = stats[..., :width], jnp.clip(stats[..., width:], -10.0, 10.0)
        z = mu
        if not deterministic:
            z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(self.make_rng("dropout"), mu.shape)
        return z, {"bottleneck_mean": mu, "bottleneck_log_var": log_var}


@dataclasses.dataclass(frozen=True)
class _VisitRows:
    """The rows the per-visit work runs on: every B x V visit slot, or with visit packing the
    real visits first and the rest of the C rows reading as zeros. `flat` takes [B, V, ...]
    to those rows, `unpack` puts [rows, ...] back at the slots' places."""

    slots: int
    index: jax.Array | None  # packed: each row's flat visit-slot index (None: every slot, in order)

    @classmethod
    def of(cls, visit_mask: jax.Array, packed_visits: int) -> _VisitRows:
        n = visit_mask.size
        rows = packed_row_count(packed_visits, n)
        return cls(n, packed_visit_index(visit_mask, rows) if rows < n else None)

    def flat(self, a: jax.Array) -> jax.Array:
        flat = a.reshape((self.slots,) + a.shape[2:])
        return flat if self.index is None else jnp.take(flat, self.index, axis=0, mode="fill", fill_value=0)

    def unpack(self, a: jax.Array) -> jax.Array:
        if self.index is None:
            return a
        return jnp.zeros((self.slots,) + a.shape[1:], a.dtype).at[self.index].set(a, mode="drop")


def packed_row_count(packed_visits: int, slots: int) -> int:
    """The rows a packed model runs its per-visit work on for `slots` visit slots."""
    return packed_visits if 0 < packed_visits < slots else slots


def packed_visit_index(visit_mask: jax.Array, rows: int) -> jax.Array:
    """[rows] flat visit-slot index of each packed row: the real visits in order, then the
    slot count (an out-of-range index: the row reads as zeros and is dropped on the way back)."""
    n = visit_mask.size
    return jnp.nonzero(visit_mask.reshape(n) > 0, size=rows, fill_value=n)[0]


def wide_features(config: HAMNetConfig, batch: Batch) -> jax.Array:
    """[B, F] inputs of the wide path: the last real visit's standardized features, their
    observed masks and one-hot category codes (0 = missing). The last visit is picked by a
    mask product, not a gather, so the path exports with a symbolic batch."""
    following = jnp.concatenate([batch.visit_mask[:, 1:], jnp.zeros_like(batch.visit_mask[:, :1])], axis=1)
    is_last = batch.visit_mask * (1.0 - following)  # visits are left-aligned: slot n_visits - 1
    parts = [a for m in MODALITIES if getattr(config, f"{m}_dim") for a in (batch.inputs[m], batch.feature_masks[m])]
    for k, levels in enumerate(config.lifestyle_cardinalities):
        parts.append(jax.nn.one_hot(batch.categorical[..., k], levels + 1)[..., 1:])
    return jnp.einsum("bv,bvf->bf", is_last, jnp.concatenate([p.astype(jnp.float32) for p in parts], axis=-1))


def boxed_init(model: HAMNet, batch: Batch, key: jax.Array) -> Any:
    """Parameters still wrapped in `nn.LogicallyPartitioned` boxes (logical axis names).
    Visit packing is execution only (the same parameters, the same values): they come from
    the unpacked model, so models packed to any row count trace one init program, and a
    compiled init serves them all (XLA's persistent cache keys on the program)."""
    if isinstance(model, HAMNet) and model.packed_visits:
        model = model.clone(packed_visits=0)
    return model.init({"params": key}, batch, deterministic=True)["params"]


def init_params(model: HAMNet, batch: Batch, key: jax.Array) -> Any:
    """Initialize parameters (plain arrays) from an example batch (shapes only matter)."""
    return jax.jit(lambda k: nn.unbox(boxed_init(model, batch, k)))(key)


def param_shapes(model: HAMNet, batch: Batch) -> Any:
    """The parameters' shapes and dtypes (`jax.ShapeDtypeStruct`s), nothing computed."""
    return jax.eval_shape(lambda k: nn.unbox(boxed_init(model, batch, k)), jax.random.key(0))


def param_logical_axes(model: HAMNet, batch: Batch) -> Any:
    """Tree shaped like the params with a PartitionSpec of logical axis names per leaf."""
    abstract = jax.eval_shape(lambda k: boxed_init(model, batch, k), jax.random.key(0))
    return nn.get_partition_spec(abstract)
