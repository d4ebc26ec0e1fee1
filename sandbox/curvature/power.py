"""Power iteration with deflation (PyHessian's method), kept for comparison with Lanczos.

For i = 1..k: iterate v <- (A - sum_{j<i} lambda_j u_j u_j^T) v / ||.|| for `num_steps` steps;
lambda_i = v^T A v (Rayleigh quotient). Converges to the eigenvalues of largest *magnitude* at
rate |lambda_{i+1} / lambda_i| per step, which is why Lanczos (rate ~ sqrt of that gap) wins.
"""

import functools

import jax
import jax.numpy as jnp

from sandbox.curvature.linop import LinearOperator, ensure_finite
from sandbox.errors import SandboxError


def power_iteration(op: LinearOperator, k: int = 1, *, key: jax.Array, num_steps: int = 100):
    """(eigvals, eigvecs as rows) of the k largest-magnitude eigenvalues, in the order found."""
    if not 1 <= k <= op.dim:
        raise SandboxError(f"k={k} eigenpairs asked of an operator of dimension {op.dim}; "
                           f"choose 1 <= k <= {op.dim}")
    return ensure_finite(_power(op, key, k, num_steps), "the power-iteration eigenpairs")


@functools.partial(jax.jit, static_argnames=("k", "num_steps"))
def _power(op, key, k, num_steps):
    op = op.linearized()  # the pass at w once, not once per step
    def deflated(v_N, vals_K, vecs_KxN):  # found pairs beyond the current one are zero rows
        return op.mv(v_N) - vecs_KxN.T @ (vals_K * (vecs_KxN @ v_N))

    def one_pair(carry, key_i):
        vals_K, vecs_KxN, i = carry
        v_N = jax.random.normal(key_i, (op.dim,), op.dtype)
        v_N = v_N / jnp.linalg.norm(v_N)

        def body(_, v_N):
            w_N = deflated(v_N, vals_K, vecs_KxN)
            return w_N / jnp.linalg.norm(w_N)

        v_N = jax.lax.fori_loop(0, num_steps, body, v_N)
        lam = jnp.dot(v_N, deflated(v_N, vals_K, vecs_KxN))
        return (vals_K.at[i].set(lam), vecs_KxN.at[i].set(v_N), i + 1), None

    init = (jnp.zeros((k,), op.dtype), jnp.zeros((k, op.dim), op.dtype), 0)
    (vals_K, vecs_KxN, _), _ = jax.lax.scan(one_pair, init, jax.random.split(key, k))
    return vals_K, vecs_KxN
