"""Optimizers written from their equations, and a registry that also holds every optax optimizer.

Each sandbox optimizer writes only its mathematics, as a `scale_by_<name>` transformation giving
the direction d, and is built as optax builds its aliases:

    chain(scale_by_<name>(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))

i.e. theta <- theta - lr * (d + weight_decay * theta). `build(OptimizerConfig, total_steps)` is how
training gets one from a config; `preconditioner(name, args, opt_state)` reads a diagonal
method's preconditioner P from its state.
"""

from sandbox.optim.adam import ScaleByAdamState, adam, adamw, scale_by_adam
from sandbox.optim.config import SCHEDULES, OptimizerConfig
from sandbox.optim.lion import ScaleByLionState, lion, scale_by_lion
from sandbox.optim.minimize import minimize
from sandbox.optim.muon import ScaleByMuonState, muon, orthogonalize, scale_by_muon, scale_by_width
from sandbox.optim.preconditioner import PRECONDITIONERS, has_preconditioner, preconditioner
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
from sandbox.optim.sgd import MomentumState, momentum, nesterov, scale_by_momentum, sgd
from sandbox.optim.sophia import ScaleBySophiaState, scale_by_sophia, sophia

__all__ = [
    "MomentumState", "OptimizerConfig", "PRECONDITIONERS", "SANDBOX_OPTIMIZERS", "SCHEDULES", "ScaleByAdamState",
    "ScaleByLionState", "ScaleByMuonState", "ScaleBySophiaState", "adam", "adamw", "build", "check_args",
    "describe", "has_preconditioner", "learning_rate", "lion", "minimize", "momentum", "muon", "nesterov",
    "orthogonalize", "preconditioner", "registry", "resolve", "scale_by_adam", "scale_by_lion", "scale_by_momentum",
    "scale_by_muon", "scale_by_sophia", "scale_by_width", "schedule_factor", "set_learning_rate", "sgd", "sophia",
]
