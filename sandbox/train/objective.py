"""The language-modelling objective: mean next-token cross-entropy of the transformer.

Other tools (curvature, compression) take the same `lm_loss` so every number they report
is about the very function the engine minimised.
"""

from pathlib import Path

import jax

from sandbox import losses
from sandbox.nn import transformer
from sandbox.text.data import as_device, get_batch, load_dataset


def lm_loss(params, batch: dict, model_cfg, label_smoothing: float = 0.0, z_loss: float = 0.0):
    """mean_{b,t} CE(softmax(f(params, inputs)_{b,t}), targets_{b,t}) (+ optional z-loss)."""
    logits_BxLxV = transformer.apply(params, batch["inputs"], model_cfg)
    per_token_BxL = losses.cross_entropy(
        logits_BxLxV, batch["targets"], label_smoothing=label_smoothing, z_loss=z_loss
    )
    return per_token_BxL.mean()


def eval_batch(cfg, key: jax.Array, batch_size: int, run_dir: str | Path | None = None) -> dict:
    """A batch {"inputs", "targets"} of `batch_size` windows from the val split of cfg's data."""
    data = load_dataset(cfg.data, cfg.model.seq_len, Path(run_dir) if run_dir else None)
    return get_batch(as_device(data.val_N), key, batch_size, cfg.model.seq_len)
