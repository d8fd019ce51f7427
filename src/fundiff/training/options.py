"""How the fields of a training config are checked, and offered as ``fundiff train`` flags.

A checked field of a config dataclass (TrainConfig, ClassifierTrainConfig) is declared with
:func:`option`, which puts an :class:`Option` in the field's metadata: the values it allows
(a :class:`Range` of numbers, a :class:`Choice` of names, an :class:`IntList` or an on/off
:class:`Switch`), its help text and its command-line flag. :func:`validate` checks a config
against its Options (the configs' ``__post_init__`` calls it), and ``fundiff.cli.train`` builds
the ``fundiff train`` flags from the same Options, so the flags, their argparse checks and the
config's own checks say the same thing. A Range is written in the terms of
``fundiff.cli.common.number`` (type, bounds, ``what``), which turns it into the flag's argparse type.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from fundiff.errors import FundiffError

OPTION = "option"  # the field-metadata key of a field's Option


@dataclass(frozen=True)
class Range:
    """Finite numbers of ``type`` (int, or float, which takes ints too) with low <= v <= high and
    above < v < below; ``what`` names them in messages ("an integer >= 1")."""

    type: type
    what: str
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None

    def allows(self, value: object) -> bool:
        types = (int,) if self.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            return False
        return (
            math.isfinite(value)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )


@dataclass(frozen=True)
class Choice:
    """One of the names ``values``."""

    values: tuple[str, ...]

    @property
    def what(self) -> str:
        return f"one of {', '.join(self.values)}"

    def allows(self, value: object) -> bool:
        return value in self.values


@dataclass(frozen=True)
class IntList:
    """A tuple of integers (on the command line: comma-separated, e.g. 5,20)."""

    what: str = "a tuple of integers"

    def allows(self, value: object) -> bool:
        return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


@dataclass(frozen=True)
class Switch:
    """On, off, or None (decided later; the field's help says how)."""

    what: str = "True, False or None"

    def allows(self, value: object) -> bool:
        return value is None or isinstance(value, bool)


POSITIVE_INT = Range(int, "an integer >= 1", low=1)
NONNEG_INT = Range(int, "an integer >= 0", low=0)
POSITIVE_FLOAT = Range(float, "a number > 0", above=0)
NONNEG_FLOAT = Range(float, "a number >= 0", low=0)
UNIT_FLOAT = Range(float, "a number in [0, 1)", low=0, below=1)
SEED = Range(int, "an integer in 0..2^63-1", low=0, high=2**63 - 1)


@dataclass(frozen=True)
class Option:
    """What a config field allows, its help, and its ``fundiff train`` flag (None: no flag, set in code)."""

    allowed: Range | Choice | IntList | Switch
    help: str
    flag: str | None = None
    label: str = ""  # how "unknown LABEL ..." messages name a Choice field (default: its name, "_" -> " ")
    optional: bool = False  # None is allowed as well (e.g. max_steps: no limit)
    from_preset: bool = True  # the flag's default None keeps the preset's value; False: the field's default


def option(
    allowed: Range | Choice | IntList | Switch,
    help: str,
    *,
    default: Any = MISSING,
    flag: str | None = None,
    label: str = "",
    optional: bool = False,
    from_preset: bool = True,
) -> Any:
    """A dataclass field with ``default`` whose metadata holds its Option (see :class:`Option`)."""
    return field(default=default, metadata={OPTION: Option(allowed, help, flag, label, optional, from_preset)})


def options_of(config: Any) -> list[tuple[Field, Option]]:
    """(field, Option) of each checked field of the config dataclass (or instance) ``config``, in field order."""
    return [(f, f.metadata[OPTION]) for f in fields(config) if OPTION in f.metadata]


def validate(config: Any) -> None:
    """Check every field of the config dataclass instance ``config`` against its Option.

    The first bad value is a one-line FundiffError that names the field (and its flag) and what it allows.
    """
    for f, opt in options_of(config):
        value = getattr(config, f.name)
        if (value is None and opt.optional) or opt.allowed.allows(value):
            continue
        flag = f" ({opt.flag})" if opt.flag else ""
        if isinstance(opt.allowed, Choice):
            label = opt.label or f.name.replace("_", " ")
            raise FundiffError(f"unknown {label} {value!r}; choose {opt.allowed.what}{flag}")
        what = opt.allowed.what + (" or None" if opt.optional else "")
        raise FundiffError(f"{f.name} must be {what}, got {value!r}{flag}")


__all__ = [
    "Range",
    "Choice",
    "IntList",
    "Switch",
    "Option",
    "option",
    "options_of",
    "validate",
    "POSITIVE_INT",
    "NONNEG_INT",
    "POSITIVE_FLOAT",
    "NONNEG_FLOAT",
    "UNIT_FLOAT",
    "SEED",
]
