"""Lanczos without reorthogonalization, for operators too large to keep a basis: three vectors in memory.

The three-term recurrence  beta_i q_{i+1} = A q_i - alpha_i q_i - beta_{i-1} q_{i-1}  alone builds the
tridiagonal T. In floating point the q_i lose orthogonality exactly as Ritz values converge (Paige,
1971), and T then holds copies ("ghosts") of converged eigenvalues, and sometimes spurious values near
none. Cullum & Willoughby (1985) tell them apart from T alone: a Ritz value that is a simple eigenvalue
of T and also an eigenvalue of T_2 (T without its first row and column) is spurious; the copies of a
converged value are one eigenvalue of A. What is left are eigenvalues of A, the extreme ones first.

Memory: 3 N numbers, against (m + 1) N for full reorthogonalization (`lanczos.lanczos`): for the
134.5M parameters of SmolLM2, 1.6 GB whatever m, instead of 16.7 GB at m = 30. The price is steps:
ghosts cost matvecs, so a value needs more steps to appear than with a clean basis.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.curvature.linop import LinearOperator


@functools.partial(jax.jit, static_argnames="num_steps")
def tridiagonal(op: LinearOperator, v0_N: jax.Array, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """(alphas_M, betas_M) of `num_steps` plain Lanczos steps from v0 (betas_M[-1] is the residual norm);
    traceable; the operator is linearized once. A breakdown (beta ~ 0) ends the run: later steps are zero."""
    op = op.linearized()
    tiny = jnp.finfo(op.dtype).eps * 10

    def step(carry, _):
        q_prev_N, q_N, beta_prev, done = carry
        w_N = op.mv(q_N)
        alpha = jnp.dot(q_N, w_N)
        w_N = w_N - alpha * q_N - beta_prev * q_prev_N
        beta = jnp.linalg.norm(w_N)
        done = done | (beta <= tiny * jnp.maximum(jnp.abs(alpha), 1.0))
        q_next_N = jnp.where(done, 0.0, w_N / jnp.where(done, 1.0, beta))
        return (q_N, q_next_N, beta, done), (alpha, jnp.where(done, 0.0, beta))

    q0_N = v0_N / jnp.linalg.norm(v0_N)
    start = (jnp.zeros_like(q0_N), q0_N.astype(op.dtype), jnp.zeros((), op.dtype), jnp.zeros((), bool))
    _, (alphas_M, betas_M) = jax.lax.scan(step, start, None, length=num_steps)
    return alphas_M, betas_M


def _t(alphas_M, betas_M) -> np.ndarray:
    a, b = np.asarray(alphas_M, np.float64), np.asarray(betas_M, np.float64)
    return np.diag(a) + np.diag(b[:-1], 1) + np.diag(b[:-1], -1)


def active_steps(betas_M) -> int:
    """The steps before a breakdown (all of them without one)."""
    b = np.asarray(betas_M)
    zero = np.flatnonzero(b[:-1] == 0)
    return int(zero[0]) + 1 if len(zero) else len(b)


SPURIOUS_REL_TOL = 1e-10  # a spurious value is an eigenvalue of T_2 to the float64 accuracy of eigh(T)


def cullum_willoughby(alphas_M, betas_M, rel_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues of A found, descending; their residual bounds |beta_m s_m|) from a plain Lanczos T:
    copies of a value within rel_tol ||T|| (the run's precision) count once; a simple value that is also an
    eigenvalue of T_2 to `SPURIOUS_REL_TOL` ||T|| (T's own float64 arithmetic: a genuine unconverged Ritz value
    sits farther from T_2's interlacing values) is spurious and dropped."""
    m = active_steps(betas_M)
    t_MxM = _t(alphas_M[:m], betas_M[:m])
    theta_M, s_MxM = np.linalg.eigh(t_MxM)
    norm = max(np.abs(theta_M).max(), np.finfo(np.float64).tiny)
    tol, spurious_tol = rel_tol * norm, SPURIOUS_REL_TOL * norm
    residual_M = np.abs(float(betas_M[m - 1]) * s_MxM[-1])
    theta2 = np.linalg.eigvalsh(t_MxM[1:, 1:]) if m > 1 else np.array([])
    values, residuals, i = [], [], 0
    while i < m:
        j = i
        while j + 1 < m and theta_M[j + 1] - theta_M[i] <= tol:  # a cluster of copies
            j += 1
        spurious = j == i and len(theta2) and np.min(np.abs(theta2 - theta_M[i])) <= spurious_tol
        if not spurious:
            values.append(theta_M[i:j + 1].mean())
            residuals.append(residual_M[i:j + 1].min())
        i = j + 1
    order = np.argsort(values)[::-1]
    return np.asarray(values)[order], np.asarray(residuals)[order]


def rel_tol(dtype) -> float:
    """Copies of a converged value agree to a few hundred ulps of the run's precision."""
    return 1e3 * float(jnp.finfo(dtype).eps)


def top_eigenvalues(op: LinearOperator, k: int, *, key: jax.Array, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(k largest eigenvalues of A, their residual bounds) by plain Lanczos from a Gaussian start and
    Cullum-Willoughby; fewer than k when the run found fewer."""
    alphas_M, betas_M = tridiagonal(op, jax.random.normal(key, (op.dim,), op.dtype), num_steps)
    values, residuals = cullum_willoughby(alphas_M, betas_M, rel_tol(op.dtype))
    return values[:k], residuals[:k]


def slq_nodes_weights(op: LinearOperator, *, key: jax.Array, num_steps: int, num_probes: int):
    """SLQ quadrature from plain Lanczos runs, one Rademacher probe at a time: nodes theta (Ritz values of T,
    ghosts included, which share the weight of the eigenvalue they copy) and weights s_0^2, each PxM."""
    nodes, weights = [], []
    for key_p in jax.random.split(key, num_probes):
        alphas_M, betas_M = tridiagonal(op, jax.random.rademacher(key_p, (op.dim,), op.dtype), num_steps)
        m = active_steps(betas_M)
        theta_M, s_MxM = np.linalg.eigh(_t(alphas_M[:m], betas_M[:m]))
        nodes.append(np.pad(theta_M, (0, num_steps - m), constant_values=theta_M[-1]))
        weights.append(np.pad(s_MxM[0] ** 2, (0, num_steps - m)))
    return np.stack(nodes), np.stack(weights)
