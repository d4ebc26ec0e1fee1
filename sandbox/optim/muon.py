"""Muon (Jordan et al. 2024): momentum orthogonalized by a Newton-Schulz iteration."""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sandbox.optim.adam import adamw

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g_MxN: jax.Array, coeffs=NS_COEFFS, steps: int = 5, eps: float = 1e-8) -> jax.Array:
    """Approximately U V^T for G = U S V^T, by the quintic Newton-Schulz iteration

        X_0 = G / (||G||_F + eps);   X <- a X + (b A + c A^2) X,  A = X X^T   (`steps` times)

    which pushes every singular value of X towards ~1 (into roughly [0.7, 1.2] for these
    coefficients) while keeping the singular vectors. Runs on the wide orientation (M <= N).
    """
    a, b, c = coeffs
    tall = g_MxN.shape[0] > g_MxN.shape[1]
    x = g_MxN.T if tall else g_MxN
    x = x / (jnp.linalg.norm(x, ord="fro") + eps)
    for _ in range(steps):
        a_MxM = x @ x.T
        x = a * x + (b * a_MxM + c * a_MxM @ a_MxM) @ x
    return x.T if tall else x


class ScaleByMuonState(NamedTuple):
    count: jax.Array  # t
    mu: optax.Updates  # m, the running mean of g


def scale_by_muon(
    ns_coeffs: tuple = NS_COEFFS, ns_steps: int = 5, beta: float = 0.95, eps: float = 1e-8,
    nesterov: bool = True, bias_correction: bool = True,
) -> optax.GradientTransformation:
    """Muon's orthogonalized momentum, for every leaf (all must be matrices), gradient g at step t:

        m <- beta m + (1 - beta) g
        m_hat = beta m / (1 - beta^(t+1)) + (1 - beta) g / (1 - beta^t)     (nesterov)
              = m / (1 - beta^t)                                            (nesterov=False)
        d = NS5(m_hat)

    where NS5 = `orthogonalize`. `bias_correction=False` drops the (1 - beta^k) divisors, which
    is Keller Jordan's reference form (m_hat = lerp(g, m, beta)); True matches optax.contrib.scale_by_muon.
    """

    def init(params):
        return ScaleByMuonState(count=jnp.zeros([], jnp.int32), mu=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        t = state.count + 1
        mu = jax.tree.map(lambda g, m: (1 - beta) * g + beta * m, grads, state.mu)
        m_cor = (lambda m: m / (1 - beta ** (t + 1))) if bias_correction else (lambda m: m)
        g_cor = (lambda g: g / (1 - beta**t)) if bias_correction else (lambda g: g)
        if nesterov:
            m_hat = jax.tree.map(lambda m, g: beta * m_cor(m) + (1 - beta) * g_cor(g), mu, grads)
        else:
            m_hat = jax.tree.map(g_cor, mu)
        direction = jax.tree.map(lambda m_MxN: orthogonalize(m_MxN, ns_coeffs, ns_steps, eps), m_hat)
        return direction, ScaleByMuonState(count=t, mu=mu)

    return optax.GradientTransformation(init, update)


def scale_by_width() -> optax.GradientTransformation:
    """d <- sqrt(max(1, N / M)) d for each M x N matrix (used as x W): Keller Jordan's width scaling,
    so a wide matrix's orthogonalized step keeps its per-entry size."""

    def update(updates, state, params=None):
        return jax.tree.map(lambda d_MxN: jnp.sqrt(jnp.maximum(1, d_MxN.shape[1] / d_MxN.shape[0])) * d_MxN,
                            updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _for_one_group(mask):
    """`mask` as optax.partition's groups see it: their subtree, with the other group's leaves
    replaced by `optax.MaskedNode()`; a function of the params already follows that subtree."""
    if mask is None or callable(mask):
        return mask
    return lambda sub: jax.tree.map(lambda m, s: s if isinstance(s, optax.MaskedNode) else m, mask, sub)


def muon(
    learning_rate: float,
    ns_coeffs: tuple = NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    nesterov: bool = True,
    bias_correction: bool = True,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: float | None = None,
    adam_paths: Sequence[str] = (),
    mask: Any | None = None,
) -> optax.GradientTransformation:
    """Muon for every 2-D parameter, AdamW for all others.

    A matrix W (M x N) takes  W <- W - lr * (sqrt(max(1, N / M)) NS5(m_hat) + weight_decay * W),
    with NS5(m_hat) Muon's orthogonalized momentum (`scale_by_muon`, then `scale_by_width`).
    The other parameters take AdamW steps (`adam_*` settings, its eps and nesterov from above),
    and so do matrices whose path ("embed/tokens") contains one of `adam_paths` (e.g. "embed":
    Muon is meant for hidden layers; () matches optax, which orthogonalizes every matrix).
    `mask` (pytree of bools or params -> pytree) says which parameters decay, in both groups.
    """
    adam_paths = (adam_paths,) if isinstance(adam_paths, str) else tuple(adam_paths)

    def label(path, p):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        return "muon" if p.ndim == 2 and not any(s in name for s in adam_paths) else "adam"

    matrices = optax.chain(
        scale_by_muon(ns_coeffs, ns_steps, beta, eps, nesterov, bias_correction),
        scale_by_width(),
        optax.add_decayed_weights(weight_decay, _for_one_group(mask)),
        optax.scale_by_learning_rate(learning_rate),
    )
    others = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        adam_b1, adam_b2, eps, adam_eps_root, adam_weight_decay, _for_one_group(mask), nesterov,
    )
    labels = lambda params: jax.tree_util.tree_map_with_path(label, params)
    return optax.partition({"muon": matrices, "adam": others}, labels)
