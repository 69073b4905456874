"""`section`: turns a class into a frozen, validated pydantic dataclass for one YAML section.

Every field is typed (integers are strict: `batch_size: 3.7` and `num_epochs: "2.5"` are
errors, not truncated), unknown keys are rejected, and any failure raises `InputError`
with one line naming `section.key`, what was expected and what was given. The classes stay
stdlib dataclasses underneath, so `dataclasses.replace` re-validates.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, StrictBool, StrictInt, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from hamnet_jax.errors import InputError

T = TypeVar("T")

PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Bool = StrictBool
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


def describe(section: str, error: ValidationError) -> str:
    """One line for the first error: `config section.key: what is wrong (got value)`."""
    first = error.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"])
    where = f"{section}.{loc}" if loc else section
    if first["type"] == "unexpected_keyword_argument":
        return f"config {where}: unknown key"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error":
        return msg if msg.startswith(f"{section}.") else f"config {where}: {msg}"
    return f"config {where}: {msg} (got {first['input']!r})"


def section(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: a frozen pydantic dataclass for the YAML section `name` whose
    validation errors are `InputError`s naming the key."""
    def wrap(cls: type[T]) -> type[T]:
        cls = pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", arbitrary_types_allowed=True))(cls)
        init = cls.__init__

        @functools.wraps(init)
        def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as e:
                raise InputError(describe(name, e)) from None

        cls.__init__ = checked_init
        cls.SECTION = name
        return cls

    return wrap


def build(cls: type[T], raw: dict[str, Any] | None) -> T:
    """The section object from a YAML mapping (None: all defaults)."""
    if raw is not None and not isinstance(raw, dict):
        raise InputError(f"config section {cls.SECTION!r} must be a mapping of keys to values, got {raw!r}")
    return cls(**(raw or {}))


def keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def set_field(obj: Any, name: str, value: Any) -> None:
    """Normalize a field of a frozen section inside its validator."""
    object.__setattr__(obj, name, value)
