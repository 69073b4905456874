"""Typed search parameters, a search space over them, and their nevergrad parametrization.

    space = SearchSpace({
        "learning_rate": Float(1e-4, 1e-2, log=True),
        "num_layers": Int(1, 4),
        "attention": Choice(["dense", "grouped"]),
        "group_size": Int(2, 8, when={"attention": "grouped"}),   # conditional
        "use_ema": Bool(),
    })
    point = space.decode(space.parametrization().sample().value)  # {"learning_rate": ..., ...}

A conditional parameter (`when={"other": value or [values]}`) is in a point only when its
condition holds; the proposer still sees it (nevergrad has no conditional spaces), so a
point's identity is its decoded, active values (`point_key`). `grid()` enumerates every
active combination once (floats need `grid` points). Bounds are checked when the space
is built: an empty or inverted range, an empty choice, or a condition on an unknown
parameter raises `InputError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from hamnet_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    grid: tuple[float, ...] = ()  # the values grid search visits
    when: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False
    when: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]
    when: Mapping[str, Any] | None = None

    def __init__(self, options: Sequence[Any], when: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "options", tuple(options))
        object.__setattr__(self, "when", when)


@dataclasses.dataclass(frozen=True)
class Bool:
    when: Mapping[str, Any] | None = None


Param = Float | Int | Choice | Bool
KINDS = {"float": Float, "int": Int, "choice": Choice, "bool": Bool}


def _check(name: str, p: Param) -> None:
    if isinstance(p, (Float, Int)):
        if not (math.isfinite(p.low) and math.isfinite(p.high)):
            raise InputError(f"search parameter {name!r}: bounds must be finite, got [{p.low}, {p.high}]")
        if p.low > p.high:
            raise InputError(f"search parameter {name!r}: inverted bounds [{p.low}, {p.high}] (low > high)")
        if p.low == p.high and isinstance(p, Float):
            raise InputError(f"search parameter {name!r}: empty range [{p.low}, {p.high}]; use a Choice of one value")
        if p.log and p.low <= 0:
            raise InputError(f"search parameter {name!r}: a log scale needs low > 0, got {p.low}")
        if isinstance(p, Float) and any(not p.low <= g <= p.high for g in p.grid):
            raise InputError(f"search parameter {name!r}: grid values {list(p.grid)} leave [{p.low}, {p.high}]")
    if isinstance(p, Choice) and not p.options:
        raise InputError(f"search parameter {name!r}: a choice needs at least one option")


class SearchSpace:
    def __init__(self, params: Mapping[str, Param]) -> None:
        if not params:
            raise InputError("a search space needs at least one parameter")
        for name, p in params.items():
            if not isinstance(p, (Float, Int, Choice, Bool)):
                raise InputError(f"search parameter {name!r}: {p!r} is not a Float, Int, Choice or Bool")
            _check(name, p)
            for other in p.when or {}:
                if other not in params:
                    raise InputError(f"search parameter {name!r}: its condition names {other!r}, which is not "
                                     f"a parameter of the space ({sorted(params)})")
                if other == name:
                    raise InputError(f"search parameter {name!r}: a condition on itself")
        self.params = dict(params)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "search space") -> SearchSpace:
        """A space declared in YAML: `name: {type: float|int|choice|bool, low, high, log,
        options, grid, when}`."""
        params: dict[str, Param] = {}
        for name, spec in raw.items():
            if not isinstance(spec, Mapping) or spec.get("type") not in KINDS:
                raise InputError(f"{where}: parameter {name!r} needs `type:` one of {list(KINDS)}, got {spec!r}")
            keys = {k: v for k, v in spec.items() if k != "type"}
            fields = {f.name for f in dataclasses.fields(KINDS[spec["type"]])}
            unknown = sorted(set(keys) - fields)
            if unknown:
                raise InputError(f"{where}: parameter {name!r} ({spec['type']}) has unknown keys {unknown}; "
                                 f"expected some of {sorted(fields)}")
            if "grid" in keys:
                keys["grid"] = tuple(keys["grid"])
            try:
                params[name] = KINDS[spec["type"]](**keys)
            except TypeError as err:
                raise InputError(f"{where}: parameter {name!r}: {err}") from None
        return cls(params)

    def active(self, name: str, point: Mapping[str, Any]) -> bool:
        when = self.params[name].when or {}
        for other, allowed in when.items():
            if other not in point:
                return False
            values = allowed if isinstance(allowed, (list, tuple, set)) else [allowed]
            if point[other] not in values:
                return False
        return True

    def parametrization(self, seed: int | None = None) -> Any:
        """The nevergrad `ng.p.Dict` the proposers optimize (every parameter, conditional
        ones included; `decode` drops the inactive)."""
        import nevergrad as ng

        out = {}
        for name, p in self.params.items():
            if isinstance(p, Float):
                out[name] = (ng.p.Log(lower=p.low, upper=p.high) if p.log
                             else ng.p.Scalar(lower=p.low, upper=p.high))
            elif isinstance(p, Int):
                if p.low == p.high:
                    out[name] = ng.p.Choice([p.low])
                else:
                    scalar = (ng.p.Log(lower=p.low, upper=p.high) if p.log
                              else ng.p.Scalar(lower=p.low, upper=p.high))
                    out[name] = scalar.set_integer_casting()
            elif isinstance(p, Choice):
                out[name] = ng.p.Choice(list(p.options))
            else:
                out[name] = ng.p.Choice([False, True])
        parametrization = ng.p.Dict(**out)
        if seed is not None:
            parametrization.random_state.seed(seed)
        return parametrization

    def decode(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """Plain Python values of the active parameters, in declaration order (conditions
        are resolved in order, so a condition may depend on a conditional parameter)."""
        point: dict[str, Any] = {}
        for name, p in self.params.items():
            v = value[name]
            if isinstance(p, Int):
                v = int(round(float(v)))
            elif isinstance(p, Float):
                v = float(v)
            elif isinstance(p, Bool):
                v = bool(v)
            elif hasattr(v, "item"):
                v = v.item()
            point[name] = v
        return {k: v for k, v in point.items() if self.active(k, point)}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' values, each active point once."""
        axes = []
        for name, p in self.params.items():
            if isinstance(p, Float):
                if not p.grid:
                    raise InputError(f"search parameter {name!r}: grid search needs `grid` values for a float")
                axes.append(list(p.grid))
            elif isinstance(p, Int):
                axes.append(list(range(p.low, p.high + 1)))
            elif isinstance(p, Choice):
                axes.append(list(p.options))
            else:
                axes.append([False, True])
        seen, out = set(), []
        for combo in itertools.product(*axes):
            point = self.decode(dict(zip(self.params, combo, strict=True)))
            key = point_key(point)
            if key not in seen:
                seen.add(key)
                out.append(point)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with a study: a resumed study must have the same space)."""
        return {name: {"type": next(k for k, c in KINDS.items() if isinstance(p, c)),
                       **{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}}
                for name, p in self.params.items()}


def point_key(point: Mapping[str, Any]) -> str:
    """A canonical string of a point's active values (floats to 12 significant digits)."""
    def canon(v: Any) -> Any:
        return float(f"{v:.12g}") if isinstance(v, float) else v

    return json.dumps({k: canon(v) for k, v in sorted(point.items())}, sort_keys=True, default=str)
