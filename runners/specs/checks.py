"""Field checks shared by the spec classes: one message style for every bad value."""

from __future__ import annotations

from typing import Any

from runners.errors import RunnerInputError


def require_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RunnerInputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def require_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise RunnerInputError(f"{name} must be a positive integer, got {value!r}")
