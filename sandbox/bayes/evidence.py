"""The Laplace evidence log p(D) and the prior precision that maximizes it (Immer et al. 2021).

    log p(D) ~ log p(D | theta*) + log p(theta*) - 1/2 log det(P / 2 pi)
             = -loss - 1/2 [log det P - sum_p log delta_p + sum_p delta_p theta*_p^2]
(the 2 pi terms of the Gaussian prior and of the determinant cancel), as laplace-torch computes it.
log det P is exact for every structure, or estimated by stochastic Lanczos quadrature:
log det P = tr log P ~ dim * mean over probes of sum_j tau_j log theta_j (curvature.slq).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from sandbox import curvature
from sandbox.curvature.linop import LinearOperator
from sandbox.errors import SandboxError
from sandbox.optim.minimize import minimize


def log_marginal_likelihood(post, prior_precision=None, logdet=None):
    """The Laplace evidence at `prior_precision` (default: the posterior's); `logdet` replaces log det P."""
    delta_P = post.prior_vector(prior_precision)
    return _lml(post.curv, delta_P, post.subset.theta(post.params), post.loss, logdet)


@jax.jit
def _lml(curv, delta_P, theta_P, loss, logdet=None):
    logdet = curv.logdet(delta_P) if logdet is None else logdet
    return -loss - 0.5 * (logdet - jnp.sum(jnp.log(delta_P)) + jnp.sum(delta_P * theta_P ** 2))


def optimize_prior_precision(post, *, steps: int = 200, learning_rate: float = 0.1, init=None):
    """The posterior with delta = argmax log p(D | delta) (Adam on log delta, jitted), same shape as before."""
    init = post.prior_precision if init is None else init
    post.prior_vector(init)  # validates
    theta = post.subset.theta(post.params)
    group = jnp.asarray(post.subset.group_S)
    log_delta = jnp.log(jnp.asarray(init, theta.dtype))

    def neg(log_d):
        d = jnp.exp(log_d)
        delta_P = jnp.full(theta.shape, d) if d.ndim == 0 else d[group]
        return -_lml(post.curv, delta_P, theta, post.loss)

    log_delta = _adam(neg, log_delta, steps, learning_rate)
    best = jnp.exp(log_delta)
    if not bool(jnp.all(jnp.isfinite(best))):
        raise SandboxError("the prior precision diverged while maximizing the evidence; lower learning_rate")
    return post.replace(prior_precision=best)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _adam(loss_fn, x, steps, learning_rate):
    return minimize(loss_fn, x, optax.adam(learning_rate), steps)[0]


def evidence_curve(post, grid_G):
    """log p(D | delta) for each scalar prior precision in `grid_G` (for a figure)."""
    theta = post.subset.theta(post.params)
    return jax.vmap(lambda d: _lml(post.curv, jnp.full(theta.shape, d), theta, post.loss))(jnp.asarray(grid_G))


@dataclasses.dataclass(frozen=True)
class _Shifted:
    rule: object

    def __call__(self, operands, v_N):
        inner, delta_N = operands
        return self.rule(inner, v_N) + delta_N * v_N


def shifted(op: LinearOperator, delta_N) -> LinearOperator:
    """The operator H + diag(delta) (the posterior precision, matrix-free)."""
    return LinearOperator(_Shifted(op.rule), (op.operands, jnp.asarray(delta_N, op.dtype)), op.layout)


def slq_logdet(op: LinearOperator, *, key: jax.Array, num_steps: int = 40, num_probes: int = 16):
    """(estimate, standard error) of log det `op` by SLQ with Rademacher probes (op positive definite)."""
    nodes_RxM, weights_RxM = curvature.slq_nodes_weights(op, key=key, num_steps=num_steps, num_probes=num_probes)
    if not bool(jnp.all(nodes_RxM > 0)):
        raise SandboxError("the operator has non-positive Ritz values: log det needs a positive definite "
                           "precision (is the prior precision positive and the curvature a GGN?)")
    per_probe_R = op.dim * jnp.sum(weights_RxM * jnp.log(nodes_RxM), axis=1)
    return jnp.mean(per_probe_R), jnp.std(per_probe_R, ddof=1) / jnp.sqrt(num_probes)
