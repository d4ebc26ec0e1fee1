"""Optimizers written from their equations, and a registry that also holds every optax optimizer.

Each optimizer is an `optax.GradientTransformation`, so it chains with optax's transforms.
`build(OptimizerConfig, total_steps)` is how training gets one from a config.
"""

from sandbox.optim.adam import adam, adamw
from sandbox.optim.config import SCHEDULES, OptimizerConfig
from sandbox.optim.lion import lion
from sandbox.optim.muon import muon, orthogonalize
from sandbox.optim.registry import (
    SANDBOX_OPTIMIZERS,
    build,
    check_args,
    describe,
    learning_rate,
    registry,
    resolve,
    set_learning_rate,
)
from sandbox.optim.schedules import schedule_factor
from sandbox.optim.sgd import momentum, nesterov, sgd
from sandbox.optim.sophia import sophia

__all__ = [
    "OptimizerConfig", "SANDBOX_OPTIMIZERS", "SCHEDULES", "adam", "adamw", "build", "check_args", "describe",
    "learning_rate", "lion", "momentum", "muon", "nesterov", "orthogonalize", "registry",
    "resolve", "schedule_factor", "set_learning_rate", "sgd", "sophia",
]
