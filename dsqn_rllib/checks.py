"""Argument checks shared by the pure modules (imports nothing: replay stays numpy-only)."""

from __future__ import annotations

import numbers


def require_int(name: str, value: object, minimum: int) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is an integer (Python or numpy, not a
    bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
