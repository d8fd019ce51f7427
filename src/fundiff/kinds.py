"""Kinds of parameter values for the technique specs (:mod:`fundiff.specs`): each checks a value given as text
(a command-line token) or as a Python value (the UI's controls, the API) and raises a one-line
:class:`~fundiff.errors.FundiffError` that says what is allowed.

:class:`Number`, :class:`Text`, :class:`Choice`, :class:`ViewName` and :class:`ImageFile`; ``ui`` is what a UI
control needs beyond the kind itself (a slider's range).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fundiff.errors import FundiffError


@dataclass(frozen=True)
class Number:
    """A finite int or float with optional bounds: ``low <= x <= high``, ``x > above``; ``odd`` for kernel sizes.

    ``ui`` is the UI slider's (min, max, step) where the bounds leave the range open."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    above: float | None = None
    odd: bool = False
    ui: tuple[float, float, float] | None = None

    @property
    def what(self) -> str:
        whole = self.kind is int
        noun = ("an odd integer" if self.odd else "an integer") if whole else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} in {self.low:g}..{self.high:g}" if whole else f"{noun} in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{noun} >= {self.low:g}"
        if self.above is not None:
            return f"{noun} > {self.above:g}"
        return f"a finite {'integer' if whole else 'number'}"

    def check(self, value: Any) -> int | float:
        """``value`` (text or number) as ``kind``; out of range or not a number: FundiffError."""
        try:
            if isinstance(value, str):
                number = self.kind(value.strip())
            elif self.kind is int and isinstance(value, float) and value.is_integer():
                number = int(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            else:
                number = self.kind(value)
        except (TypeError, ValueError):
            raise FundiffError(f"expected {self.what}, got {value!r}") from None
        if self.kind is int and isinstance(value, float) and not value.is_integer():
            raise FundiffError(f"expected {self.what}, got {value!r}")
        ok = (
            math.isfinite(number)
            and (self.low is None or number >= self.low)
            and (self.high is None or number <= self.high)
            and (self.above is None or number > self.above)
            and not (self.odd and number % 2 == 0)
        )
        if not ok:
            raise FundiffError(f"expected {self.what}, got {value!r}")
        return number


@dataclass(frozen=True)
class Text:
    """Free text (a prompt: a class name, or anything for a text model; "" is the null prompt)."""

    what: str = "text"
    ui: tuple = ()

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FundiffError(f"expected {self.what}, got {value!r}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of names (``options``, or a callable giving them now)."""

    options: tuple[str, ...] | Callable[[], Sequence[str]]
    ui: tuple = ()

    def names(self) -> tuple[str, ...]:
        return tuple(self.options() if callable(self.options) else self.options)

    @property
    def what(self) -> str:
        return "one of " + ", ".join(self.names())

    def check(self, value: Any) -> str:
        if value not in self.names():
            raise FundiffError(f"expected {self.what}, got {value!r}")
        return value


@dataclass(frozen=True)
class ViewName:
    """A view the registry knows *now* (fundiff.views: "vflip", "rot90:1", ...), so later registrations count."""

    ui: tuple = ()

    @property
    def what(self) -> str:
        from fundiff.views import view_specs

        return "a view: " + ", ".join(view_specs())

    def check(self, value: Any) -> str:
        from fundiff.views import get_view

        if not isinstance(value, str):
            raise FundiffError(f"expected {self.what}, got {value!r}")
        get_view(value)  # an unknown view raises its FundiffError, naming the known ones
        return value


@dataclass(frozen=True)
class ImageFile:
    """An image file (PNG/JPEG) that can be read, or a shipped drawing's name (fundiff.images); the path as text.

    Checked when given (a missing or unreadable file is a one-line error before any model loads); the figure
    function reads it with :func:`fundiff.images.load_image`."""

    what: str = "an image file"
    ui: tuple = ()

    def check(self, value: Any) -> str:
        from fundiff.images import image_size_of

        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise FundiffError(f"expected {self.what} (a PNG or JPEG path), got {value!r}")
        image_size_of(value)  # not found / not an image: its FundiffError, naming the file
        return str(value)


Kind = Number | Text | Choice | ViewName | ImageFile
