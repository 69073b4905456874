"""`HAMNetConfig`: the model's frozen, validated configuration.

Tiers (`base`, `standard`, `comprehensive`) set the width and depth; modality widths come
from the data schema. The original PyTorch framework's names `hidden_size`,
`dropout_rate` and `input_size` are accepted as documented aliases:

* `hidden_size`  -> `embed_dim`
* `dropout_rate` -> `dropout`
* `input_size`   -> width of every modality whose width is not given explicitly
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.modalities import MODALITIES


TIERS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=32, num_layers=1, num_heads=2, temporal_layers=1),
    "standard": dict(embed_dim=64, num_layers=2, num_heads=4, temporal_layers=1),
    "comprehensive": dict(embed_dim=128, num_layers=4, num_heads=8, temporal_layers=2),
}

ALIASES: dict[str, str] = {"hidden_size": "embed_dim", "dropout_rate": "dropout"}

COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
ATTENTION_IMPLEMENTATIONS: tuple[str, ...] = ("naive", "dot_product", "blockwise")
REMAT_POLICIES: tuple[str, ...] = ("none", "full", "save_dots")
REMAT_BLOCKS: tuple[str, ...] = ("encoders", "fusion", "temporal")
NUMERIC_EMBEDDINGS: tuple[str, ...] = ("linear", "piecewise_linear")


@dataclasses.dataclass(frozen=True)
class HAMNetConfig:
    """Architecture of one HAMNet model. Invalid values raise `InputError` naming the field."""

    tier: str = "standard"
    embed_dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    temporal_layers: int = 1
    mlp_ratio: int = 2
    # 0.3 rather than the original framework's 0.1: on data nobody tuned for it generalizes
    # better (bench_model_quality.json: frailty and interaction worlds lower MAE, default a tie)
    dropout: float = 0.3
    attention_dropout: float = 0.0
    # modality widths (numeric features per visit); 0 means the modality is absent
    clinical_dim: int = 96
    imaging_dim: int = 256
    genetic_dim: int = 512
    lifestyle_dim: int = 32
    # categorical lifestyle columns: number of levels of each (codes 1..K, 0 = missing)
    lifestyle_cardinalities: tuple[int, ...] = ()
    # features per token for the tokenized modalities
    imaging_group_size: int = 32
    genetic_group_size: int = 64
    temporal_kernel_size: int = 3
    # widths a structured-pruning compaction shrinks (0 = the tier's default rule)
    head_dim: int = 0  # per-head width; 0 = embed_dim // num_heads
    mlp_dim: int = 0  # hidden width of every attention block's MLP; 0 = embed_dim * mlp_ratio
    head_hidden_dim: int = 0  # hidden width of the output head MLP; 0 = 2 * embed_dim
    clinical_hidden_dim: int = 0  # hidden width of the clinical encoder; 0 = 2 * embed_dim
    # clinical values as they enter the encoder: "linear" (the value itself) or
    # "piecewise_linear" (Gorishniy et al. 2022: `embedding_bins` ramps, then a per-feature
    # map to `feature_embed_dim`; models/numeric_embedding.py)
    clinical_embedding: str = "linear"
    embedding_bins: int = 16
    feature_embed_dim: int = 8
    # positions (in the zero-padded group layout: group * group_size + offset) the token
    # projection reads, the same count in every group; () = every feature
    imaging_kept_features: tuple[int, ...] = ()
    genetic_kept_features: tuple[int, ...] = ()
    regression: bool = True  # the heteroscedastic regression head (mean, log_var)
    classification: bool = False  # a binary classification head (logits); alone: an outcome-only model
    # a linear path beside the deep one (Wide & Deep, Cheng et al. 2016): the mean and the logit
    # add a linear function of the last visit's standardized features, masks and category codes
    wide: bool = False
    # modalities constant within a subject (the schema's subject_level, e.g. genotypes): encoded
    # once per subject, from its first visit that has them, and present at all its visits
    subject_level: tuple[str, ...] = ()
    # variational information bottleneck on the subject summary (Alemi et al. 2017): the head
    # reads z ~ N(mu, sigma^2) in training and mu in evaluation; aux carries mu and log sigma^2
    information_bottleneck: bool = False
    log_var_min: float = -10.0
    log_var_max: float = 6.0
    # execution (not architecture): same parameters whatever the values below
    dtype: str = "float32"  # compute dtype; norms, softmax, heads and losses stay float32
    attention: str = "naive"  # naive | dot_product (jax.nn.dot_product_attention) | blockwise
    attention_block_size: int = 64  # query/key chunk of the blockwise attention
    remat_policy: str = "none"  # none | full | save_dots (jax.checkpoint policy per block)
    remat_blocks: tuple[str, ...] = REMAT_BLOCKS  # which attention blocks the policy applies to

    def __post_init__(self) -> None:
        object.__setattr__(self, "lifestyle_cardinalities", tuple(int(c) for c in self.lifestyle_cardinalities))
        object.__setattr__(self, "remat_blocks", tuple(self.remat_blocks))
        object.__setattr__(self, "subject_level", tuple(self.subject_level))
        for m in ("imaging", "genetic"):
            name = f"{m}_kept_features"
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
        self.validate()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_tier(cls, tier: str = "standard", **overrides: Any) -> HAMNetConfig:
        """Config of a tier, with field overrides (aliases accepted)."""
        if tier not in TIERS:
            raise InputError(f"HAMNetConfig.tier: unknown tier {tier!r}; expected one of {sorted(TIERS)}")
        return cls.create(**{**TIERS[tier], "tier": tier, **overrides})

    @classmethod
    def create(cls, **kwargs: Any) -> HAMNetConfig:
        """Build from keyword arguments, resolving the original framework's aliases."""
        kwargs = dict(kwargs)
        for alias, name in ALIASES.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                if name in kwargs and kwargs[name] != value:
                    raise InputError(f"HAMNetConfig: both {alias!r} and {name!r} given with different values")
                kwargs[name] = value
        input_size = kwargs.pop("input_size", None)
        if input_size is not None:
            for m in MODALITIES:
                kwargs.setdefault(f"{m}_dim", input_size)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            accepted = sorted(known | set(ALIASES) | {"input_size"})
            raise InputError(f"HAMNetConfig: unknown field(s) {unknown}; known: {accepted}")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> HAMNetConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lifestyle_cardinalities"] = list(self.lifestyle_cardinalities)
        d["remat_blocks"] = list(self.remat_blocks)
        d["subject_level"] = list(self.subject_level)
        for m in ("imaging", "genetic"):
            d[f"{m}_kept_features"] = list(getattr(self, f"{m}_kept_features"))
        return d

    # -- aliases, read side -----------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.embed_dim

    @property
    def dropout_rate(self) -> float:
        return self.dropout

    def modality_dims(self) -> dict[str, int]:
        return {m: getattr(self, f"{m}_dim") for m in MODALITIES}

    def has_modality(self, modality: str) -> bool:
        """Whether the model has an encoder for `modality` (lifestyle may be categorical only)."""
        categorical_only = modality == "lifestyle" and bool(self.lifestyle_cardinalities)
        return bool(getattr(self, f"{modality}_dim")) or categorical_only

    # -- validation -----------------------------------------------------------------------
    def validate(self) -> None:
        def fail(field: str, msg: str) -> None:
            raise InputError(f"HAMNetConfig.{field}: {msg}")

        if self.tier not in TIERS:
            fail("tier", f"unknown tier {self.tier!r}; expected one of {sorted(TIERS)}")
        for name in ("embed_dim", "num_layers", "num_heads", "mlp_ratio", "temporal_kernel_size",
                     "imaging_group_size", "genetic_group_size", "temporal_layers", "embedding_bins",
                     "feature_embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, f"must be a positive integer, got {value!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                fail(name, f"must be in [0, 1), got {value!r}")
        if self.embed_dim % self.num_heads and not self.head_dim:
            fail("num_heads", f"{self.num_heads} heads do not divide embed_dim={self.embed_dim} "
                 "(or set head_dim)")
        for name in ("head_dim", "mlp_dim", "head_hidden_dim", "clinical_hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(name, f"must be a non-negative integer (0 = default width), got {value!r}")
        for m in ("imaging", "genetic"):
            self._validate_kept_features(m)
        if self.clinical_embedding == "linear":  # the embedding's settings would be silently unused
            for name in ("embedding_bins", "feature_embed_dim"):
                if getattr(self, name) != self.__dataclass_fields__[name].default:
                    fail(name, "applies to clinical_embedding: piecewise_linear (clinical_embedding is linear)")
        for m in MODALITIES:
            value = getattr(self, f"{m}_dim")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(f"{m}_dim", f"must be a non-negative integer, got {value!r}")
        if not any(self.has_modality(m) for m in MODALITIES):
            fail("clinical_dim", "every modality has width 0: the model would have no input")
        for i, c in enumerate(self.lifestyle_cardinalities):
            if c < 1:
                fail("lifestyle_cardinalities", f"entry {i} must be >= 1 level, got {c}")
        for name in ("regression", "classification", "wide", "information_bottleneck"):
            if not isinstance(getattr(self, name), bool):
                fail(name, f"must be true or false, got {getattr(self, name)!r}")
        if not (self.regression or self.classification):
            fail("regression", "a model needs a regression head, a classification head or both")
        if self.log_var_min >= self.log_var_max:
            fail("log_var_min", "must be below log_var_max")
        for name, allowed in (("dtype", COMPUTE_DTYPES), ("attention", ATTENTION_IMPLEMENTATIONS),
                              ("remat_policy", REMAT_POLICIES), ("clinical_embedding", NUMERIC_EMBEDDINGS)):
            if getattr(self, name) not in allowed:
                fail(name, f"unknown value {getattr(self, name)!r}; expected one of {list(allowed)}")
        unknown = sorted(set(self.subject_level) - set(MODALITIES))
        if unknown:
            fail("subject_level", f"unknown modality {unknown[0]!r}; expected some of {list(MODALITIES)}")
        unknown = sorted(set(self.remat_blocks) - set(REMAT_BLOCKS))
        if unknown:
            fail("remat_blocks", f"unknown block(s) {unknown}; expected a subset of {list(REMAT_BLOCKS)}")
        if not isinstance(self.attention_block_size, int) or self.attention_block_size < 1:
            fail("attention_block_size", f"must be a positive integer, got {self.attention_block_size!r}")
        if self.attention != "naive" and self.attention_dropout > 0:
            fail("attention_dropout", f"attention dropout needs attention='naive' (the {self.attention!r} "
                 "kernel never materializes the attention weights)")

    def _validate_kept_features(self, modality: str) -> None:
        kept = getattr(self, f"{modality}_kept_features")
        if not kept:
            return
        size = getattr(self, f"{modality}_group_size")
        groups = -(-getattr(self, f"{modality}_dim") // size)
        field = f"HAMNetConfig.{modality}_kept_features"
        if sorted(set(kept)) != list(kept) or kept[0] < 0 or kept[-1] >= groups * size:
            raise InputError(f"{field}: must be sorted, distinct positions in [0, {groups * size})")
        counts = [sum(1 for i in kept if i // size == g) for g in range(groups)]
        if len(set(counts)) != 1:
            raise InputError(f"{field}: every one of the {groups} groups must keep the same number of "
                             f"features, got {counts}")

    def kept_offsets(self, modality: str) -> tuple[tuple[int, ...], ...] | None:
        """Per group, the offsets the token projection reads; None = every feature."""
        kept = getattr(self, f"{modality}_kept_features")
        if not kept:
            return None
        size = getattr(self, f"{modality}_group_size")
        groups = -(-getattr(self, f"{modality}_dim") // size)
        return tuple(tuple(i % size for i in kept if i // size == g) for g in range(groups))

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim or self.embed_dim // self.num_heads

    def remat_for(self, block: str) -> str:
        """The remat policy of one block group (`encoders`, `fusion`, `temporal`)."""
        return self.remat_policy if block in self.remat_blocks else "none"
