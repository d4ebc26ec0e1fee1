"""Learning-rate schedule factors f(t): the step size at step t is learning_rate * f(t)."""

import optax

from sandbox.errors import SandboxError
from sandbox.optim.config import OptimizerConfig


def schedule_factor(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """f(t) for `cfg.schedule` over `total_steps`: warmup f = t / W for t < W, then

    constant: f = 1;  linear: f = 1 - (1 - r) s;  cosine: f = r + (1 - r)(1 + cos(pi s)) / 2,
    with s = (t - W) / (T - W) the fraction of the decay done and r = cfg.min_lr_ratio.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise SandboxError(f"the number of training steps must be a positive integer, got {total_steps!r}")
    warmup, ratio = cfg.warmup_steps, cfg.min_lr_ratio
    if warmup > total_steps:
        raise SandboxError(
            f"optimizer.warmup_steps={warmup} exceeds the {total_steps} training steps; lower it"
        )
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(1.0, decay_steps, alpha=ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(1.0, ratio, decay_steps)
    else:
        decay = optax.constant_schedule(1.0)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), decay], [warmup])
