"""Stochastic Lanczos quadrature (SLQ): the spectral density of a symmetric operator.

The spectral measure mu = (1/N) sum_i delta(lambda_i) satisfies int g dmu = tr g(A) / N =
E_v[v^T g(A) v] for random unit probes v. Lanczos from v gives T = S diag(theta) S^T, and
v^T g(A) v ~ sum_j tau_j g(theta_j) with tau_j = S[0, j]^2 (Gauss quadrature, exact for
polynomials of degree < 2m). Averaging the probes gives nodes theta and weights tau (summing to
one per probe); a Gaussian kernel of width sigma turns them into a density on a grid
(Ghorbani, Krishnan & Xiao, 2019). Probes run one after another on CPU, vmapped elsewhere (`linop.map_rows`).
"""

import functools

import jax
import jax.numpy as jnp

from sandbox.curvature.lanczos import lanczos, tridiagonal_eigh
from sandbox.curvature.linop import LinearOperator, ensure_finite, map_rows
from sandbox.errors import SandboxError


def slq_nodes_weights(op: LinearOperator, *, key: jax.Array, num_steps: int = 80,
                      num_probes: int = 8):
    """Quadrature nodes and weights, each (num_probes, num_steps); weights sum to 1 per probe."""
    if num_probes < 1 or num_steps < 1:
        raise SandboxError(f"num_probes={num_probes} and num_steps={num_steps} must be >= 1")
    num_steps = min(num_steps, op.dim)
    out = _nodes_weights(op, key, num_steps, num_probes)
    return ensure_finite(out, "the SLQ nodes")


@functools.partial(jax.jit, static_argnames=("num_steps", "num_probes"))
def _nodes_weights(op, key, num_steps, num_probes):
    op = op.linearized()  # the pass at w once, for every probe and step
    signs_PxN = jax.random.rademacher(key, (num_probes, op.dim), op.dtype)

    def one_probe(v_N):
        theta_M, s_MxM = tridiagonal_eigh(lanczos(op, v_N, num_steps))
        return theta_M, s_MxM[0] ** 2

    return map_rows(one_probe, signs_PxN)


def smooth_density(nodes, weights, *, num_points: int = 1000, sigma_ratio: float = 1e-3,
                   pad_ratio: float = 0.05):
    """Gaussian-smoothed density on a grid spanning the nodes (padded); integrates to ~1."""
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    width = jnp.maximum(hi - lo, jnp.finfo(nodes.dtype).eps * jnp.maximum(jnp.abs(hi), 1.0))
    sigma = sigma_ratio * width
    grid_G = jnp.linspace(lo - pad_ratio * width - 3 * sigma, hi + pad_ratio * width + 3 * sigma,
                          num_points)
    return grid_G, kernel_density(nodes, weights, grid_G, sigma)


def kernel_density(nodes, weights, grid_G, sigma):
    """sum_q tau_q N(x; theta_q, sigma^2) / num_probes on the points `grid_G`: the probes' quadratures
    (nodes and weights, each (num_probes, num_steps)) averaged and smoothed by a Gaussian kernel."""
    nodes_Q, weights_Q = nodes.ravel(), weights.ravel() / nodes.shape[0]
    z_GxQ = (grid_G[:, None] - nodes_Q[None, :]) / sigma
    kernel_GxQ = jnp.exp(-0.5 * z_GxQ ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))
    return kernel_GxQ @ weights_Q


def spectral_density(op: LinearOperator, *, key: jax.Array, num_steps: int = 80,
                     num_probes: int = 8, num_points: int = 1000, sigma_ratio: float = 1e-3):
    """(grid, density): SLQ spectral density of `op`, smoothed with sigma = sigma_ratio * range."""
    nodes, weights = slq_nodes_weights(op, key=key, num_steps=num_steps, num_probes=num_probes)
    return smooth_density(nodes, weights, num_points=num_points, sigma_ratio=sigma_ratio)
