"""One place for config-field checks: each raises `SandboxError` naming `section.name` and the value.

    validate.positive_int("train", "steps", self.steps)
    validate.in_range("data", "val_fraction", self.val_fraction, 0.0, 1.0, closed=(False, False))

Booleans are not numbers here (YAML `true` must not pass as 1).
"""

import math

import numpy as np

from sandbox.errors import SandboxError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _field(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(section: str, name: str, value) -> int:
    """value is an integer >= 1."""
    if not is_int(value) or value <= 0:
        raise SandboxError(f"{_field(section, name)} must be a positive integer, got {value!r}")
    return value


def non_negative_int(section: str, name: str, value) -> int:
    """value is an integer >= 0."""
    if not is_int(value) or value < 0:
        raise SandboxError(f"{_field(section, name)} must be a non-negative integer, got {value!r}")
    return value


SEED_MAX = 2**63 - 1  # jax.random.PRNGKey takes a signed 64-bit integer


def seed(section: str, name: str, value) -> int:
    """value is an integer in [0, 2^63 - 1]."""
    if not is_int(value) or not 0 <= value <= SEED_MAX:
        raise SandboxError(f"{_field(section, name)} must be an integer in [0, 2^63 - 1], got {value!r}")
    return value


def positive_number(section: str, name: str, value) -> float:
    """value is a finite number > 0."""
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise SandboxError(f"{_field(section, name)} must be a positive number, got {value!r}")
    return value


def in_range(section: str, name: str, value, low: float, high: float, closed=(True, True)) -> float:
    """low <= value <= high, each end open or closed as `closed` says."""
    lo_ok = is_number(value) and (value >= low if closed[0] else value > low)
    hi_ok = is_number(value) and (value <= high if closed[1] else value < high)
    if not (lo_ok and hi_ok):
        span = f"{'[' if closed[0] else '('}{low:g}, {high:g}{']' if closed[1] else ')'}"
        raise SandboxError(f"{_field(section, name)} must lie in {span}, got {value!r}")
    return value


def one_of(section: str, name: str, value, choices) -> str:
    """value is one of `choices`."""
    if value not in choices:
        raise SandboxError(f"{_field(section, name)}={value!r} is not known; valid choices: "
                           + ", ".join(map(str, choices)))
    return value

