"""Sandbox optimizers vs their optax counterparts: step time on the small LM's parameters.

    python benchmarks/optimizer_step.py [--model small] [--iters 30] [--repeats 5]

Two timings per pair, each jitted with donated buffers and measured interleaved in one run
(best of `repeats` blocks of `iters` calls): the optimizer update alone (update + apply on
fixed gradients), and a whole train step (loss, gradient, update) on a random byte batch.
"""

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import optax
from omegaconf import OmegaConf

from sandbox import nn, optim
from sandbox.losses import mean_cross_entropy

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAIRS = [
    ("adam", optim.adam(3e-3), optax.adam(3e-3)),
    ("adamw", optim.adamw(3e-3, weight_decay=0.1), optax.adamw(3e-3, weight_decay=0.1)),
    ("nesterov", optim.nesterov(0.05), optax.sgd(0.05, momentum=0.9, nesterov=True)),
    ("lion", optim.lion(3e-4), optax.lion(3e-4)),
    ("muon", optim.muon(0.02), optax.contrib.muon(0.02)),
    ("adam via build()", optim.build(optim.OptimizerConfig(name="adam"), 1000),
     optim.build(optim.OptimizerConfig(name="optax.adam"), 1000)),
]


def _update_step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return jax.jit(step, donate_argnums=(0, 1))


def _train_step(tx, cfg):
    def loss_fn(params, tokens_BxL):
        logits_BxLxV = nn.apply(params, tokens_BxL[:, :-1], cfg)
        return mean_cross_entropy(logits_BxLxV.reshape(-1, cfg.vocab_size), tokens_BxL[:, 1:].reshape(-1))

    def step(params, state, tokens_BxL):
        grads = jax.grad(loss_fn)(params, tokens_BxL)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return jax.jit(step, donate_argnums=(0, 1))


def _time(step, params, state, arg, iters):
    start = time.perf_counter()
    for _ in range(iters):
        params, state = step(params, state, arg)
    jax.block_until_ready((params, state))
    return (time.perf_counter() - start) / iters, params, state


def _race(make_step, txs, params, arg, iters, repeats):
    """Best seconds per call for each transformation, timed in alternation."""
    runs = []
    for tx in txs:
        step = make_step(tx)
        p = jax.tree.map(jnp.copy, params)
        _, p, s = _time(step, p, tx.init(p), arg, 2)  # compile and warm up
        runs.append([step, p, s, float("inf")])
    for _ in range(repeats):
        for run in runs:
            seconds, run[1], run[2] = _time(run[0], run[1], run[2], arg, iters)
            run[3] = min(run[3], seconds)
    return [run[3] for run in runs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", help="a name in configs/model/")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    cfg = nn.ModelConfig(**OmegaConf.to_container(OmegaConf.load(ROOT / "configs/model" / f"{args.model}.yaml")))
    params = nn.init(jax.random.PRNGKey(0), cfg)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.cos(p * 7.0 + 1.0), params)
    tokens_BxL = jax.random.randint(jax.random.PRNGKey(1), (args.batch, cfg.seq_len + 1), 0, cfg.vocab_size)
    n = sum(p.size for p in jax.tree.leaves(params))
    print(f"model={args.model} ({n:,} parameters, {len(jax.tree.leaves(params))} arrays), "
          f"batch {args.batch}x{cfg.seq_len}, device {jax.devices()[0].device_kind}, "
          f"best of {args.repeats} x {args.iters} calls")
    print(f"{'':<18}{'optimizer update (ms)':^30}{'whole train step (ms)':^30}")
    print(f"{'optimizer':<18}" + f"{'sandbox':>10}{'optax':>10}{'ratio':>8}" * 2)
    for name, ours, theirs in PAIRS:
        u = _race(_update_step, (ours, theirs), params, grads, args.iters, args.repeats)
        t = _race(lambda tx: _train_step(tx, cfg), (ours, theirs), params, tokens_BxL,
                  max(args.iters // 5, 1), args.repeats)
        print(f"{name:<18}" + "".join(f"{a * 1e3:>10.3f}{b * 1e3:>10.3f}{a / b:>8.2f}" for a, b in (u, t)))


if __name__ == "__main__":
    main()
