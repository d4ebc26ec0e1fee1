"""Spectra of many diagonal blocks of one operator in one compiled program, through masked operators.

The diagonal block A_bb of the coordinates b is, in the full dimension N, the masked operator
P_b A P_b with P_b = diag(mask_b): one matvec that zeroes the other coordinates before and after.
Its spectrum is A_bb's n_b eigenvalues plus N - n_b zeros. The zeros never enter:
- Lanczos started from a masked vector stays on the block's coordinates (every matvec is masked),
  so its T is exactly that of Lanczos on A_bb. A block smaller than the step count m is exhausted
  after n_b steps; the later steps are inactive (zero rows, alpha = beta = 0, see `lanczos`) and
  their decoupled diagonal entries of T are set to a sentinel below the Gershgorin bound of the
  active part, so they sort last among the Ritz values and get quadrature weight 0;
- Hutch++: tr(P A P) = tr A_bb, and the masked operator sends everything off the block to zero.
Every target (a mask; all ones is the whole operator) runs the same code, one after another in a
`lax.map`: one compilation, whatever the number of blocks, and one target's memory at a time.
`dense` gives small blocks exactly instead, from one matvec per coordinate (a second program).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.curvature.lanczos import Tridiagonal, lanczos, tridiagonal_eigh
from sandbox.curvature.linop import Layout, LinearOperator, ensure_finite, map_rows
from sandbox.curvature.trace import hutchpp
from sandbox.errors import SandboxError

STAGES = ("top eigenvalues", "density", "trace")


def masks(layout: Layout, names: list) -> np.ndarray:
    """(T, N) 0/1 masks of the parameter blocks `names` ("all" is every coordinate)."""
    out = np.zeros((len(names), layout.dim), np.dtype(layout.dtype))
    for t, name in enumerate(names):
        start, stop = (0, layout.dim) if name == "all" else layout.block(name)[:2]
        out[t, start:stop] = 1
    return out


def ritz(tri: Tridiagonal, num_active):
    """(theta ascending, S, active_M) of T whose steps >= num_active are inactive (decoupled zeros):
    those get the value of a sentinel below every active Ritz value, so they come first, flagged."""
    m = tri.alphas_M.shape[0]
    active_M = jnp.arange(m) < num_active
    off_M = jnp.abs(tri.betas_M) + jnp.abs(jnp.concatenate([jnp.zeros(1, tri.betas_M.dtype), tri.betas_M[:-1]]))
    lo = jnp.min(jnp.where(active_M, tri.alphas_M - off_M, jnp.inf))  # Gershgorin interval of the active part
    hi = jnp.max(jnp.where(active_M, tri.alphas_M + off_M, -jnp.inf))
    gap = jnp.max(jnp.array([hi - lo, jnp.abs(lo), jnp.abs(hi)]))
    sentinel = lo - jnp.where(gap > 0, gap, 1.0)
    theta_M, s_MxM = tridiagonal_eigh(tri._replace(alphas_M=jnp.where(active_M, tri.alphas_M, sentinel)))
    return theta_M, s_MxM, jnp.arange(m) >= m - jnp.minimum(num_active, m)


def spectra(op: LinearOperator, masks_TxN, *, key: jax.Array, k: int, num_steps: int, num_probes: int = 0,
            num_matvecs: int = 0, tick=None) -> dict:
    """Per target (a row of `masks_TxN`): the k top Lanczos eigenvalues of its block and their residuals,
    with num_probes > 0 the SLQ nodes and weights, with num_matvecs > 0 the Hutch++ trace.

    Returns numpy arrays {"values_TxK", "residuals_TxK", ["nodes_TxPxM", "weights_TxPxM"], ["trace_T"]};
    a block of n_b < k coordinates has only its first n_b values (the rest are sentinels: drop them).
    Top-k and SLQ share their Lanczos runs of max(num_steps, k) steps (at most N): the top-k are the first
    probe's Ritz values (a Gaussian start without probes). The operator is linearized once for all
    (`LinearOperator.linearized`); runs and trace matvecs go one after another on CPU (`linop.map_rows`).
    `tick(t, stage)` is called as each stage of each target finishes (from inside the running program).
    """
    masks_TxN = jnp.asarray(masks_TxN, op.dtype)
    if masks_TxN.ndim != 2 or masks_TxN.shape[1] != op.dim:
        raise SandboxError(f"masks of shape {masks_TxN.shape} do not fit an operator of dimension {op.dim}")
    if not 1 <= k <= op.dim:
        raise SandboxError(f"k={k} eigenvalues asked of an operator of dimension {op.dim}; choose 1 <= k <= {op.dim}")
    if num_steps < 1 or num_probes < 0 or 0 < num_matvecs < 3 or num_matvecs < 0:
        raise SandboxError(f"num_steps={num_steps} must be >= 1, num_probes={num_probes} >= 0 and "
                           f"num_matvecs={num_matvecs} 0 or >= 3 (Hutch++)")
    out = _spectra(op, masks_TxN, key, k, min(op.dim, max(num_steps, k)), num_probes, num_matvecs, tick)
    return {name: np.asarray(x) for name, x in ensure_finite(out, "the block spectra").items()}


@functools.partial(jax.jit, static_argnames=("k", "num_steps", "num_probes", "num_matvecs", "tick"))
def _spectra(op, masks_TxN, key, k, num_steps, num_probes, num_matvecs, tick):
    def notify(t, stage, result):
        if tick is not None:  # after `result` exists, so after the stage's work
            jax.debug.callback(lambda t, _: tick(int(t), stage), t, result)

    linear = op.linearized()  # forward and backward pass once, for every target and matvec

    def one(args):
        t, mask_N = args
        target = linear.scaled(mask_N)  # P A P
        num_active = jnp.sum(mask_N)
        # the SLQ probes (Rademacher), or one Gaussian start without them; the top-k come from the first run
        starts_SxN = (jax.random.rademacher(key, (num_probes, op.dim), op.dtype) if num_probes
                      else jax.random.normal(key, (1, op.dim), op.dtype))
        tri = map_rows(lambda v_N: lanczos(target, v_N, num_steps, mask_N)._replace(basis_MxN=None), starts_SxN)
        theta_SxM, s_SxMxM, active_SxM = jax.vmap(ritz, in_axes=(0, None))(tri, num_active)
        idx = jnp.arange(num_steps)[::-1][:k]
        out = {"values_TxK": theta_SxM[0, idx], "residuals_TxK": jnp.abs(tri.betas_M[0, -1] * s_SxMxM[0, -1, idx])}
        notify(t, STAGES[0], out["values_TxK"])
        if num_probes:  # inactive nodes: weight 0, and the top node's value so they stretch no grid
            out["nodes_TxPxM"] = jnp.where(active_SxM, theta_SxM, theta_SxM[:, -1:])
            out["weights_TxPxM"] = jnp.where(active_SxM, s_SxMxM[:, 0] ** 2, 0.0)
            notify(t, STAGES[1], out["nodes_TxPxM"])
        if num_matvecs:
            out["trace_T"] = hutchpp(target, key, num_matvecs)
            notify(t, STAGES[2], out["trace_T"])
        return out

    return jax.lax.map(one, (jnp.arange(masks_TxN.shape[0]), masks_TxN))


def dense(op: LinearOperator, masks_TxN) -> list:
    """Each target's block A_bb exactly, as a float64 n_b x n_b numpy matrix (symmetrized), from its n_b
    matvecs A e_i (`linop.map_rows`). Cheaper than `spectra` where n_b is below its matvec count (a norm
    layer's block of 2d coordinates); one compiled program for all targets (indices padded to the largest)."""
    idx_T = [np.flatnonzero(np.asarray(m)) for m in masks_TxN]
    if any(len(i) == 0 for i in idx_T):
        raise SandboxError("an empty block mask has no dense block")
    width = max(len(i) for i in idx_T)
    idx_TxB = np.stack([np.concatenate([i, np.full(width - len(i), i[0])]) for i in idx_T])
    a_TxBxB = np.asarray(ensure_finite(_dense(op, jnp.asarray(idx_TxB)), "the dense blocks"), np.float64)
    return [(a[:len(i), :len(i)] + a[:len(i), :len(i)].T) / 2 for a, i in zip(a_TxBxB, idx_T)]


@jax.jit
def _dense(op, idx_TxB):
    linear = op.linearized()

    def block(idx_B):  # A[idx, idx]: the columns A e_i, rows idx
        return map_rows(lambda i: linear.mv(jnp.zeros(op.dim, op.dtype).at[i].set(1))[idx_B], idx_B)

    return jax.lax.map(block, idx_TxB)
