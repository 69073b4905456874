"""Structured pruning of HAMNet: whole neurons, attention heads and input channels, and
compaction of the result into a smaller dense model that computes the same function.

Units (what one structured decision removes):

* `neurons`  a hidden unit of an MLP (every attention block's MLP -> `mlp_dim`, the output
             head MLP -> `head_hidden_dim`, the clinical encoder -> `clinical_hidden_dim`):
             its fc1 column, fc1 bias and fc2 row;
* `heads`    an attention head: its query/key/value columns and biases and its output rows
             (-> `num_heads`, `head_dim` kept);
* `channels` an input feature of a token group of the imaging / genetic encoders: its value
             row and its mask row in that group's projection (-> `<modality>_kept_features`).

A removed unit contributes exactly zero in the masked model (gelu(0) = 0, a head whose
values and output are zero adds nothing, a zero input row reads nothing), so slicing it out
gives the same outputs. Every layer of one config field keeps the same number of units, so
the compacted model is again a plain `HAMNetConfig`. Scores: the L2 norm of the unit's
weights (Li et al. 2017) or the accumulated squared first-order Taylor term
(sum over the unit of w * g)^2 (Molchanov et al. 2019).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.config.compression import STRUCTURE_KINDS
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.transforms.select import leaves_by_path, path_str


@dataclasses.dataclass(frozen=True)
class Member:
    """One parameter a unit owns a slice of: units run along `axis`; for `channels`, the
    slice is row f and row `half + f` of token group `group`."""

    path: str
    axis: int
    group: int | None = None
    half: int = 0

    def unit_view(self, leaf: jax.Array) -> jax.Array:
        """[units, everything else] view of this member's slice of `leaf`."""
        if self.group is None:
            x = jnp.moveaxis(leaf, self.axis, 0)
            return x.reshape(x.shape[0], -1)
        x = leaf[self.group].reshape(2, self.half, -1)  # value rows, mask rows
        return jnp.moveaxis(x, 1, 0).reshape(self.half, -1)

    def keep_mask(self, keep: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean mask of the whole leaf: False on the removed units' slices only."""
        if self.group is None:
            view = [1] * len(shape)
            view[self.axis] = shape[self.axis]
            return np.broadcast_to(np.asarray(keep).reshape(view), shape).copy()
        mask = np.ones(shape, bool)
        rows = np.concatenate([keep, keep])
        mask[self.group] = rows[:, None]
        return mask


@dataclasses.dataclass(frozen=True)
class UnitGroup:
    """The units of one layer and the config field their kept count sets."""

    kind: str
    layer: str
    field: str
    members: tuple[Member, ...]
    num_units: int


def _mlp_group(prefix: str, field: str, params_flat: dict[str, jax.Array]) -> UnitGroup:
    kernel = params_flat[f"{prefix}/fc1/kernel"]
    members = (Member(f"{prefix}/fc1/kernel", 1), Member(f"{prefix}/fc1/bias", 0), Member(f"{prefix}/fc2/kernel", 0))
    return UnitGroup("neurons", prefix, field, members, kernel.shape[1])


def unit_groups(params: Any, kinds: tuple[str, ...] = STRUCTURE_KINDS) -> list[UnitGroup]:
    """Every structured unit group of a HAMNet params tree, in a fixed order."""
    unknown = sorted(set(kinds) - set(STRUCTURE_KINDS))
    if unknown:
        raise ValueError(f"unknown structure kind(s) {unknown}; expected a subset of {list(STRUCTURE_KINDS)}")
    flat = leaves_by_path(params)
    groups: list[UnitGroup] = []
    for name in flat:
        if "neurons" in kinds and name.endswith("/fc1/kernel"):
            prefix = name[: -len("/fc1/kernel")]
            if prefix.endswith("/mlp"):
                groups.append(_mlp_group(prefix, "mlp_dim", flat))
            elif prefix == "head_mlp":
                groups.append(_mlp_group(prefix, "head_hidden_dim", flat))
            elif prefix == "clinical_encoder":
                groups.append(_mlp_group(prefix, "clinical_hidden_dim", flat))
        elif "heads" in kinds and name.endswith("/attn/query/kernel"):
            prefix = name[: -len("/query/kernel")]
            members = tuple(Member(f"{prefix}/{proj}/{leaf}", 1 if leaf == "kernel" else 0)
                            for proj in ("query", "key", "value") for leaf in ("kernel", "bias"))
            groups.append(UnitGroup("heads", prefix, "num_heads", members + (Member(f"{prefix}/out/kernel", 0),),
                                    flat[name].shape[1]))
        elif "channels" in kinds and (m := re.fullmatch(r"(imaging|genetic)_encoder/group_proj/kernel", name)):
            num_groups, rows, _ = flat[name].shape
            for g in range(num_groups):
                groups.append(UnitGroup("channels", f"{name}[{g}]", f"{m.group(1)}_kept_features",
                                        (Member(name, 1, g, rows // 2),), rows // 2))
    return groups


def unit_scores(groups: list[UnitGroup], params: Any, criterion: str = "magnitude",
                taylor_scores: Any | None = None) -> dict[str, np.ndarray]:
    """Score per unit of each layer: L2 norm of its weights (`magnitude`) or the
    accumulated Taylor term from `taylor_scores` (a {layer: [units]} dict from
    `accumulate_unit_taylor`)."""
    if criterion == "taylor":
        if taylor_scores is None:
            raise ValueError("structured criterion 'taylor' needs accumulated taylor_scores")
        return {g.layer: np.asarray(taylor_scores[g.layer]) for g in groups}
    if criterion != "magnitude":
        raise ValueError(f"structured criterion must be 'magnitude' or 'taylor', got {criterion!r}")
    flat = leaves_by_path(params)
    return {g.layer: np.sqrt(sum(np.asarray(jnp.square(m.unit_view(flat[m.path])).sum(1)) for m in g.members))
            for g in groups}


def accumulate_unit_taylor(groups: list[UnitGroup], scores: dict[str, jax.Array] | None, params: Any,
                           grads: Any) -> dict[str, jax.Array]:
    """Add (sum over each unit of w * g)^2 of one batch's gradient (Molchanov et al. 2019)."""
    fp, fg = leaves_by_path(params), leaves_by_path(grads)
    out = {}
    for g in groups:
        term = sum((m.unit_view(fp[m.path]) * m.unit_view(fg[m.path])).sum(1) for m in g.members)
        out[g.layer] = (0.0 if scores is None else scores[g.layer]) + jnp.square(term)
    return out


def select_units(groups: list[UnitGroup], scores: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """Keep-vector per layer removing round(sparsity * units) lowest-scored units, at least
    one unit always kept (a layer with no unit left would not be a layer)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"structured sparsity must be in [0, 1), got {sparsity!r}")
    keep = {}
    for g in groups:
        k = min(int(round(sparsity * g.num_units)), g.num_units - 1)
        order = np.argsort(scores[g.layer], kind="stable")
        vec = np.ones(g.num_units, bool)
        vec[order[:k]] = False
        keep[g.layer] = vec
    return keep


def structured_masks(groups: list[UnitGroup], keep: dict[str, np.ndarray], params: Any) -> Any:
    """Param-shaped boolean masks that remove the dropped units' weights (biases included)."""
    flat = {k: np.ones(v.shape, bool) for k, v in leaves_by_path(params).items()}
    for g in groups:
        for m in g.members:
            flat[m.path] &= m.keep_mask(keep[g.layer], flat[m.path].shape)
    return jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(flat[path_str(p)]), params)


def _take(leaf: np.ndarray, member: Member, kept: np.ndarray) -> np.ndarray:
    return np.take(leaf, np.flatnonzero(kept), axis=member.axis)


def compact(config: HAMNetConfig, params: Any, groups: list[UnitGroup],
            keep: dict[str, np.ndarray]) -> tuple[HAMNetConfig, Any]:
    """A smaller HAMNet (config, params) without the dropped units: same outputs as the
    masked model. Every layer of a config field must keep the same number of units."""
    counts: dict[str, set[int]] = {}
    for g in groups:
        counts.setdefault(g.field, set()).add(int(keep[g.layer].sum()))
    uneven = {f: sorted(c) for f, c in counts.items() if len(c) > 1}
    if uneven:
        raise ValueError(f"compaction needs the same kept count in every layer of a field; got {uneven}")
    flat = {k: np.asarray(v) for k, v in leaves_by_path(params).items()}
    changes: dict[str, Any] = {}
    channel_keep: dict[str, dict[int, np.ndarray]] = {}
    for g in groups:
        kept = keep[g.layer]
        if g.kind == "channels":
            channel_keep.setdefault(g.members[0].path, {})[g.members[0].group] = kept
            continue
        for m in g.members:
            flat[m.path] = _take(flat[m.path], m, kept)
        if g.field == "num_heads":
            changes["head_dim"] = config.attention_head_dim
        changes[g.field] = int(kept.sum())
    for path, per_group in channel_keep.items():
        modality = path.split("_encoder")[0]
        kernel = flat[path]
        size = getattr(config, f"{modality}_group_size")
        old = config.kept_offsets(modality) or tuple(tuple(range(size)) for _ in range(kernel.shape[0]))
        half = kernel.shape[1] // 2
        rows, positions = [], []
        for g in range(kernel.shape[0]):
            idx = np.flatnonzero(per_group[g])
            rows.append(np.concatenate([kernel[g, idx], kernel[g, half + idx]]))
            positions.extend(g * size + old[g][i] for i in idx)
        flat[path] = np.stack(rows)
        changes[f"{modality}_kept_features"] = tuple(positions)
    new_params = jax.tree_util.tree_map_with_path(lambda p, _: jnp.asarray(flat[path_str(p)]), params)
    return config.replace(**changes), new_params
