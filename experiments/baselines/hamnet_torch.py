"""HAMNet in PyTorch: the same architecture as `hamnet_jax.models.hamnet.HAMNet`, layer for
layer (same parameter count, checked by `experiments/bench_train.py`), used only as the
speed reference users would otherwise run. Needs the `bench-torch` extra (torch==2.13.0).

Inputs are the `Batch` fields as torch tensors (see `batch_to_torch`). Like the JAX model
under `fit` (visit packing), the per-visit encoders and the fusion run on the real visits
only (`pack=True`); eager PyTorch does it with a boolean index, no fixed row count needed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODALITIES = ("clinical", "imaging", "genetic", "lifestyle")
NEG_INF = -1e9


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.softmax(scores.masked_fill(mask <= 0, NEG_INF), dim=dim)


class MLP(nn.Module):
    def __init__(self, width_in: int, hidden: int, out: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(width_in, hidden), nn.Linear(hidden, out), nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class GatedAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm_attn, self.norm_mlp = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
        self.qkv = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, width)
        self.gate_attn, self.gate_mlp = nn.Linear(width, width), nn.Linear(width, width)
        self.mlp = MLP(width, width * mlp_ratio, width, dropout)
        self.drop = nn.Dropout(dropout)

    def attention(self, x, mask):
        n, t, e = x.shape
        q, k, v = (p(x).view(n, t, self.heads, e // self.heads).transpose(1, 2) for p in self.qkv)
        scores = q @ k.transpose(-1, -2) / math.sqrt(e // self.heads)
        weights = masked_softmax(scores, mask[:, None, None, :])
        return self.out((weights @ v).transpose(1, 2).reshape(n, t, e))

    def forward(self, x, mask):
        h = self.drop(self.attention(self.norm_attn(x), mask))
        x = x + torch.sigmoid(self.gate_attn(h)) * h
        h = self.drop(self.mlp(self.norm_mlp(x)))
        x = x + torch.sigmoid(self.gate_mlp(h)) * h
        return x * mask[..., None]


class DenseEncoder(nn.Module):
    def __init__(self, width_in: int, embed: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2 * width_in, 2 * embed), nn.Linear(2 * embed, embed)
        self.drop, self.norm = nn.Dropout(dropout), nn.LayerNorm(embed, eps=1e-6)

    def forward(self, x, mask):
        return self.norm(self.fc2(self.drop(F.gelu(self.fc1(torch.cat([x * mask, mask], -1))))))


class GroupTokenEncoder(nn.Module):
    def __init__(self, width_in: int, embed: int, group: int, heads: int, dropout: float):
        super().__init__()
        self.group = group
        self.groups = -(-width_in // group)
        self.kernel = nn.Parameter(torch.randn(self.groups, 2 * group, embed) / math.sqrt(2 * group))
        self.bias = nn.Parameter(torch.zeros(self.groups, embed))
        self.block = GatedAttentionBlock(embed, heads, 2, dropout)
        self.norm = nn.LayerNorm(embed, eps=1e-6)

    def forward(self, x, mask):
        n, width = x.shape
        pad = self.groups * self.group - width
        x = F.pad(x * mask, (0, pad)).view(n, self.groups, self.group)
        m = F.pad(mask, (0, pad)).view(n, self.groups, self.group)
        tokens = F.gelu(torch.einsum("ngf,gfe->nge", torch.cat([x, m], -1), self.kernel) + self.bias)
        token_mask = (m.sum(-1) > 0).float()
        tokens = self.block(tokens, token_mask)
        w = token_mask[..., None]
        return self.norm((tokens * w).sum(1) / w.sum(1).clamp(min=1.0))


class LifestyleEncoder(nn.Module):
    def __init__(self, width_in: int, embed: int, cardinalities, dropout: float):
        super().__init__()
        self.numeric = nn.Linear(2 * width_in, embed) if width_in else None
        self.embeds = nn.ModuleList(nn.Embedding(c + 1, embed) for c in cardinalities)
        self.fc, self.drop, self.norm = nn.Linear(embed, embed), nn.Dropout(dropout), nn.LayerNorm(embed, eps=1e-6)

    def forward(self, x, mask, codes):
        h = self.numeric(torch.cat([x * mask, mask], -1))
        for k, emb in enumerate(self.embeds):
            h = h + emb(codes[:, k]) * (codes[:, k] > 0)[:, None].float()
        return self.norm(self.fc(self.drop(F.gelu(h))))


class HAMNetTorch(nn.Module):
    def __init__(self, c, pack: bool = True):
        """`c`: a hamnet_jax HAMNetConfig (all four modalities present); `pack`: per-visit work
        on the real visits only (else on every visit slot)."""
        super().__init__()
        self.pack = pack
        e, h, d = c.embed_dim, c.num_heads, c.dropout
        self.c = c
        self.encoders = nn.ModuleDict({
            "clinical": DenseEncoder(c.clinical_dim, e, d),
            "imaging": GroupTokenEncoder(c.imaging_dim, e, c.imaging_group_size, h, d),
            "genetic": GroupTokenEncoder(c.genetic_dim, e, c.genetic_group_size, h, d),
            "lifestyle": LifestyleEncoder(c.lifestyle_dim, e, c.lifestyle_cardinalities, d),
        })
        self.modality_embed = nn.Parameter(torch.randn(4, e) * 0.02)
        self.fusion = nn.ModuleList(GatedAttentionBlock(e, h, c.mlp_ratio, d) for _ in range(c.num_layers))
        self.fusion_norm, self.modality_score = nn.LayerNorm(e, eps=1e-6), nn.Linear(e, 1)
        self.time_embed = nn.Linear(2, e)
        self.temporal = nn.ModuleList(GatedAttentionBlock(e, h, c.mlp_ratio, d) for _ in range(c.temporal_layers))
        self.conv = nn.Conv1d(e, e, c.temporal_kernel_size, groups=e)
        self.conv_gate, self.pool_score = nn.Linear(e, e), nn.Linear(e, 1)
        self.temporal_norm = nn.LayerNorm(e, eps=1e-6)
        self.head = MLP(2 * e, 2 * e, e, d)
        self.mean_head, self.log_var_head = nn.Linear(e, 1), nn.Linear(e, 1)
        self.class_head = nn.Linear(e, 1) if c.classification else None

    def forward(self, b: dict[str, torch.Tensor]):
        c = self.c
        bsz, v = b["visit_mask"].shape
        n = bsz * v
        index = b["visit_mask"].reshape(n).nonzero()[:, 0] if self.pack else None
        flat = lambda a: a.reshape((n,) + a.shape[2:]) if index is None else a.reshape((n,) + a.shape[2:])[index]
        unpack = lambda a: a if index is None else a.new_zeros((n,) + a.shape[1:]).index_copy(0, index, a)
        had = b["modality_mask"] * b["visit_mask"][..., None]  # [B, V, M]
        first = had * (torch.cumsum(had, 1) == 1).float()
        tokens = []
        for i, m in enumerate(MODALITIES):
            if m in c.subject_level:  # once per subject (first visit with it), broadcast over visits
                pick = first[..., i]
                args = (torch.einsum("bv,bvf->bf", pick, b[m]), torch.einsum("bv,bvf->bf", pick, b[f"{m}_mask"]))
                if m == "lifestyle":
                    args += ((pick.long()[..., None] * b["categorical"]).sum(1),)
                token = self.encoders[m](*args)
                tokens.append(flat(token[:, None].expand(bsz, v, token.shape[-1])))
                continue
            args = (flat(b[m]), flat(b[f"{m}_mask"]))
            tokens.append(self.encoders[m](*args, flat(b["categorical"])) if m == "lifestyle"
                          else self.encoders[m](*args))
        tokens = torch.stack(tokens, 1)
        subject = torch.tensor([float(m in c.subject_level) for m in MODALITIES])
        known = torch.maximum(b["modality_mask"], subject * had.amax(1, keepdim=True))
        mask = flat(known) * flat(b["visit_mask"])[:, None]
        x = (tokens + self.modality_embed) * mask[..., None]
        for block in self.fusion:
            x = block(x, mask)
        x = self.fusion_norm(x)
        w = masked_softmax(self.modality_score(x)[..., 0], mask)
        visits, mask = unpack((w[..., None] * x).sum(1)).view(bsz, v, -1), unpack(mask)
        vmask = b["visit_mask"] * (mask.view(bsz, v, -1).sum(-1) > 0).float()
        t = b["visit_times"][..., None] / 10.0
        x = (visits + self.time_embed(torch.cat([t, t * t], -1))) * vmask[..., None]
        for block in self.temporal:
            x = block(x, vmask)
        conv = self.conv(F.pad(x.transpose(1, 2), (c.temporal_kernel_size - 1, 0))).transpose(1, 2)
        x = self.temporal_norm((x + torch.sigmoid(self.conv_gate(x)) * conv) * vmask[..., None])
        weights = masked_softmax(self.pool_score(x)[..., 0], vmask)
        pooled = (weights[..., None] * x).sum(1)
        last = (vmask.sum(1).long() - 1).clamp(min=0)
        summary = torch.cat([pooled, x[torch.arange(bsz), last]], -1)
        h = F.gelu(self.head(summary))
        log_var = c.log_var_min + (c.log_var_max - c.log_var_min) * torch.sigmoid(self.log_var_head(h)[:, 0])
        out = {"mean": self.mean_head(h)[:, 0], "log_var": log_var}
        if self.class_head is not None:
            out["logits"] = self.class_head(h)[:, 0]
        return out


def gaussian_nll(mean, log_var, y):
    return 0.5 * (log_var + (y - mean) ** 2 * torch.exp(-log_var) + math.log(2 * math.pi))


def batch_to_torch(batch) -> dict[str, torch.Tensor]:
    out = {}
    for m in MODALITIES:
        out[m] = torch.from_numpy(np.asarray(batch.inputs[m]))
        out[f"{m}_mask"] = torch.from_numpy(np.asarray(batch.feature_masks[m]))
    for name in ("modality_mask", "visit_mask", "visit_times", "targets", "labels"):
        out[name] = torch.from_numpy(np.asarray(getattr(batch, name)))
    out["categorical"] = torch.from_numpy(np.asarray(batch.categorical)).long()
    return out


def make_train_step(model: HAMNetTorch, lr: float = 1e-3, clip: float = 1.0):
    """One AdamW step with gradient clipping: the JAX train_step's work."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def step(b: dict[str, torch.Tensor]) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        out = model(b)
        loss = gaussian_nll(out["mean"], out["log_var"], b["targets"]).mean()
        if "logits" in out:
            loss = loss + F.binary_cross_entropy_with_logits(out["logits"], b["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss.detach()

    return step
