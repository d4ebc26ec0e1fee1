"""Does a trained transformer keep the rank of its residual stream? Dong et al. (2021) prove that pure
attention (no skips, no MLPs) drives the token representations X (L x D) to rank one doubly
exponentially with depth; skip connections and MLPs counteract it. Here the measure is taken on a
real model, after every block:

    r(X) = sqrt(sum_{i>=2} s_i^2 / sum_i s_i^2),   s the singular values of X,

the relative distance from X to its best rank-1 approximation (Eckart-Young): 0 for a rank-one
stream, near 1 when the energy is spread over many directions. Also reported: the stream's
effective rank exp(H(s^2 / sum s^2)) (Roy & Vetterli 2007) and the uniformity residual
||X - 1 mean(X)^T||_F / ||X||_F (distance to identical rows, the rank-1 matrices attention converges to).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import plotting
from sandbox.nn import transformer
from sandbox.nn.attention import causal_mask


@functools.partial(jax.jit, static_argnames="cfg")
def streams(params, tokens_BxL, cfg):
    """x_(N+1)xBxLxD: the residual stream after the embedding (row 0) and after each of the N blocks."""
    x_BxLxD = transformer.embed(params, tokens_BxL, cfg)
    mask_LxL = causal_mask(tokens_BxL.shape[-1])
    out = [x_BxLxD]
    for i in range(cfg.n_layers):
        x_BxLxD = transformer.block(params[f"block_{i}"], x_BxLxD, cfg, mask_LxL)
        out.append(x_BxLxD)
    return jnp.stack(out)


def rank1_residual(x_LxD):
    """sqrt(sum_{i>=2} s_i^2 / sum_i s_i^2): relative distance to the best rank-1 matrix."""
    s = jnp.linalg.svd(x_LxD, compute_uv=False)
    return jnp.sqrt(jnp.sum(s[1:] ** 2) / jnp.sum(s**2))


def effective_rank(x_LxD):
    """exp of the entropy of the normalized squared singular values (1 for rank one, min(L, D) at most)."""
    s2 = jnp.linalg.svd(x_LxD, compute_uv=False) ** 2
    p = s2 / jnp.sum(s2)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def uniformity_residual(x_LxD):
    """||X - 1 mean^T||_F / ||X||_F: distance to identical rows."""
    return jnp.linalg.norm(x_LxD - x_LxD.mean(axis=0)) / jnp.linalg.norm(x_LxD)


def per_layer(params, tokens_BxL, cfg) -> dict:
    """{"rank1_residual", "effective_rank", "uniformity_residual"}: per layer (embedding first), the mean over
    the B sequences of each measure of that sequence's L x D stream, and its standard deviation."""
    x_NxBxLxD = streams(params, tokens_BxL, cfg)
    out = {}
    for name, fn in (("rank1_residual", rank1_residual), ("effective_rank", effective_rank),
                     ("uniformity_residual", uniformity_residual)):
        vals_NxB = np.asarray(jax.vmap(jax.vmap(fn))(x_NxBxLxD), np.float64)
        out[name] = {"mean": vals_NxB.mean(1).tolist(), "std": vals_NxB.std(1).tolist()}
    return out


CAPTION = ("The residual stream's distance to rank one, r(X) = sqrt(sum_{i>=2} s_i^2 / sum_i s_i^2) for each "
           "sequence's L x D representation X after the embedding (layer 0) and after each block, mean and "
           "standard deviation over the sequences; its effective rank exp(H(s^2/|s|^2)) on the right. Pure "
           "attention would drive r to 0 doubly exponentially with depth (Dong et al. 2021); a trained model "
           "with skip connections and MLPs keeps it away from 0.")


def figure(result: dict, path, title: str) -> str:
    """r(X) and effective rank against layer (integer axis), with +- one standard deviation."""
    fig, (left, right) = plotting.figure(9.0, 3.5, ncols=2)
    layers = np.arange(len(result["rank1_residual"]["mean"]))
    for ax, name, label in ((left, "rank1_residual", "distance to rank one r(X)"),
                            (right, "effective_rank", "effective rank exp(H)")):
        mean, std = np.asarray(result[name]["mean"]), np.asarray(result[name]["std"])
        ax.plot(layers, mean, "o-", markersize=3)
        ax.fill_between(layers, mean - std, mean + std, alpha=0.25)
        ax.set(xlabel="layer (0 = embedding)", ylabel=label)
        ax.xaxis.get_major_locator().set_params(integer=True)
    left.set_ylim(0, 1.05)
    fig.suptitle(f"{title}: residual-stream rank by layer")
    return plotting.save(fig, path)
