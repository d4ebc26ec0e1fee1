"""The train state and the jitted steps that move it.

`TrainState` is a pytree (step, params, opt_state), so jit, vmap, device_put and orbax all
see it directly. The batch of step t is drawn inside the step from fold_in(data_key, t): the
data order is a pure function of the seed and the step, which makes resuming exact.
With `train.num_seeds = N`, N independent states (each with its own init and data keys) are
stacked on a leading axis and the same step is vmapped over them. `scan_steps` runs several
steps as one `lax.scan`, one compiled call between two of the loop's log/eval/checkpoint points.
"""

import math
from functools import partial

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sandbox import optim
from sandbox.nn import transformer
from sandbox.text.data import get_batch
from sandbox.train import objective
from sandbox.train import precision as precision_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict  # in the precision policy's param dtype
    opt_state: optax.OptState  # float32 under every policy


@flax.struct.dataclass
class PolicyTrainState(TrainState):
    """A TrainState with the precision policy's own state (loss scale, skipped steps, Kahan buffer);
    a separate class so that fp32 and mixed_bf16 checkpoints keep TrainState's exact tree."""
    numerics: dict


@partial(jax.jit, static_argnums=(0, 1))
def seed_keys(seed: int, num_seeds: int) -> tuple[jax.Array, jax.Array]:
    """(param_keys, data_keys), one of each per seed; seed i is the run with train.seed = seed + i."""
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(seed + jnp.arange(num_seeds))
    return keys[:, 0], keys[:, 1]


def init_state(param_key: jax.Array, cfg, optimizer: optax.GradientTransformation) -> TrainState:
    return state_from_params(transformer.init(param_key, cfg.model), cfg, optimizer)


def state_from_params(params32: dict, cfg, optimizer: optax.GradientTransformation) -> TrainState:
    """The step-0 state of a run starting from the float32 `params32` (random, or a pretrained model's)."""
    params, extra = precision_lib.init(params32, precision_lib.policy(cfg.train))
    state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params32))
    return state if extra is None else PolicyTrainState(state.step, params, state.opt_state, extra)


def loss_fn_for(cfg):
    return partial(objective.lm_loss, model_cfg=cfg.model,
                   label_smoothing=cfg.train.label_smoothing, z_loss=cfg.train.z_loss)


def make_train_step(cfg, optimizer, batch_sharding):
    """step(state, train_ids_N, data_key) -> (state, metrics) for one seed."""
    loss_fn = loss_fn_for(cfg)
    policy = precision_lib.policy(cfg.train)

    def step(state: TrainState, ids_N: jax.Array, data_key: jax.Array):
        step_key = jax.random.fold_in(data_key, state.step)
        batch = get_batch(ids_N, step_key, cfg.train.batch_size, cfg.model.seq_len)
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        numerics = getattr(state, "numerics", None)
        loss, grads, finite, extra_metrics = precision_lib.value_and_grad(loss_fn, state.params, batch,
                                                                          numerics, policy)
        params32 = precision_lib.cast(state.params, jnp.float32)
        # obj_fn: for optimizers that probe the loss themselves (Sophia-H); the others ignore it
        updates, opt_state = optimizer.update(grads, state.opt_state, params32,
                                              obj_fn=lambda p: loss_fn(precision_lib.cast(p, policy.compute_dtype),
                                                                       batch))
        new_params, new_extra = precision_lib.apply_updates(state.params, updates, numerics,
                                                            jax.random.fold_in(step_key, 1), policy)
        params, opt_state, extra = precision_lib.finish(finite, (state.params, state.opt_state, numerics),
                                                        (new_params, opt_state, new_extra), policy)
        metrics = {"train_loss": loss, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": optim.learning_rate(opt_state), **extra_metrics, **precision_lib.metrics(extra)}
        state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return (state if extra is None else state.replace(numerics=extra)), metrics

    return step


def scan_length(train_cfg, start: int) -> int:
    """The number of steps per scanned call: the gcd of every period at which the loop stops to look
    (log_every, eval_every, checkpoint_every, sharpness_every), of train.steps and of the start step.

    Every step the loop stops at (a multiple of a period, or the last) is then a multiple of it, counted
    from `start`, so calls of this one length land exactly on those steps: one compiled program.
    """
    periods = (train_cfg.log_every, train_cfg.eval_every, train_cfg.checkpoint_every, train_cfg.sharpness_every)
    return math.gcd(*periods, train_cfg.steps, start)


def scan_steps(step, length: int):
    """steps(state, ids_N, data_key) -> (state, metrics): `length` applications of `step` in one
    `lax.scan`, each metric stacked on a new leading axis of size `length` (step order).

    The state is the scan's carry, so under jit with the state donated its buffers are updated
    in place, and the host sees the device once per call instead of once per step.
    """
    def steps(state, ids_N, data_key):
        return jax.lax.scan(lambda carry, _: step(carry, ids_N, data_key), state, None, length=length)

    return steps


def make_eval(cfg, batch_sharding):
    """evaluate(params, eval_batches) -> mean loss over the eval set's stacked batches (ExBxL)."""
    loss_fn = partial(objective.lm_loss, model_cfg=cfg.model)

    def evaluate(params, stacked):
        return jax.lax.map(lambda b: loss_fn(params, jax.lax.with_sharding_constraint(b, batch_sharding)),
                           stacked).mean()

    return evaluate
