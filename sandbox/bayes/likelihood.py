"""The two likelihoods of a Laplace posterior, as laplace-torch defines them (sums over the data).

- classification: p(y | z) = softmax(z)_y; -log p = CE(z, y); output Hessian Lambda = diag(p) - p p^T.
- regression:     p(y | z) = N(y; z, sigma^2 I); -log p = ||y - z||^2 / (2 sigma^2) + C log(sigma sqrt(2 pi));
                  Lambda = I / sigma^2.

`sqrt_factor` returns S (C x K) with S S^T = Lambda, so that the GGN of one example is
(S^T J)^T (S^T J): for softmax S = diag(sqrt p) - p sqrt(p)^T (C columns), since sum(p) = 1;
for the Gaussian S = I / sigma. The empirical Fisher uses the single column S = grad_z(-log p).
"""

import math

import jax
import jax.numpy as jnp

from sandbox import losses
from sandbox.errors import SandboxError

LIKELIHOODS = ("classification", "regression")


def check(likelihood: str, sigma_noise: float) -> None:
    if likelihood not in LIKELIHOODS:
        raise SandboxError(f"unknown likelihood {likelihood!r}; valid: {', '.join(map(repr, LIKELIHOODS))}")
    if not sigma_noise > 0:
        raise SandboxError(f"sigma_noise must be positive, got {sigma_noise}")


def neg_log_lik(likelihood: str, z_NxC, y_N, sigma_noise: float = 1.0):
    """-sum_n log p(y_n | z_n), with the Gaussian's normalizer."""
    if likelihood == "classification":
        return jnp.sum(losses.cross_entropy(z_NxC, y_N))
    n, c = z_NxC.shape
    return jnp.sum((y_N - z_NxC) ** 2) / (2 * sigma_noise ** 2) + n * c * math.log(sigma_noise * math.sqrt(2 * math.pi))


def sqrt_factor(likelihood: str, z_C, y, sigma_noise: float, curvature: str):
    """S (C x K) with S S^T = Lambda (GGN) or S = grad_z NLL as one column (empirical Fisher)."""
    if curvature == "fisher":
        g_C = jax.grad(lambda z: neg_log_lik(likelihood, z[None], jnp.asarray(y)[None], sigma_noise))(z_C)
        return g_C[:, None]
    if likelihood == "classification":
        p_C = jax.nn.softmax(z_C)
        return jnp.diag(jnp.sqrt(p_C)) - jnp.outer(p_C, jnp.sqrt(p_C))
    return jnp.eye(z_C.shape[-1], dtype=z_C.dtype) / sigma_noise
