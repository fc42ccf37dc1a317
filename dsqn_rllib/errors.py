"""Errors and argument checks shared by every layer (imports nothing: the numpy-only replay
and the torch-only core use them too). A bad value is one line naming it and what is allowed."""

from __future__ import annotations

import math
import numbers
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value; its message is one line for the user."""


def require_int(name: str, value: object, minimum: int) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is an integer (Python or numpy, not a
    bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def first_line(err: BaseException) -> str:
    """What an error says, in one line: the OS's reason (strerror) where there is one, else the
    first line of its message, else its type's name."""
    reason = getattr(err, "strerror", None)
    if reason:
        return str(reason)
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def is_int(value: object) -> bool:
    """A Python or numpy integer (gymnasium's ``Discrete.n`` is ``np.int64``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plain(value: Any) -> Any:
    """``value`` with numpy scalars (also inside tuples and lists) as Python ``int`` / ``float``,
    so a config built from gymnasium spaces or numpy arrays is saved as JSON like any other."""
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    if is_int(value):
        return int(value)  # type: ignore[call-overload]
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return float(value)
    return value


def check_int(name: str, value: Any, minimum: int) -> None:
    if not is_int(value) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(
    name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False
) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        upper = "" if high == math.inf else f" and <= {high}"
        raise ConfigError(f"{name} must be a number {bound}{upper}, got {value!r}")
