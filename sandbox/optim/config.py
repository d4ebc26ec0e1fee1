"""The schema of the `optimizer:` section: which optimizer, its learning rate, schedule and clipping."""

import dataclasses
import math
from typing import Any

from sandbox.errors import SandboxError

SCHEDULES = ("constant", "cosine", "linear")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass
class OptimizerConfig:
    """An optimizer by registry name (see `sandbox list optimizers`) and how its step size moves.

    The learning rate at step t is `learning_rate * f(t)`, with f a schedule factor: "constant"
    (f = 1 after warmup), "cosine" (linear warmup 0 -> 1, then cosine decay to `min_lr_ratio`) or
    "linear" (linear warmup, then linear decay to `min_lr_ratio`). Gradients are clipped to global
    norm `clip_norm` first (None or 0: no clipping); `args` are the optimizer's other keywords.
    """

    name: str = "adamw"
    learning_rate: float = 3e-3
    schedule: str = "constant"  # "constant" | "cosine" | "linear"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    clip_norm: float | None = 1.0
    args: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise SandboxError(f"optimizer.name must be a non-empty string, got {self.name!r}")
        if not _is_number(self.learning_rate) or self.learning_rate <= 0:
            raise SandboxError(
                f"optimizer.learning_rate must be a positive number, got {self.learning_rate!r}"
            )
        if self.schedule not in SCHEDULES:
            raise SandboxError(
                f"optimizer.schedule={self.schedule!r} is not known; valid choices: {', '.join(SCHEDULES)}"
            )
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise SandboxError(
                f"optimizer.warmup_steps must be a non-negative integer, got {self.warmup_steps!r}"
            )
        if not _is_number(self.min_lr_ratio) or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise SandboxError(f"optimizer.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if self.clip_norm is not None and (not _is_number(self.clip_norm) or self.clip_norm < 0):
            raise SandboxError(
                f"optimizer.clip_norm must be a non-negative number or null (off), got {self.clip_norm!r}"
            )
        if not hasattr(self.args, "items") or not all(isinstance(k, str) for k in self.args):
            raise SandboxError(f"optimizer.args must be a mapping of keyword -> value, got {self.args!r}")
        self.args = dict(self.args)
