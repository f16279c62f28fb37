"""Field checks shared by the spec classes: one message style for every bad value."""

from __future__ import annotations

from typing import Any

from runners.errors import RunnerInputError


def require_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RunnerInputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise RunnerInputError(f"{name} must be a positive integer, got {value!r}")


def require_non_negative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise RunnerInputError(f"{name} must be a non-negative integer, got {value!r}")


def require_bool(name: str, value: Any) -> None:
    """YAML true/false only: a string such as "false" would otherwise count as true."""
    if not isinstance(value, bool):
        raise RunnerInputError(f"{name} must be true or false, got {value!r}")


def is_number(value: Any) -> bool:
    """An int or float, but not a bool (True would otherwise pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
