"""Probability and information theory on logits: softmax, cross-entropy, entropy, KL, perplexity.

All functions reduce over the last axis (the vocabulary, V) and work in
promote_types(dtype, float32), so bf16 logits get float32 arithmetic and float64
stays float64. Subtracting the row maximum before exponentiating keeps them finite
and accurate for logits of any magnitude (e.g. 1e4 in float32).
"""

import jax
import jax.numpy as jnp


def _promote(logits):
    return jnp.asarray(logits).astype(jnp.promote_types(jnp.asarray(logits).dtype, jnp.float32))


def logsumexp(logits_NxV):
    """log sum_v exp(z_v) = m + log sum_v exp(z_v - m), with m = max_v z_v (no overflow)."""
    z = _promote(logits_NxV)
    m = jnp.max(z, axis=-1, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))  # any m is exact; this one is safe
    return (m + jnp.log(jnp.sum(jnp.exp(z - m), axis=-1, keepdims=True)))[..., 0]


def log_softmax(logits_NxV):
    """log p_v = z_v - logsumexp(z)."""
    z = _promote(logits_NxV)
    return z - logsumexp(z)[..., None]


def softmax(logits_NxV):
    """p_v = exp(z_v - logsumexp(z)): positive and summing to 1."""
    return jnp.exp(log_softmax(logits_NxV))


def cross_entropy(logits_NxV, labels_N, label_smoothing=0.0, z_loss=0.0):
    """Per-position loss -sum_v t_v log p_v + z_loss * logsumexp(z)^2.

    The target t is one-hot at the label, mixed with the uniform distribution by
    label smoothing a: t = (1 - a) onehot(y) + a / V, so the first term equals
    (1 - a)(-log p_y) + a (-mean_v log p_v). The z-loss (PaLM) pulls log Z toward 0,
    which keeps logits from drifting to where float rounding bites.
    """
    logp_NxV = log_softmax(logits_NxV)
    nll_N = -jnp.take_along_axis(logp_NxV, jnp.asarray(labels_N)[..., None], axis=-1)[..., 0]
    loss_N = nll_N
    if label_smoothing:
        loss_N = (1.0 - label_smoothing) * nll_N - label_smoothing * logp_NxV.mean(-1)
    if z_loss:
        loss_N = loss_N + z_loss * jnp.square(logsumexp(logits_NxV))
    return loss_N


def mean_cross_entropy(logits_NxV, labels_N, mask_N=None, label_smoothing=0.0, z_loss=0.0):
    """sum_n m_n CE_n / sum_n m_n: the mean of `cross_entropy` over positions where mask is true."""
    loss_N = cross_entropy(logits_NxV, labels_N, label_smoothing, z_loss)
    if mask_N is None:
        return loss_N.mean()
    mask_N = jnp.asarray(mask_N, loss_N.dtype)
    return jnp.sum(loss_N * mask_N) / jnp.maximum(jnp.sum(mask_N), 1.0)


def entropy(logits_NxV):
    """H(p) = -sum_v p_v log p_v in nats; 0 <= H <= log V, with log V for the uniform p.

    Terms with p_v = 0 (logit -inf, as after top-k filtering) count as 0 = lim p log p.
    """
    logp_NxV = log_softmax(logits_NxV)
    p_NxV = jnp.exp(logp_NxV)
    return -jnp.sum(p_NxV * jnp.where(p_NxV > 0, logp_NxV, 0.0), axis=-1)


def kl_divergence(p_logits_NxV, q_logits_NxV):
    """KL(p || q) = sum_v p_v (log p_v - log q_v) >= 0, zero iff p = q (Gibbs' inequality)."""
    logp_NxV = log_softmax(p_logits_NxV)
    logq_NxV = log_softmax(q_logits_NxV)
    p_NxV = jnp.exp(logp_NxV)
    return jnp.sum(p_NxV * jnp.where(p_NxV > 0, logp_NxV - logq_NxV, 0.0), axis=-1)


def perplexity(mean_ce):
    """exp(mean cross-entropy in nats): the effective number of equally likely next tokens."""
    return jnp.exp(mean_ce)
