"""The language-modelling objective: mean next-token cross-entropy of the transformer.

Other tools (curvature, compression) take the same `lm_loss` so every number they report
is about the very function the engine minimised.
"""

from functools import partial

import jax

from sandbox import losses
from sandbox.nn import transformer
from sandbox.text.data import EvalSet, draw_eval_set


def lm_loss(params, batch: dict, model_cfg, label_smoothing: float = 0.0, z_loss: float = 0.0):
    """mean_{b,t} CE(softmax(f(params, inputs)_{b,t}), targets_{b,t}) (+ optional z-loss)."""
    logits_BxLxV = transformer.apply(params, batch["inputs"], model_cfg)
    per_token_BxL = losses.cross_entropy(
        logits_BxLxV, batch["targets"], label_smoothing=label_smoothing, z_loss=z_loss
    )
    return per_token_BxL.mean()


EVAL_STREAM = 2**32 - 1  # fold_in index of the eval set's key: no training step draws from it


def eval_set(cfg, val_ids_N, num_batches: int | None = None, batch_size: int | None = None,
             seed_index: int = 0) -> EvalSet:
    """The run's evaluation set: `train.eval_batches` batches of `train.batch_size` val windows, drawn
    from the data key of seed s = train.seed + seed_index folded with `EVAL_STREAM`: fixed by the seed.

    Other sizes draw another set from the same key, named after its sizes.
    """
    e = cfg.train.eval_batches if num_batches is None else num_batches
    b = cfg.train.batch_size if batch_size is None else batch_size
    seed = cfg.train.seed + seed_index
    data_key = jax.random.split(jax.random.PRNGKey(seed))[1]  # as `step.seed_keys` gives seed s
    return draw_eval_set(val_ids_N, jax.random.fold_in(data_key, EVAL_STREAM), e, b, cfg.model.seq_len,
                         name=f"val/seed{seed}/{e}x{b}x{cfg.model.seq_len}")


def training_eval_sets(cfg, val_ids_N) -> tuple[str, dict]:
    """(name, stacked batches) training measures val loss on: each of the train.num_seeds seeds its own
    `eval_set` (as the same seed trained alone would), stacked on a leading seed axis when several."""
    n = cfg.train.num_seeds
    sets = [eval_set(cfg, val_ids_N, seed_index=i) for i in range(n)]
    if n == 1:
        return sets[0].name, sets[0].stacked()
    first, last = cfg.train.seed, cfg.train.seed + n - 1
    name = sets[0].name.replace(f"seed{first}/", f"seed{first}..{last}/")
    return name, jax.tree.map(lambda *xs: jax.numpy.stack(xs), *[s.stacked() for s in sets])


def eval_loss(params, evals: EvalSet, model_cfg) -> float:
    """Mean over the eval set's batches of `lm_loss` (the number every tool calls "val loss")."""
    return float(_mean_loss(params, evals.stacked(), model_cfg))


@partial(jax.jit, static_argnums=2)
def _mean_loss(params, stacked: dict, model_cfg):
    return jax.lax.map(lambda b: lm_loss(params, b, model_cfg), stacked).mean()
